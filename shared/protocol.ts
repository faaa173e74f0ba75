// The wire protocol between agent and control plane over one WebSocket. Every message is JSON with
// a `type` and the protocol version `v`; both sides validate everything they receive with these
// schemas and answer garbage with an `error` message instead of crashing.
import { z } from 'zod';
import { appSpec, serverSpec } from './spec.js';
import { deployStatus } from './deploy-status.js';
import { appName, commitSha } from './validation.js';

export const PROTOCOL_VERSION = 1;
const v = z.literal(PROTOCOL_VERSION);

export const deploymentId = z.string().regex(/^[a-z0-9]{8,40}$/, 'deployment id must be 8-40 lower-case alphanumerics');

export const logLine = z.object({
  /** Sequence number within the deployment, assigned by the agent, so replays are idempotent. */
  seq: z.number().int().nonnegative(),
  ts: z.string(),
  stream: z.enum(['system', 'build', 'release', 'app']),
  text: z.string().max(16_384),
});
export type LogLine = z.infer<typeof logLine>;

export const observedContainer = z.object({
  app: z.string(),
  process: z.string(),
  deploymentId: z.string(),
  state: z.string(),
});

// ---- agent → control plane -------------------------------------------------------------------
export const agentHello = z.object({ type: z.literal('hello'), v, agentVersion: z.string().max(64), hostname: z.string().max(255) });
export const agentHeartbeat = z.object({ type: z.literal('heartbeat'), v, ts: z.string() });
export const deployProgress = z.object({
  type: z.literal('deploy_progress'),
  v,
  deploymentId,
  status: deployStatus,
  commit: commitSha.optional(),
  reason: z.string().max(4096).optional(),
  ts: z.string(),
});
export const deployLog = z.object({ type: z.literal('deploy_log'), v, deploymentId, lines: z.array(logLine).max(1000) });
export const observedState = z.object({
  type: z.literal('observed_state'),
  v,
  specRevision: z.number().int().nonnegative().nullable(),
  containers: z.array(observedContainer).max(10_000),
});

// Runtime logs (`berth logs`): the control plane asks, the agent streams the app's container output back.
export const logsRequestId = z.string().regex(/^[a-z0-9]{8,40}$/, 'logs request id must be 8-40 lower-case alphanumerics');
export const runtimeLogLine = z.object({
  process: z.string().max(64),
  replica: z.number().int().nonnegative().optional(),
  container: z.string().max(128),
  stream: z.enum(['stdout', 'stderr']),
  /** Docker's timestamp of the line (RFC 3339), when it had one. */
  ts: z.string().max(64).optional(),
  text: z.string().max(16_384),
});
export type RuntimeLogLine = z.infer<typeof runtimeLogLine>;
export const logsData = z.object({ type: z.literal('logs_data'), v, requestId: logsRequestId, lines: z.array(runtimeLogLine).max(1000) });
export const logsEnd = z.object({ type: z.literal('logs_end'), v, requestId: logsRequestId, error: z.string().max(1000).optional() });

/** One app's certificate as the agent sees it (agent/certs CertStatus; ISO dates; fields only ever added). */
export const certStatusEntry = z.object({
  app: z.string().max(64),
  /** Domains the app wants. */
  domains: z.array(z.string().max(253)).max(1000),
  /** Domains the installed certificate covers ([] when none). */
  certDomains: z.array(z.string().max(253)).max(1000),
  /** valid | renewal-due | expired | missing */
  state: z.string().max(32),
  issuer: z.string().max(1024).nullable(),
  notBefore: z.string().max(64).nullable(),
  notAfter: z.string().max(64).nullable(),
  daysLeft: z.number().int().nullable(),
  lastAttemptAt: z.string().max(64).nullable(),
  lastResult: z.enum(['ok', 'failed']).nullable(),
  lastError: z.string().max(4096).nullable(),
  lastSuccessAt: z.string().max(64).nullable(),
  failures: z.number().int().nonnegative(),
  nextAttemptAt: z.string().max(64).nullable(),
  /** Why a new certificate is wanted (missing | expired | domains-changed | expiring); null when none is. */
  reason: z.string().max(32).nullable().optional(),
});
export type CertStatusEntry = z.infer<typeof certStatusEntry>;
/** All of the agent's certificates (a snapshot: an app missing from it has none). Sent on connect and on change. */
export const certStatusMessage = z.object({ type: z.literal('cert_status'), v, certs: z.array(certStatusEntry).max(10_000) });

export const agentMessage = z.discriminatedUnion('type', [agentHello, agentHeartbeat, deployProgress, deployLog, observedState, logsData, logsEnd, certStatusMessage]);
export type AgentMessage = z.infer<typeof agentMessage>;

// ---- control plane → agent -------------------------------------------------------------------
export const cpWelcome = z.object({ type: z.literal('welcome'), v, server: z.string() });
export const cpDesiredState = z.object({ type: z.literal('desired_state'), v, spec: serverSpec });
export const cpDeployOrder = z.object({
  type: z.literal('deploy'),
  v,
  deploymentId,
  app: appSpec,
  /** Deploy this commit; absent = the head of the app's branch at fetch time. */
  commit: commitSha.optional(),
  /**
   * A rollback: re-activate the good release this deployment made (its image, config and env
   * snapshot) through the health gate and switch, without fetching or building. `commit` is that
   * release's commit, so an agent that predates rollbacks rebuilds the same version instead.
   */
  rollbackOf: deploymentId.optional(),
});
export const cpHeartbeat = z.object({ type: z.literal('heartbeat'), v, ts: z.string() });
export const cpError = z.object({ type: z.literal('error'), v, message: z.string() });
/**
 * Stop a deployment: the control plane no longer wants it (a newer trigger superseded it while it was
 * still queued, or a user cancelled it). Sent when it happens and again on the agent's next hello;
 * an id the agent does not know, or one that has already finished, is ignored.
 */
export const cpCancel = z.object({
  type: z.literal('cancel'),
  v,
  deploymentId,
  /** What the control plane recorded: `superseded` or `cancelled`. */
  status: z.enum(['superseded', 'cancelled']),
  reason: z.string().max(4096).optional(),
});

export const cpLogsRequest = z.object({
  type: z.literal('logs_request'),
  v,
  requestId: logsRequestId,
  app: appName,
  /** Only this process's containers; absent = every process of the app. */
  process: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/).optional(),
  /** Lines per container from the end of its log. */
  tail: z.number().int().min(0).max(10_000),
  follow: z.boolean(),
});
export const cpLogsCancel = z.object({ type: z.literal('logs_cancel'), v, requestId: logsRequestId });
export type LogsRequest = z.infer<typeof cpLogsRequest>;

export const cpMessage = z.discriminatedUnion('type', [cpWelcome, cpDesiredState, cpDeployOrder, cpHeartbeat, cpError, cpCancel, cpLogsRequest, cpLogsCancel]);
export type CpMessage = z.infer<typeof cpMessage>;
export type DeployOrder = z.infer<typeof cpDeployOrder>;
export type CancelOrder = z.infer<typeof cpCancel>;

/** Parse one raw WebSocket frame; returns a typed message or a one-line error. */
export function parseMessage<T>(schema: z.ZodType<T>, raw: unknown): { ok: true; msg: T } | { ok: false; error: string } {
  let data: unknown;
  try {
    data = JSON.parse(String(raw));
  } catch {
    return { ok: false, error: 'message is not valid JSON' };
  }
  const result = schema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
    return { ok: false, error: `invalid message${where}: ${issue?.message ?? 'unknown'}` };
  }
  return { ok: true, msg: result.data };
}

export const AGENT_WS_PATH = '/api/agent/ws';
export const HEARTBEAT_INTERVAL_MS = 10_000;
