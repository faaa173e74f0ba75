// "Nothing changed over the next passes" needs a signal, not a fixed sleep: the agent records every
// reconcile pass in its SQLite file (`reconcile_runs`), so a test waits for passes that STARTED after
// the moment it cares about, however fast or slow the machine is.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { eventually } from './http.js';

function lastPassId(agentData: string): number {
  const db = new Database(join(agentData, 'agent.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COALESCE(MAX(id), 0) AS id FROM reconcile_runs').get() as { id: number }).id;
  } finally {
    db.close();
  }
}

/**
 * Resolves once `passes` whole reconcile passes have started and finished after this call (a pass
 * already under way when it is called does not count: one more is awaited). Fails after `timeoutMs`.
 */
export async function afterReconcilePasses(agentData: string, passes: number, timeoutMs: number): Promise<void> {
  const from = lastPassId(agentData);
  await eventually(async () => lastPassId(agentData), (id) => id >= from + passes + 1, timeoutMs, 100);
}
