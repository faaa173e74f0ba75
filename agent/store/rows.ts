// Rows read back from SQLite are checked, not cast. Two cases are told apart:
//   - absent: the column is NULL or a JSON key is missing because the row was written by an older
//     berth than the field. The reader substitutes the documented default (see each store).
//   - corrupt: the text is not JSON, or the JSON has the wrong shape. That is a CorruptRowError
//     naming table, key and column, logged once at error level; the data is never silently replaced
//     by a default (a release re-created from a corrupt row with an empty env would be worse than none).
import type { z } from 'zod';
import { createLogger, type Logger } from '../../shared/logger.js';

/** Where a stored value came from: the table, the row's key, the column. */
export interface RowRef {
  table: string;
  key: string;
  column: string;
}

export class CorruptRowError extends Error {
  override name = 'CorruptRowError';
  readonly table: string;
  readonly key: string;
  readonly column: string;

  constructor(ref: RowRef, problem: string) {
    super(`the stored ${ref.table} row ${ref.key} is corrupt: column ${ref.column} ${problem}`);
    this.table = ref.table;
    this.key = ref.key;
    this.column = ref.column;
  }
}

/** The first problem zod found, as "at PATH: MESSAGE". */
function shapeProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'has the wrong shape';
  const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
  return `has the wrong shape at ${path}: ${issue.message}`;
}

/**
 * The value of a JSON column, checked against `schema`. NULL → undefined (older than the column: the
 * caller applies the default); unparseable JSON or the wrong shape → CorruptRowError.
 */
export function jsonColumn<T>(schema: z.ZodType<T>, text: string | null | undefined, ref: RowRef): T | undefined {
  if (text === null || text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON.parse's message: it quotes the text, and an env column holds secrets.
    throw new CorruptRowError(ref, `is not valid JSON (${text.length} characters)`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CorruptRowError(ref, shapeProblem(parsed.error));
  return parsed.data;
}

/** A plain column value checked against `schema` (e.g. a status enum); a wrong value → CorruptRowError. */
export function checkedColumn<T>(schema: z.ZodType<T>, value: unknown, ref: RowRef): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CorruptRowError(ref, `holds an unexpected value (${shapeProblem(parsed.error)})`);
  return parsed.data;
}

/**
 * Logs each corrupt row once per process at error level (the reconciler reads the releases on every
 * pass: one loud line, not one every pass; the pass records its own report of what it skipped).
 */
export class CorruptRowLog {
  private readonly seen = new Set<string>();
  private logger: Logger | undefined;

  /** `logger`: the agent's; without one, a logger of its own is made on the first report (most stores never need it). */
  constructor(private readonly given?: Logger) {}

  report(err: CorruptRowError, action: string): void {
    const id = `${err.table}\0${err.key}\0${err.column}\0${err.message}`;
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.logger ??= (this.given ?? createLogger('berth-agent')).child({ component: 'agent-store' });
    this.logger.error({ table: err.table, key: err.key, column: err.column }, `${err.message}: ${action}`);
  }
}
