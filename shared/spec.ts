// The desired-state spec: what the control plane wants running on one server. The agent stores the
// last one it received and reconciles against it, with or without a connection.
import { z } from 'zod';
import { appName, branchName, domainName, envKey, gitUrl, serverName } from './validation.js';

export const appSpec = z.object({
  name: appName,
  repo: gitUrl,
  branch: branchName,
  domains: z.array(domainName),
  /** The app's env vars (secrets): reach the build, the release command and every process. Never logged. */
  env: z.record(envKey, z.string().max(65_536)).default({}),
});
export type AppSpec = z.infer<typeof appSpec>;

export const serverSpec = z.object({
  server: serverName,
  /** Monotonic revision, bumped on every change, so the agent can tell new from stale. */
  revision: z.number().int().nonnegative(),
  apps: z.array(appSpec),
});
export type ServerSpec = z.infer<typeof serverSpec>;
