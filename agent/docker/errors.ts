// dockerode rejects with an error carrying the Engine API's status code and JSON body; these read
// them the same way everywhere (404 = already gone, the API's own message for the user).
interface DockerApiError {
  statusCode?: number;
  json?: { message?: string };
  message?: string;
}

export const dockerStatusOf = (err: unknown): number | undefined => (err as DockerApiError)?.statusCode;

export const dockerMessageOf = (err: unknown): string =>
  ((err as DockerApiError)?.json?.message ?? (err as Error)?.message ?? String(err)).trim();
