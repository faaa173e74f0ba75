// The control plane's HTTP API: request bodies (validated with zod on the server) and response
// shapes (what the CLI prints with --json). Field names are public: only ever add, never rename.
import { z } from 'zod';
import { appName, branchName, commitSha, domainName, gitUrl, serverName } from './validation.js';
import type { DeployStatus } from './deploy-status.js';

export const createServerBody = z.object({ name: serverName });
export const joinBody = z.object({ token: z.string().min(1).max(200), name: serverName.optional(), hostname: z.string().max(255).optional() });
export const createAppBody = z.object({ name: appName, repo: gitUrl, branch: branchName.default('main'), server: serverName });
export const addDomainBody = z.object({ domain: domainName });
export const deployBody = z.object({ commit: commitSha.optional() });

/** POST /api/servers */
export interface ServerCreated { name: string; joinToken: string; installCommand: string }
/** GET /api/servers */
export interface ServerInfo { name: string; connected: boolean; joinedAt: string | null; lastSeenAt: string | null; agentVersion: string | null; hostname: string | null; createdAt: string }
/** POST /api/agent/join */
export interface JoinResult { server: string; credential: string; controlPlaneUrl: string }
/** Apps */
export interface AppInfo { name: string; repo: string; branch: string; server: string; domains: string[]; webhooks: Record<string, string>; createdAt: string }
/** Domains */
export interface DomainInfo { domain: string; app: string; createdAt: string }
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
}
/** GET /api/deployments/:id/logs?after=SEQ */
export interface DeploymentLogs { deployment: DeploymentInfo; lines: Array<{ seq: number; ts: string; stream: string; text: string }> }
/** Every error response body. */
export interface ApiError { error: string }
