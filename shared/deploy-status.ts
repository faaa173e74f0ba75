// The deploy state machine: its states and, as data, the transitions allowed between them. Names
// are part of the public interface (CLI --json, API). The agent's journal refuses any other move.
import { z } from 'zod';

export const DEPLOY_PHASES = ['queued', 'fetching', 'building', 'releasing', 'starting', 'health_checking', 'switching'] as const;
export const DEPLOY_TERMINAL = ['done', 'failed', 'cancelled', 'superseded'] as const;

export const deployStatus = z.enum([...DEPLOY_PHASES, ...DEPLOY_TERMINAL]);
export type DeployStatus = z.infer<typeof deployStatus>;

export function isTerminal(status: DeployStatus): boolean {
  return (DEPLOY_TERMINAL as readonly string[]).includes(status);
}

/**
 * How any unfinished deploy may end early: `failed` (an error, a missed deadline, the agent stopping
 * or restarting), `cancelled` (by a user, or a push older than the live commit: skipped) or
 * `superseded` (a newer deploy of the app was queued; the cancel can reach a deploy already running).
 */
const ENDS_EARLY = ['failed', 'cancelled', 'superseded'] as const;

/** From each state, the states it may move to. */
export const DEPLOY_TRANSITIONS: Readonly<Record<DeployStatus, readonly DeployStatus[]>> = {
  // A rollback skips fetching, building and releasing: a kept release's image starts directly. A
  // cluster deploy built on the cluster's builder starts on the manager at releasing (or starting).
  queued: ['fetching', 'releasing', 'starting', ...ENDS_EARLY],
  fetching: ['building', ...ENDS_EARLY],
  // Without a release command the build goes straight to starting. A build-only order on a cluster's
  // builder ends `done` once its image is pushed (the manager's journal goes on from there).
  building: ['releasing', 'starting', 'done', ...ENDS_EARLY],
  releasing: ['starting', ...ENDS_EARLY],
  starting: ['health_checking', ...ENDS_EARLY],
  health_checking: ['switching', ...ENDS_EARLY],
  // `done` also when the agent restarted mid-switch after recording the new release as current.
  switching: ['done', ...ENDS_EARLY],
  done: [],
  failed: [],
  cancelled: [],
  superseded: [],
};

export function canTransition(from: DeployStatus, to: DeployStatus): boolean {
  // `?? []`: a status read back from storage that is no state at all allows nothing.
  return (DEPLOY_TRANSITIONS[from] ?? []).includes(to);
}

/** A move the state machine does not allow: always a bug in the code that asked for it. */
export class IllegalTransitionError extends Error {
  override name = 'IllegalTransitionError';
  constructor(
    readonly deploymentId: string,
    readonly from: DeployStatus,
    readonly to: DeployStatus,
  ) {
    super(`deploy ${deploymentId} cannot go from ${from} to ${to} (allowed: ${DEPLOY_TRANSITIONS[from]?.join(', ') || 'nothing'})`);
  }
}

export function assertTransition(deploymentId: string, from: DeployStatus, to: DeployStatus): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(deploymentId, from, to);
}
