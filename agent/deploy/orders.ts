// Orders from the control plane about deploys: a new one is journaled and queued (a replayed one is
// answered from the journal instead of running twice), a cancel stops one wherever it is.
import { isTerminal } from '../../shared/deploy-status.js';
import type { CancelOrder, DeployOrder } from '../../shared/protocol.js';
import { DeployCancelled } from './cancel.js';
import { DeployLogStream } from './log-stream.js';
import type { DeployQueue } from './queue.js';
import { journalProgress } from './status-report.js';
import { recordTransition, type TransitionDeps } from './transition.js';

export function acceptOrder(deps: TransitionDeps, queue: DeployQueue, order: DeployOrder): void {
  const { store, logger } = deps;
  if (!store.deploys.create(order)) {
    // A replay (e.g. after a reconnect): report where it stands instead of running it twice.
    const existing = store.deploys.get(order.deploymentId);
    logger.info({ deploymentId: order.deploymentId, status: existing?.status }, 'ignored a deploy order already in the journal');
    if (existing && existing.status !== 'queued') deps.send(journalProgress(existing));
    return;
  }
  logger.info({ deploymentId: order.deploymentId, app: order.app.name }, 'deploy queued');
  queue.enqueue(order);
}

export function cancelOrder(deps: TransitionDeps, queue: DeployQueue, cancel: CancelOrder): void {
  const record = deps.store.deploys.get(cancel.deploymentId);
  // Unknown or already finished: nothing to stop (the control plane re-sends cancels on every hello).
  if (!record || isTerminal(record.status)) return;
  const reason = new DeployCancelled(cancel.status, cancel.reason);
  const where = queue.cancel(cancel.deploymentId, reason);
  deps.logger.info({ deploymentId: cancel.deploymentId, status: cancel.status, where }, 'deploy cancelled by the control plane');
  // A running deploy journals its own end when its abort lands; a waiting (or not yet
  // scheduled) one never runs, so it is finished here.
  if (where !== 'running') finishUnstarted(deps, record.id, cancel.status, reason.message);
}

/** End a deploy that never ran: the reason in its log, then the journaled, reported end. */
function finishUnstarted(deps: TransitionDeps, id: string, status: 'cancelled' | 'superseded', reason: string): void {
  const { store } = deps;
  const record = store.deploys.get(id);
  if (!record || isTerminal(record.status)) return;
  const stream = new DeployLogStream(id, record.logSeq, deps.send, (next) => store.deploys.setLogSeq(id, next));
  stream.system(reason);
  stream.flush();
  recordTransition(deps, id, status, { reason });
}
