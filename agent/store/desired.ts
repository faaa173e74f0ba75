// The last desired state received from the control plane: what the agent converges to when offline.
import { serverSpec, type ServerSpec } from '../../shared/spec.js';
import { now, type Db } from './db.js';
import { CorruptRowError, CorruptRowLog, jsonColumn } from './rows.js';

export interface StoredDesiredState {
  spec: ServerSpec;
  receivedAt: string;
}

export class DesiredStateStore {
  constructor(
    private readonly db: Db,
    private readonly corruptLog = new CorruptRowLog(),
  ) {}

  save(spec: ServerSpec): void {
    this.db
      .prepare(
        `INSERT INTO desired_state (id, revision, spec, received_at) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, spec = excluded.spec, received_at = excluded.received_at`,
      )
      .run(spec.revision, JSON.stringify(spec), now());
  }

  get(): StoredDesiredState | null {
    const row = this.db.prepare(`SELECT spec, received_at FROM desired_state WHERE id = 1`).get() as { spec: string; received_at: string } | undefined;
    if (!row) return null;
    // Re-validated: the file is on disk and outlives versions of this code. A corrupt one counts as
    // none (nothing is known to be unwanted, so the reconciler touches nothing) until the control
    // plane sends the next one.
    try {
      const spec = jsonColumn(serverSpec, row.spec, { table: 'desired_state', key: '1', column: 'spec' });
      return spec ? { spec, receivedAt: row.received_at } : null;
    } catch (err) {
      if (!(err instanceof CorruptRowError)) throw err;
      this.corruptLog.report(err, 'acting as if no desired state had been received until the control plane sends one');
      return null;
    }
  }
}
