// Child processes for the Swarm test bed: a program with its arguments (no shell), optional stdin,
// a timeout on every call, and the output kept for the error message.
import { spawn } from 'node:child_process';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the program's stdin (then closed). */
  input?: string | Buffer;
  timeoutMs?: number;
}

/** Run `argv`; resolves with the exit code and output whatever the code (a timeout gives code -1). */
export function run(argv: string[], opts: RunOptions = {}): Promise<Run> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('run: empty argv');
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => {}); // the program may exit without reading its input
    child.stdin.end(opts.input ?? '');
    child.on('error', (err) => (stderr += `${err.message}\n`));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n(timed out after ${opts.timeoutMs ?? 120_000} ms)`;
      resolve({ code: timedOut ? -1 : (code ?? -1), stdout, stderr });
    });
  });
}

/** Run `argv` and expect exit code 0; the error names the command and carries its output. */
export async function runOk(argv: string[], opts: RunOptions = {}): Promise<string> {
  const res = await run(argv, opts);
  if (res.code !== 0) throw new Error(`${argv.slice(0, 6).join(' ')} failed (exit ${res.code}): ${(res.stderr || res.stdout).trim().slice(-2000)}`);
  return res.stdout;
}
