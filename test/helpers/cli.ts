// Run the real `berth` executable (compiled) as a child process.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BERTH_BIN = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function berth(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BERTH_BIN, ...args],
      { env: { ...process.env, BERTH_LOG_FORMAT: 'json', ...env }, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Run and expect success; parse stdout as JSON. */
export async function berthJson<T>(args: string[], env: Record<string, string | undefined> = {}): Promise<T> {
  const res = await berth([...args, '--json'], env);
  if (res.code !== 0) throw new Error(`berth ${args.join(' ')} failed (${res.code}): ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}
