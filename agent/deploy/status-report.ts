// Telling the control plane where a deployment stands, from the agent's own journal: after a replayed
// deploy order, and when the control plane asks (on every hello) about deployments it has as started
// but unfinished — it may have missed their end while it was away, or been restored from a backup
// taken while they ran.
import type { DeployStatus } from '../../shared/deploy-status.js';
import { PROTOCOL_VERSION, type AgentMessage } from '../../shared/protocol.js';
import type { DeployRecord } from '../store/deploys.js';

type DeployProgress = Extract<AgentMessage, { type: 'deploy_progress' }>;

/** The one builder of a `deploy_progress` message: where deployment `id` stands now. */
function progressMessage(id: string, status: DeployStatus, commit: string | null, reason: string | null): DeployProgress {
  return {
    type: 'deploy_progress',
    v: PROTOCOL_VERSION,
    deploymentId: id,
    status,
    ...(commit ? { commit } : {}),
    ...(reason ? { reason } : {}),
    ts: new Date().toISOString(),
  };
}

/** The journal's word on `record`, as a progress report. */
export function journalProgress(record: DeployRecord): DeployProgress {
  return progressMessage(record.id, record.status, record.commit, record.reason);
}

export const NO_RECORD_REASON =
  "this server's agent has no record of this deployment (its data was reset, or the control plane was restored from a backup taken while the deploy ran)";

/**
 * Answers for each asked id: the journal's status, or `failed` when the journal has no such
 * deployment (nothing runs it, so it must not stay "running"). A deployment still queued here says
 * nothing: the control plane already has it as started, and the queue will report it.
 */
export function answerStatusRequest(ids: readonly string[], get: (id: string) => DeployRecord | null): DeployProgress[] {
  const answers: DeployProgress[] = [];
  for (const id of ids) {
    const record = get(id);
    if (!record) {
      answers.push(progressMessage(id, 'failed', null, NO_RECORD_REASON));
    } else if (record.status !== 'queued') {
      answers.push(journalProgress(record));
    }
  }
  return answers;
}
