// Loader hook of module-trace.ts: appends each ES module URL as it loads (runs on the hooks thread).
import { appendFileSync } from 'node:fs';

export async function load(url: string, context: unknown, next: (url: string, context: unknown) => Promise<unknown>): Promise<unknown> {
  appendFileSync(`${process.env.BERTH_TRACE_MODULES}.esm`, `${url}\n`);
  return next(url, context);
}
