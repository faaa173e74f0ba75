// The deploy state machine's states. Names are part of the public interface (CLI --json, API).
import { z } from 'zod';

export const DEPLOY_PHASES = ['queued', 'fetching', 'building', 'releasing', 'starting', 'health_checking', 'switching'] as const;
export const DEPLOY_TERMINAL = ['done', 'failed', 'cancelled', 'superseded'] as const;

export const deployStatus = z.enum([...DEPLOY_PHASES, ...DEPLOY_TERMINAL]);
export type DeployStatus = z.infer<typeof deployStatus>;

export function isTerminal(status: DeployStatus): boolean {
  return (DEPLOY_TERMINAL as readonly string[]).includes(status);
}
