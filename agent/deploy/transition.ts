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

/** Journal the move of deploy `id` to `status` (with `patch`), then report and log it. */
export function recordTransition(deps: TransitionDeps, id: string, status: DeployStatus, patch: DeployPatch = {}): DeployRecord {
  const record = deps.store.deploys.transition(id, status, patch);
  announceTransition(deps, record);
  return record;
}

/**
 * Report and log a transition the journal already holds (recovery journals all of its own in one
 * transaction). `message`/`level` name why it happened when that is not an ordinary step.
 */
export function announceTransition(deps: TransitionDeps, record: DeployRecord, message = `deploy ${record.status}`, level: 'info' | 'warn' = 'info'): void {
  deps.send(journalProgress(record));
  deps.logger[level]({ deploymentId: record.id, app: record.app, status: record.status, ...(record.reason ? { reason: record.reason } : {}) }, message);
}
