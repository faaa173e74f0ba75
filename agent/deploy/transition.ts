// Every move of a deploy through its states goes through here: journaled (the journal checks it
// against the state machine), reported to the control plane as `deploy_progress`, and logged.
import type { DeployStatus } from '../../shared/deploy-status.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMessage } from '../../shared/protocol.js';
import type { AgentStore, DeployPatch, DeployRecord } from '../store/index.js';
import { journalProgress } from './status-report.js';

export interface TransitionDeps {
  store: AgentStore;
  send: (msg: AgentMessage) => void;
  logger: Logger;
}

/** Optional facts a progress report carries besides the journal's (issue 16): not journaled, sent while known. */
export type ProgressExtra = Partial<Pick<Extract<AgentMessage, { type: 'deploy_progress' }>, 'commitMessage' | 'repoScale' | 'built'>>;

/** Journal the move of deploy `id` to `status` (with `patch`), then report and log it. */
export function recordTransition(deps: TransitionDeps, id: string, status: DeployStatus, patch: DeployPatch = {}, extra: ProgressExtra = {}): DeployRecord {
  const record = deps.store.deploys.transition(id, status, patch);
  announceTransition(deps, record, undefined, undefined, extra);
  return record;
}

/**
 * Report and log a transition the journal already holds (recovery journals all of its own in one
 * transaction). `message`/`level` name why it happened when that is not an ordinary step.
 */
export function announceTransition(
  deps: TransitionDeps,
  record: DeployRecord,
  message = `deploy ${record.status}`,
  level: 'info' | 'warn' = 'info',
  extra: ProgressExtra = {},
): void {
  deps.send({ ...journalProgress(record), ...extra });
  deps.logger[level]({ deploymentId: record.id, app: record.app, status: record.status, ...(record.reason ? { reason: record.reason } : {}) }, message);
}
