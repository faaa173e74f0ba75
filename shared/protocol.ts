// The wire protocol between agent and control plane over one WebSocket. Every message is JSON with
// a `type` and the protocol version `v`; both sides validate everything they receive with these
// schemas and answer garbage with an `error` message instead of crashing.
import { z } from 'zod';
import { appSpec, scaleOverride, serverSpec } from './spec.js';
import { commitSubject } from './commit-subject.js';
import { watchList } from './monorepo.js';
import { deployStatus } from './deploy-status.js';
import { builtElsewhere, builtImage } from './cluster-build.js';
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
  /** Issue 16, optional (older agents omit it): the commit's subject line, once fetched (cleaned: one line, ≤ 200 chars). */
  commitMessage: commitSubject.optional(),
  /** Issue 16, optional: the release's `scale:` per process as its berth.yml says (before any `berth scale` override). */
  repoScale: scaleOverride.optional(),
  /** Cluster builder (issue 15), with the `done` of a build-only order: the pushed image. */
  built: builtImage.optional(),
});
export const deployLog = z.object({ type: z.literal('deploy_log'), v, deploymentId, lines: z.array(logLine).max(1000) });
/** Issue 18: free disk where berth and Docker keep their data, with the agent's threshold (BERTH_MIN_FREE_DISK_MB). */
export const diskFree = z.object({ path: z.string().max(4096), freeMb: z.number().int().nonnegative(), minFreeMb: z.number().int().nonnegative() });
/** Issue 18: a cron job's last finished run (notifications tell its first failure and its recovery). */
export const cronLastRun = z.object({
  app: z.string().max(64),
  job: z.string().max(64),
  runId: z.string().max(64),
  status: z.enum(['succeeded', 'failed', 'timed_out']),
  exitCode: z.number().int().nullable(),
  reason: z.string().max(4096).nullable(),
  finishedAt: z.string().max(64).nullable(),
});
export type DiskFree = z.infer<typeof diskFree>;
export type CronLastRun = z.infer<typeof cronLastRun>;
export const observedState = z.object({
  type: z.literal('observed_state'),
  v,
  specRevision: z.number().int().nonnegative().nullable(),
  containers: z.array(observedContainer).max(10_000),
  /** Optional (issue 18): absent from older agents. */
  disk: z.array(diskFree).max(16).optional(),
  cron: z.array(cronLastRun).max(5000).optional(),
});

// Runtime logs (`berth logs`): the control plane asks, the agent streams the app's container output back.
export const logsRequestId = z.string().regex(/^[a-z0-9]{8,40}$/, 'logs request id must be 8-40 lower-case alphanumerics');
export const runtimeLogLine = z.object({
  process: z.string().max(64),
  replica: z.number().int().nonnegative().optional(),
  container: z.string().max(128),
  /** Cluster apps: the node the task that printed it runs on (its berth server name, else its hostname). */
  node: z.string().max(128).optional(),
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

// Cron jobs (`berth cron`): the control plane asks, the agent (which schedules and runs them) answers.
/** Cron job names follow the process-name rule: they become container names and labels. */
export const cronJobName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,29}$/, 'job name must be 1-30 lower-case letters, digits, "_" or "-", starting with a letter');
export const cronRequestId = z.string().regex(/^[a-z0-9]{8,40}$/, 'cron request id must be 8-40 lower-case alphanumerics');
export const cronRunId = z.string().regex(/^[a-z0-9]{8,40}$/, 'run id must be 8-40 lower-case alphanumerics');
/** running → succeeded (exit 0) | failed (non-zero exit, or could not start) | timed_out (killed); skipped: a run of the job was still going. */
export const cronRunStatus = z.enum(['running', 'succeeded', 'failed', 'timed_out', 'skipped']);
export type CronRunStatus = z.infer<typeof cronRunStatus>;
/** One run of a cron job (fields only ever added). */
export const cronRunInfo = z.object({
  id: cronRunId,
  app: z.string().max(64),
  job: z.string().max(64),
  /** schedule: fired by the schedule; manual: `berth cron run`. */
  trigger: z.enum(['schedule', 'manual']),
  status: cronRunStatus,
  /** The schedule slot it fired for (a minute, ISO); null for manual runs. */
  scheduledAt: z.string().max(64).nullable(),
  startedAt: z.string().max(64),
  finishedAt: z.string().max(64).nullable(),
  exitCode: z.number().int().nullable(),
  /** Why it failed, timed out or was skipped. */
  reason: z.string().max(4096).nullable(),
  /** The last lines of its output (stdout and stderr). */
  outputTail: z.array(z.string().max(4096)).max(200),
  /** The release (deployment) whose image it ran. */
  deploymentId: z.string().max(64).nullable(),
});
export type CronRunInfo = z.infer<typeof cronRunInfo>;
/** A cron job of an app's live release, with its last run and next run. */
export const cronJobInfo = z.object({
  app: z.string().max(64),
  name: z.string().max(64),
  schedule: z.string().max(256),
  command: z.string().max(8192),
  /** IANA time zone of the schedule; null = the server's. */
  timezone: z.string().max(64).nullable(),
  timeoutS: z.number().int(),
  /** The most recent run (any status, skipped included); null = never ran. */
  lastRun: cronRunInfo.nullable(),
  /** The run going on now, if any. */
  running: cronRunInfo.nullable(),
  /** When the schedule fires next (ISO). */
  nextRunAt: z.string().max(64).nullable(),
});
export type CronJobInfo = z.infer<typeof cronJobInfo>;
export const cronResponse = z.object({
  type: z.literal('cron_response'),
  v,
  requestId: cronRequestId,
  ok: z.boolean(),
  jobs: z.array(cronJobInfo).max(500).optional(),
  run: cronRunInfo.optional(),
  runs: z.array(cronRunInfo).max(500).optional(),
  /** ok=false: one line for the user, and what kind of failure it is. */
  error: z.string().max(1000).optional(),
  code: z.enum(['not_found', 'conflict', 'failed']).optional(),
});
export type CronResponse = z.infer<typeof cronResponse>;


// Cluster formation (issue 15): the control plane asks one agent at a time to do one Swarm step;
// live only (never queued), one `cluster_response` per request id. Join tokens travel only inside
// these two messages (field `joinToken`, redacted by the loggers) and are never stored.
export const clusterRequestId = z.string().regex(/^[a-z0-9]{8,40}$/, 'cluster request id must be 8-40 lower-case alphanumerics');
/** A Swarm node id (what `docker node ls` shows). */
export const swarmNodeId = z.string().regex(/^[a-z0-9]{1,64}$/, 'swarm node id must be lower-case alphanumerics');
/** host:port or host (IPv4, IPv6 in brackets, or a DNS name): plain characters only. */
export const clusterAddr = z.string().max(300).regex(/^[A-Za-z0-9.:[\]-]+$/, 'address must be a host or host:port');
/** A CIDR pool for the overlay networks, e.g. 172.29.0.0/16. */
export const addrPool = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'address pool must be an IPv4 CIDR like 172.29.0.0/16');
export const swarmRole = z.enum(['manager', 'worker']);
export const probeImage = z.string().max(255).regex(/^[a-z0-9][a-z0-9._\/:@-]*$/, 'image must be a Docker image reference');
const clusterName = z.string().max(64);
export const clusterOp = z.discriminatedUnion('op', [
  /** Manager: `swarm init` (advertise/listen on `advertise`, or the address this agent reaches the control plane from). */
  z.object({ op: z.literal('init'), cluster: clusterName, advertise: clusterAddr.optional(), addrPool, addrPoolMaskLength: z.number().int().min(16).max(28) }),
  /** Manager: the CURRENT join token for `role`, read live. */
  z.object({ op: z.literal('join_token'), role: swarmRole }),
  /** Manager: rotate the token for `role` (after each join). */
  z.object({ op: z.literal('rotate_token'), role: swarmRole }),
  /** Joiner: TCP connect to the manager's 2377 and 7946 with short timeouts (or to `ports`: the manager probing a node back). */
  z.object({ op: z.literal('preflight'), managerAddr: clusterAddr, timeoutMs: z.number().int().min(100).max(30_000), ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(4).optional() }),
  /** Joiner: `swarm join`. */
  z.object({ op: z.literal('join'), managerAddr: clusterAddr, joinToken: z.string().min(1).max(512), advertise: clusterAddr.optional() }),
  /** Manager: every node with its state, availability and running tasks. */
  z.object({ op: z.literal('inspect') }),
  /** Manager: set a node's availability to drain; `demote`: make a manager a worker first (quorum stays with the others). */
  z.object({ op: z.literal('drain'), nodeId: swarmNodeId, demote: z.boolean().optional() }),
  /** The node itself: `swarm leave`. */
  z.object({ op: z.literal('leave'), force: z.boolean() }),
  /** Manager: `node rm` (a node that has left). */
  z.object({ op: z.literal('remove_node'), nodeId: swarmNodeId, force: z.boolean() }),
  /** Manager: make sure the attachable overlay network used for reachability checks exists. */
  z.object({ op: z.literal('overlay_network'), network: z.string().regex(/^[a-z0-9-]{1,60}$/) }),
  /** Any node: a short-lived berth-labelled listener on the overlay network; answers with its overlay address. */
  z.object({ op: z.literal('overlay_serve'), network: z.string().regex(/^[a-z0-9-]{1,60}$/), image: probeImage, word: z.string().regex(/^[a-z0-9]{1,40}$/), seconds: z.number().int().min(5).max(300) }),
  /** Any node: a short-lived container on the overlay network that must get `word` from `address`. */
  z.object({ op: z.literal('overlay_reach'), network: z.string().regex(/^[a-z0-9-]{1,60}$/), image: probeImage, address: clusterAddr, word: z.string().regex(/^[a-z0-9]{1,40}$/), timeoutMs: z.number().int().min(500).max(60_000) }),
  /** Any node: remove the reachability check's containers. */
  z.object({ op: z.literal('overlay_cleanup') }),
]);
export type ClusterOp = z.infer<typeof clusterOp>;
/** One Swarm step for this agent; answered by one `cluster_response` with the same requestId. */
export const cpClusterRequest = z.object({ type: z.literal('cluster_request'), v, requestId: clusterRequestId, request: clusterOp });
export type ClusterRequest = z.infer<typeof cpClusterRequest>;

/** One node as the manager sees it. */
export const swarmNodeState = z.object({
  id: swarmNodeId,
  hostname: z.string().max(255),
  role: swarmRole,
  /** active | pause | drain */
  availability: z.string().max(32),
  /** ready | down | unknown | disconnected */
  state: z.string().max(32),
  addr: z.string().max(300),
  /** Managers: reachable | unreachable | unknown; '' for workers. */
  managerReachability: z.string().max(32),
  leader: z.boolean(),
  /** Tasks running on it now. */
  runningTasks: z.number().int().nonnegative(),
});
export type SwarmNodeState = z.infer<typeof swarmNodeState>;
/** preflight: one port that could not be reached. */
export const portFailure = z.object({ addr: z.string().max(300), port: z.number().int(), proto: z.enum(['tcp', 'udp']), error: z.string().max(500) });
export type PortFailure = z.infer<typeof portFailure>;
export const clusterResult = z.object({
  /** init/join: this engine's node id; init: the address advertised. */
  nodeId: swarmNodeId.optional(),
  advertise: z.string().max(300).optional(),
  /** join_token */
  joinToken: z.string().max(512).optional(),
  /** preflight: what failed (empty: all reached) and the local address used to reach the manager. */
  failures: z.array(portFailure).max(16).optional(),
  localAddr: z.string().max(300).optional(),
  /** inspect */
  nodes: z.array(swarmNodeState).max(10_000).optional(),
  /** overlay_serve: the listener's address on the overlay network. */
  address: z.string().max(300).optional(),
});
export type ClusterResult = z.infer<typeof clusterResult>;
export const clusterResponse = z.object({
  type: z.literal('cluster_response'),
  v,
  requestId: clusterRequestId,
  ok: z.boolean(),
  result: clusterResult.optional(),
  /** ok=false: one line for the user. */
  error: z.string().max(1000).optional(),
});
export type ClusterResponse = z.infer<typeof clusterResponse>;

export const agentMessage = z.discriminatedUnion('type', [agentHello, agentHeartbeat, deployProgress, deployLog, observedState, logsData, logsEnd, certStatusMessage, cronResponse, clusterResponse]);
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
  /**
   * A Git push triggered this deploy: the agent, which has the checkout, ends it `cancelled` without
   * building when the commit is the live release's commit or an ancestor of it, so a replayed push of
   * an older commit can never roll the app back. Absent for `berth deploy --commit`, CI and rollbacks.
   */
  skipIfAncestorOfLive: z.boolean().optional(),
  /**
   * Issue 17, monorepos: a push to an app with `--watch` globs. After fetching, the agent lists the
   * files changed since the live release's commit (`git diff --name-only`) and ends the deploy
   * `cancelled` ("skipped: …") without building when none matches — the fallback for pushes whose
   * payload does not list their files. When git cannot tell (no live commit, or it is not in the
   * cache) it deploys. Older agents ignore it and deploy.
   */
  watch: watchList.optional(),
  /**
   * `berth scale`: `rollbackOf` names the live release, brought back at the app's scale override
   * (`app.scale`) without a rebuild; every process the override names must be in that release.
   * An agent that predates it runs the order as a rollback to the live release.
   */
  rescale: z.boolean().optional(),
  /** Cluster builder (issue 15): fetch, build and push only, then report `done` with `built`; the manager does the rest. */
  buildOnly: z.boolean().optional(),
  /** Cluster builder (issue 15), to the manager: the image `builder` pushed; no fetch or build here. */
  built: builtElsewhere.optional(),
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

/**
 * "Where do these stand?": deployments the control plane has as started but unfinished on this server,
 * sent on every hello. The agent answers each with a `deploy_progress` from its journal — or `failed`
 * when it has no record (its data was reset, or the control plane was restored from a backup taken
 * while the deploy ran). Without it such a deployment would stay "running" until the stale sweep.
 */
export const cpDeployStatusRequest = z.object({ type: z.literal('deploy_status_request'), v, deploymentIds: z.array(deploymentId).max(1000) });

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

/**
 * `berth cron`: list the app's jobs (with last and next run), start a run of one now, read one run,
 * or list recent runs. Answered by one `cron_response` with the same requestId. Live only.
 */
export const cpCronRequest = z.object({
  type: z.literal('cron_request'),
  v,
  requestId: cronRequestId,
  app: appName,
  action: z.enum(['list', 'run', 'get', 'runs']),
  /** run: the job to run; runs: only this job's runs. */
  job: cronJobName.optional(),
  /** get: the run to read. */
  runId: cronRunId.optional(),
  /** runs: at most this many, newest first. */
  limit: z.number().int().min(1).max(500).optional(),
});
export type CronRequest = z.infer<typeof cpCronRequest>;

export const cpMessage = z.discriminatedUnion('type', [
  cpWelcome,
  cpDesiredState,
  cpDeployOrder,
  cpHeartbeat,
  cpError,
  cpCancel,
  cpDeployStatusRequest,
  cpLogsRequest,
  cpLogsCancel,
  cpCronRequest,
  cpClusterRequest,
]);
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
