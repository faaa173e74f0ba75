// The control plane's HTTP API: request bodies (validated with zod on the server) and response
// shapes (what the CLI prints with --json). Field names are public: only ever add, never rename.
import { z } from 'zod';
import { appName, branchName, commitSha, domainName, envKey, gitUrl, serverName, ValidationError } from './validation.js';
import type { DeployStatus } from './deploy-status.js';
import { rootDir, watchList } from './monorepo.js';
import { validKnownHosts } from './deploy-key.js';
import { addrPool, clusterAddr, swarmRole } from './protocol.js';
import { certificatePem, MAX_SCALE, registryAddress, replicaCount, scaleProcessName, type ScaleOverride } from './spec.js';

export const createServerBody = z.object({ name: serverName, baseDomain: domainName.optional() });
export const joinBody = z.object({ token: z.string().min(1).max(200), name: serverName.optional(), hostname: z.string().max(255).optional() });
const knownHostsText = z.string().superRefine((v, ctx) => {
  const problem = validKnownHosts(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
export const createAppBody = z.object({
  name: appName,
  repo: gitUrl,
  branch: branchName.default('main'),
  /** Exactly one of `server` (standalone) and `cluster` (issue 15: Swarm services of that cluster). */
  server: serverName.optional(),
  cluster: serverName.optional(),
  /** Monorepos (issue 17): the app's subdirectory, and the globs a push must touch to deploy. */
  rootDir: rootDir.optional(),
  watch: watchList.optional(),
  /** SSH repos: the Git host's keys (known_hosts lines) instead of pinning them on first use. */
  knownHosts: knownHostsText.optional(),
}).refine((b) => (b.server === undefined) !== (b.cluster === undefined), { message: 'give exactly one of server (--server) and cluster (--cluster)' });
/** PATCH /api/apps/:name (issue 16): what can change after creation; at least one field. */
export const updateAppBody = z
  .object({ repo: gitUrl.optional(), branch: branchName.optional(), server: serverName.optional(), knownHosts: knownHostsText.optional() })
  .strict()
  .refine((b) => Object.values(b).some((v) => v !== undefined), { message: 'nothing to change: give repo, branch or server' });
/** PATCH /api/apps/:name: the app; when it moved with a live release, the deploy of that commit queued on its new server. */
export type AppUpdated = AppDetails & { moved?: { from: string; deployment: DeploymentInfo | null } };
export const addDomainBody = z.object({ domain: domainName });
export const deployBody = z.object({ commit: commitSha.optional() });

/** POST /api/servers */
export interface ServerCreated { name: string; joinToken: string; installCommand: string }
/** GET /api/servers */
export interface ServerInfo {
  name: string;
  connected: boolean;
  joinedAt: string | null;
  lastSeenAt: string | null;
  agentVersion: string | null;
  hostname: string | null;
  createdAt: string;
  /** Added by issue 5: apps on this server also answer APP.BASE_DOMAIN. */
  baseDomain?: string | null;
  /**
   * Added by issue 16: free disk where berth and Docker keep their data, with the agent's threshold
   * (BERTH_MIN_FREE_DISK_MB), as its agent last reported it; only while it is connected.
   */
  disk?: Array<{ path: string; freeMb: number; minFreeMb: number }>;
}
/** PATCH /api/servers/:name (issue 5): null removes the base domain. */
export const updateServerBody = z.object({ baseDomain: domainName.nullable() }).strict();
/** POST /api/agent/join */
export interface JoinResult { server: string; credential: string; controlPlaneUrl: string }
/** Apps */
export interface AppInfo {
  name: string;
  repo: string;
  branch: string;
  server: string;
  /** The domains added with `berth domain add` (the default hostname is `defaultDomain`). */
  domains: string[];
  webhooks: Record<string, string>;
  createdAt: string;
  /** Added by issue 5: APP.BASE_DOMAIN when the server has a base domain. */
  defaultDomain?: string | null;
  /** Added by issue 17 (monorepos), present when set: the app's subdirectory and its watch globs. */
  rootDir?: string;
  watch?: string[];
  /** Added by issue 17, for SSH repositories: the public half of the app's deploy key, to add to the Git host. */
  deployKey?: string;
  /** Added by issue 15, present for a cluster app: the cluster it runs on as Swarm services (`server` is then the cluster's manager). */
  cluster?: string;
}
/** Domains */
export interface DomainInfo {
  domain: string;
  app: string;
  createdAt: string;
  // ---- added by issue 5 (HTTPS) ----
  /** The app's default hostname APP.BASE_DOMAIN (from its server's base domain): cannot be removed on its own. */
  isDefault?: boolean;
  /** The installed certificate covers this domain (HTTPS is served, HTTP redirects). */
  https?: boolean;
  /** valid | renewal-due | expired | missing (not covered yet); null = the agent has not reported (or HTTPS is off). */
  certState?: string | null;
  certIssuer?: string | null;
  /** When the certificate covering this domain expires (ISO). */
  certExpiresAt?: string | null;
  certDaysLeft?: number | null;
  /** The app's last issuance/renewal attempt: when, ok | failed, and why it failed. */
  certLastAttemptAt?: string | null;
  certLastResult?: 'ok' | 'failed' | null;
  certLastError?: string | null;
  certLastSuccessAt?: string | null;
  /** When the agent tries next (backoff after a failure, else the renewal date). */
  certNextAttemptAt?: string | null;
  /** When the agent reported this state. */
  certReportedAt?: string | null;
}
/** Deployments */
export interface DeploymentInfo {
  id: string;
  app: string;
  status: DeployStatus;
  commit: string | null;
  reason: string | null;
  trigger: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  /** A rollback (trigger `rollback`) or a scale (`scale`): the deployment whose release it re-activates; null otherwise. */
  rollbackOf?: string | null;
  /** Added by issue 16: the commit's subject line as the agent read it (one line, ≤ 200 characters); null until fetched, or from older agents. */
  commitMessage?: string | null;
  /** Added by issue 16: the `scale:` per process of the release's berth.yml (before any `berth scale` override); null when not reported. */
  repoScale?: Record<string, number> | null;
}
/** GET /api/deployments/:id/logs?after=SEQ */
export interface DeploymentLogs { deployment: DeploymentInfo; lines: Array<{ seq: number; ts: string; stream: string; text: string }> }
/** Every error response body. */
export interface ApiError { error: string }

// ---- env vars (issue 3) ----------------------------------------------------------------------
/** An env value: what Docker and execve accept (no NUL), at most 64 KiB. */
export const envValue = z
  .string()
  .max(65_536, 'env value is longer than 64 KiB')
  .refine((v) => !v.includes('\0'), 'env value must not contain a NUL byte');
/** PATCH /api/apps/:name/env — set and/or unset keys in one change. */
export const envPatchBody = z
  .object({
    set: z.record(envKey, envValue).optional(),
    unset: z.array(envKey).max(1000, 'at most 1000 keys at once').optional(),
  })
  .strict()
  .refine((b) => Object.keys(b.set ?? {}).length + (b.unset?.length ?? 0) > 0, 'nothing to set or unset');
/** What listings show instead of an env value. */
export const MASKED_VALUE = '********';
/** GET /api/apps/:name/env[?reveal=1] (values are MASKED_VALUE unless revealed) */
export interface EnvVar { key: string; value: string; updatedAt: string }
/** PATCH /api/apps/:name/env */
export interface EnvChange { app: string; set: string[]; unset: string[]; notSet: string[]; takesEffect: 'next_deploy' }

// ---- webhooks (issue 6) ----------------------------------------------------------------------
/** POST /api/apps/:name/webhooks/rotate */
export const rotateWebhookBody = z.object({ which: z.enum(['push', 'deploy', 'both']).default('both') }).strict();
/** The per-app webhook secrets: the push secret is what a Git host signs with, the deploy token is a CI bearer token. */
export interface WebhookSecrets { push: string; deploy: string }
/** GET /api/apps/:name: an app with its webhook secrets (listings never carry secrets). */
export interface AppDetails extends AppInfo {
  webhookSecrets: WebhookSecrets;
  /** Added by issue 16: the replicas set with `berth scale` (null: the repo's `scale:` applies). */
  scale?: AppScale;
  /** Added by issue 16: the deployment whose release is live (the newest that went `done`); null before the first. */
  live?: DeploymentInfo | null;
}

// ---- scale (issue 16) ------------------------------------------------------------------------
/** An app's `berth scale` override: per process, the replicas that win over the repo's `scale:`. */
export interface AppScale {
  override: ScaleOverride | null;
  /** Added with the dashboard's processes: the live release's repo `scale:` per process (null: not known, e.g. reported by an older agent or nothing live). */
  repo?: Record<string, number> | null;
}
/** One process's scale and where it comes from: `berth scale` (override) or the repo's `scale:`. */
export interface AppliedScale {
  process: string;
  /** The containers it runs at; null when neither an override nor the repo's number is known. */
  count: number | null;
  source: 'override' | 'repo' | 'unknown';
  /** What the live release's berth.yml says (null: not known). */
  repo: number | null;
}

/** Per process (the live release's, then the override's others), which scale applies. */
export function appliedScale(s: AppScale | undefined): AppliedScale[] {
  const override = s?.override ?? {};
  const repo = s?.repo ?? {};
  const names = [...new Set([...Object.keys(repo), ...Object.keys(override)])].sort((a, b) => (a === 'web' ? -1 : b === 'web' ? 1 : a.localeCompare(b)));
  return names.map((process) => {
    const r = repo[process] ?? null;
    const o = override[process];
    if (o !== undefined) return { process, count: o, source: 'override', repo: r };
    return { process, count: r, source: r === null ? 'unknown' : 'repo', repo: r };
  });
}

/** PUT /api/apps/:name/scale and DELETE: the scale deployment queued, and the override now. */
export type ScaleResult = DeploymentInfo & { agentConnected: boolean; scale: AppScale };
/** Processes one request may scale. */
const MAX_SCALE_ENTRIES = 50;

/**
 * The body of PUT /api/apps/:name/scale, `{"web": 3, "worker": 0}`, with one clear message for the
 * first thing wrong (which process, and why). Whether the live release has each process is the agent's to say.
 */
export function parseScaleBody(body: Record<string, unknown>): ScaleOverride {
  const entries = Object.entries(body);
  if (entries.length === 0) throw new ValidationError('nothing to scale: give PROCESS=N, e.g. web=2');
  if (entries.length > MAX_SCALE_ENTRIES) throw new ValidationError(`at most ${MAX_SCALE_ENTRIES} processes at once`);
  const out: ScaleOverride = {};
  for (const [name, count] of entries) {
    const n = scaleProcessName.safeParse(name);
    if (!n.success) throw new ValidationError(`invalid process name "${name.slice(0, 40)}": ${n.error.issues[0]?.message}`);
    const c = replicaCount.safeParse(count);
    if (!c.success) throw new ValidationError(`invalid scale for ${name}: ${c.error.issues[0]?.message} (0 to ${MAX_SCALE})`);
    out[name] = c.data;
  }
  return out;
}
/** POST /hooks/:app/deploy body (all optional): deploy `commit`; `branch` given and not the app's → acknowledged, nothing deployed. */
export const deployWebhookBody = z
  .object({
    commit: z.string().transform((s) => s.trim().toLowerCase()).pipe(commitSha).optional(),
    branch: branchName.optional(),
  })
  .strict();
/**
 * Why a push webhook was skipped: the same body was deployed before, or its commit is live, was
 * deployed earlier, or is being deployed now.
 */
export type WebhookSkipReason = 'duplicate_payload' | 'commit_live' | 'commit_deployed' | 'commit_deploying' | 'no_watched_change';
/** Every webhook answer (push and deploy webhooks, 2xx and the wait=1 outcomes). */
export interface WebhookResult {
  /** A deployment was created for this request (false: acknowledged, see `message`). */
  deployed: boolean;
  message: string;
  /** Which Git host the push webhook recognised (github, gitlab, gitea, bitbucket); absent for the deploy webhook. */
  host?: string;
  /** The deployment this request created — or, for a redelivered event, the one it created the first time. */
  deployment?: DeploymentInfo;
  /** true when this delivery id was seen before: nothing new was deployed. */
  duplicate?: boolean;
  /** true when a push was authenticated but deliberately not deployed (a replay, or an old commit); see `reason`. */
  skipped?: boolean;
  /** Why a push was skipped (with `skipped`). */
  reason?: WebhookSkipReason;
  /** false: the app's server is offline; the deploy is queued and runs when its agent reconnects. */
  agentConnected?: boolean;
  /** Poll this for the deployment (deploy webhook: with the same token; push webhook: the admin API). */
  statusUrl?: string;
  /** Server-Sent Events stream of the deployment's log and phase changes (same auth as statusUrl). */
  eventsUrl?: string;
}

// ---- deployments: phases and live events (issue 6) ------------------------------------------
/** One phase change of a deployment as the control plane recorded it. */
export interface DeploymentPhase { status: DeployStatus; at: string; reason: string | null }
/** GET /api/deployments/:id: a deployment with its phase timeline. */
export interface DeploymentDetails extends DeploymentInfo { phases: DeploymentPhase[] }
/**
 * GET /api/deployments/:id/events?after=SEQ — Server-Sent Events. `deployment` (data: DeploymentInfo) first and on
 * every phase change, `log` (data: one log line, SSE id = its seq) for each line after SEQ then live, and `end`
 * (data: the final DeploymentInfo) once the deployment has finished; the server then closes the stream.
 */
export const DEPLOYMENT_EVENT = { deployment: 'deployment', log: 'log', end: 'end' } as const;
/** Event names of GET /api/apps/:name/logs (runtime output, `berth logs`): `line` = RuntimeLogLine, `end` = {error?}. */
export const RUNTIME_LOG_EVENT = { line: 'line', end: 'end' } as const;

// ---- rollback and cancel (issue 4) ----------------------------------------------------------
/** POST /api/apps/:name/rollback — absent deploymentId: the good release before the live one. */
export const rollbackBody = z.object({ deploymentId: z.string().regex(/^[a-z0-9]{8,40}$/, 'deployment id must be 8-40 lower-case alphanumerics').optional() }).strict();
/** POST /api/deployments/:id/cancel → the deployment; `cancelPending`: the agent has not confirmed yet (it is still running). */
export interface CancelResult extends DeploymentInfo { cancelPending: boolean }

// ---- cron jobs (issue 9) --------------------------------------------------------------------
export type { CronJobInfo, CronRunInfo, CronRunStatus } from './protocol.js';
/**
 * GET /api/apps/:name/cron → CronJobInfo[] (the live release's jobs, with last and next run).
 * POST /api/apps/:name/cron/:job/run → 202 CronRunInfo (status `running`; 404 unknown job, 409 already running).
 * GET /api/apps/:name/cron/runs[?job=JOB&limit=N] → CronRunInfo[] newest first.
 * GET /api/apps/:name/cron/runs/:id → CronRunInfo. All 503 while the app's server is offline.
 */
export const CRON_RUNS_LIMIT_DEFAULT = 20;

// ---- clusters (issue 15, slice 1: formation) ------------------------------------------------
/** Cluster names follow the server-name rule (they label Docker objects). */
export const clusterName = serverName;
/** Overlay network address pool when none is given: outside 10.0.0.0/8, which cloud VPCs often use. */
export const DEFAULT_ADDR_POOL = '172.29.0.0/16';
/** POST /api/clusters: the manager's agent runs `swarm init`. */
export const createClusterBody = z
  .object({
    name: clusterName,
    manager: serverName,
    advertise: clusterAddr.optional(),
    addrPool: addrPool.optional(),
    /** Port of the berth-managed registry on the manager (default 5000). */
    registryPort: z.number().int().min(1).max(65_535).optional(),
  })
  .strict();
/** POST /api/clusters/:name/nodes: the server's agent joins through the manager's (no SSH). */
export const addClusterNodeBody = z
  .object({
    server: serverName,
    role: swarmRole.default('worker'),
    /** The new node builds the cluster's apps (`--builder`); optional, absent: the builder stays as it is. */
    builder: z.boolean().optional(),
  })
  .strict();
/** PUT /api/clusters/:name/builder: the node that builds the cluster's apps; null (or the manager): the manager. */
export const setClusterBuilderBody = z.object({ server: serverName.nullable() }).strict();
/** GET /api/clusters */
export interface ClusterInfo {
  name: string;
  manager: string;
  /** The address the manager advertises (host:port) and the others join. */
  advertise: string;
  addrPool: string;
  createdAt: string;
  nodeCount: number;
  /** The node that fetches, builds and pushes the cluster's apps: the manager unless one is marked `--builder`. Absent from older control planes. */
  builder?: string;
}
/** One server of a cluster: what berth recorded, merged with what the manager sees now. */
export interface ClusterNodeInfo {
  server: string;
  role: 'manager' | 'worker';
  nodeId: string;
  joinedAt: string;
  /** From the manager's `node ls` (null while the manager is offline). */
  state: string | null;
  availability: string | null;
  addr: string | null;
  leader: boolean;
  runningTasks: number | null;
  /** reachable: Ready and the overlay check passed; unreachable: not Ready, or a check failed; unknown: manager offline. */
  reachability: 'reachable' | 'unreachable' | 'unknown';
  /** Why it is unreachable, naming the servers (e.g. "web2 cannot reach web1 over the overlay network (4789/udp)"). */
  error: string | null;
}
/** GET /api/clusters/:name, POST /api/clusters (201). */
export interface ClusterDetails extends ClusterInfo {
  /** false: the manager's agent is offline and node states are unknown. */
  managerOnline: boolean;
  nodes: ClusterNodeInfo[];
  /** The cluster's image registry (never its credentials or keys); null: none yet. Absent from older control planes. */
  registry?: { address: string; mode: 'managed' | 'external' } | null;
}
/** DELETE /api/clusters/:name/nodes/:server */
export interface ClusterNodeRemoved { cluster: string; server: string; drainedTasks: number }

// ---- cluster registry (issue 15) -------------------------------------------------------------
/** PUT /api/clusters/:name/registry: use an external registry (the user's own) instead of the berth-managed one. */
export const setClusterRegistryBody = z
  .object({
    address: registryAddress,
    username: z.string().min(1).max(255).regex(/^[^\s:]+$/, 'registry username must not contain spaces or ":"'),
    password: z.string().min(1).max(1024),
    /** The CA the registry's certificate is signed by (PEM); absent: a publicly trusted certificate. */
    caPem: certificatePem.optional(),
  })
  .strict();
/** The registry as the API shows it: never its password or keys. */
export interface ClusterRegistryInfo {
  cluster: string;
  mode: 'managed' | 'external';
  address: string;
  username: string;
  /** Whether nodes trust it through a CA berth installs (false: publicly trusted). */
  privateCa: boolean;
  updatedAt: string;
}
