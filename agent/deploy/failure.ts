// How a deploy that did not reach `done` ends: its final state, the one-line reason shown for it,
// the clean-up (cleanup.ts), and the journaled end.
import type { DeployStatus } from '../../shared/deploy-status.js';
import { oneLine } from '../../shared/util/index.js';
import { AppConfigError } from '../config/index.js';
import { DeployCancelled } from './cancel.js';
import { cleanupFailedDeploy } from './cleanup.js';
import type { DeployRun } from './deploy-run.js';
import { redactUrls } from './log-stream.js';
import { DeploySkipped } from './push-guard.js';
import { RollbackError } from './rollback.js';

/** The first meaningful line of an error, credentials in URLs hidden: reasons are shown in one line. */
export function reasonLine(err: unknown, max = 500): string {
  // Redacted before it is cut, so a cut can never leave half a credential unrecognised.
  return oneLine(redactUrls(oneLine(err, Number.POSITIVE_INFINITY)), max);
}

const FAILURE_PREFIX: Partial<Record<DeployStatus, string>> = {
  queued: 'deploy failed',
  fetching: 'fetch failed',
  building: 'build failed',
  releasing: 'release failed',
  starting: 'start failed',
  health_checking: 'health check failed',
  switching: 'switch failed',
};

export interface Ending {
  status: 'failed' | 'cancelled' | 'superseded';
  reason: string;
  /** Why: `failed` is the deploy's own error; the others are decisions made outside it. */
  cause: 'cancelled' | 'stopped' | 'skipped' | 'failed';
}

/** The end of a deploy that threw `err` while in `run.phase`. */
export function endingOf(run: Pick<DeployRun, 'signal' | 'phase' | 'mask'>, err: unknown): Ending {
  const { signal, phase, mask } = run;
  // The control plane cancelled it (a user, or a newer deploy): the state it asked for, naming the phase reached.
  if (signal.aborted && signal.reason instanceof DeployCancelled) {
    return { cause: 'cancelled', status: signal.reason.status, reason: mask(`${signal.reason.message} (while ${phase})`) };
  }
  // The agent is stopping: every running deploy is aborted and fails, naming its phase.
  if (signal.aborted) return { cause: 'stopped', status: 'failed', reason: `agent stopped while the deploy was ${phase}` };
  // A push of an older commit: not deployed, and not a failure either.
  if (err instanceof DeploySkipped) return { cause: 'skipped', status: 'cancelled', reason: err.message };
  return { cause: 'failed', status: 'failed', reason: mask(failureReason(err, phase)) };
}

/** The reason of a deploy that failed on its own error (masked by the caller: it may quote env values). */
export function failureReason(err: unknown, phase: DeployStatus): string {
  // berth.yml itself is wrong: that, not the phase that read it, is what to fix.
  if (err instanceof AppConfigError) return `invalid app config: ${reasonLine(err)}`;
  // The kept release could not be brought back: the message says what to do instead.
  if (err instanceof RollbackError) return `rollback failed: ${reasonLine(err)}`;
  // Anything else: named by the phase it happened in ("build failed: …").
  return `${FAILURE_PREFIX[phase] ?? 'deploy failed'}: ${reasonLine(err)}`;
}

/** Log why, undo what the deploy did, and journal its end. Never throws: the queue must go on. */
export async function endFailedDeploy(run: DeployRun, err: unknown): Promise<void> {
  const { cause, status, reason } = endingOf(run, err);
  // Not the error itself: its message can carry container output, and so env values.
  if (cause === 'skipped') run.log.info({ reason }, 'push deploy skipped');
  else if (cause === 'failed') run.log.warn({ reason, error: err instanceof Error ? err.name : typeof err }, 'deploy failed');
  await cleanupFailedDeploy(run);
  try {
    // The detail after the first line (a crashed process's last output) goes to the log, masked like everything else.
    const detail = cause === 'failed' && err instanceof Error ? err.message.split('\n').slice(1).join('\n').trim() : '';
    if (detail) run.stream.system(detail);
    run.stream.system(reason);
    run.transition(status, { reason });
  } catch (e) {
    run.log.error({ err: e, reason }, 'could not journal the failed deploy');
  }
}
