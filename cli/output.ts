// Printing: --json gives exactly one JSON document on stdout; otherwise a plain aligned table.
import { terminalSafe } from './terminal-safe.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  // Cells hold host names, branches, reasons from agents and repos: never raw control characters.
  const cell = (v: unknown) => terminalSafe(v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') || '-' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd() + '\n';
  process.stdout.write(line(columns.map((c) => c.toUpperCase())));
  for (const row of rows) process.stdout.write(line(columns.map((c) => cell(row[c]))));
}

/** Print either the JSON document or a human rendering of it. */
export function output<T>(json: boolean, value: T, human: (v: T) => void): void {
  if (json) printJson(value);
  else human(value);
}
