// The desired-state spec: what the control plane wants running on one server. The agent stores the
// last one it received and reconciles against it, with or without a connection.
import { z } from 'zod';
import { appName, branchName, domainName, envKey, gitUrl, serverName } from './validation.js';
import { rootDir } from './monorepo.js';

/** A process name as berth.yml spells it (they become container names and labels). */
export const scaleProcessName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,29}$/, 'process names are 1-30 lower-case letters, digits, "_" or "-", starting with a letter')
  .refine((n) => n !== 'release' && n !== 'build', 'process name is reserved (release and build are phases, not processes)');
/** The most replicas `berth scale` sets for one process (the same cap as berth.yml's `scale:`). */
export const MAX_SCALE = 32;
export const replicaCount = z
  .number({ error: 'expected a whole number of containers' })
  .int('expected a whole number of containers')
  .min(0, 'expected 0 or more containers')
  .max(MAX_SCALE, `at most ${MAX_SCALE} containers per process`);
/** `berth scale`: replicas per process that override the repo's `scale:` until reset. */
export const scaleOverride = z.record(scaleProcessName, replicaCount);
export type ScaleOverride = z.infer<typeof scaleOverride>;

export const appSpec = z.object({
  name: appName,
  repo: gitUrl,
  branch: branchName,
  domains: z.array(domainName),
  /** The app's env vars (secrets): reach the build, the release command and every process. Never logged. */
  env: z.record(envKey, z.string().max(65_536)).default({}),
  /** Monorepos: the app is built from this subdirectory of the checkout (absent = the repository root). */
  rootDir: rootDir.optional(),
  /** SSH repositories: the app's private deploy key (OpenSSH format), a secret like the env values. */
  /** The Git host's keys given with --known-hosts (absent: pinned on first use). */
  knownHosts: z.string().max(65_536).optional(),
  /** `berth scale`: replicas per process that win over the repo's `scale:` (absent: none set). */
  scale: scaleOverride.optional(),
  deployKey: z.string().max(8192).regex(/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+\/=\n]+-----END OPENSSH PRIVATE KEY-----\n$/).optional(),
});
export type AppSpec = z.infer<typeof appSpec>;

export const serverSpec = z.object({
  server: serverName,
  /** Monotonic revision, bumped on every change, so the agent can tell new from stale. */
  revision: z.number().int().nonnegative(),
  apps: z.array(appSpec),
  /**
   * Removed apps whose volumes are to be deleted too (`berth app rm --purge-volumes`): the agent
   * removes an app's berth volumes once the app is absent from `apps` and listed here. Recorded by
   * the control plane, so a purge ordered while the agent is offline still happens. Absent from
   * control planes that predate volumes.
   */
  purgeVolumes: z.array(appName).optional(),
});
export type ServerSpec = z.infer<typeof serverSpec>;
