// Typed errors the control plane throws; each carries the HTTP status the API answers with, so
// stores and routes can throw and one error handler turns them into `{error}` responses.
export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
  constructor(readonly status: 400 | 401 | 404 | 409 | 413 | 503, message: string) {
    super(message);
  }
}

export class BadRequestError extends ControlPlaneError {
  override name = 'BadRequestError';
  constructor(message: string) {
    super(400, message);
  }
}

export class UnauthorizedError extends ControlPlaneError {
  override name = 'UnauthorizedError';
  constructor(message: string) {
    super(401, message);
  }
}

export class NotFoundError extends ControlPlaneError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super(404, message);
  }
}

export class ConflictError extends ControlPlaneError {
  override name = 'ConflictError';
  constructor(message: string) {
    super(409, message);
  }
}

/** Something only the agent can answer, and it is not connected. */
export class AgentUnavailableError extends ControlPlaneError {
  override name = 'AgentUnavailableError';
  constructor(message: string) {
    super(503, message);
  }
}

/** Bad startup options (listen address, data dir): reported to the operator, never over HTTP. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
