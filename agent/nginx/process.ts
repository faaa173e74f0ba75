// nginx process control: run the binary, start the daemon, find the master through its pid file and
// /proc, signal it, and wait for old workers to retire after a reload. Linux only (/proc).
import { execFile, spawn } from 'node:child_process';
import { sleep } from '../../shared/util/index.js';
import { parseBuildPaths, readOrNull, safeReaddir, type BuildPaths, type NginxFiles } from './files.js';
import { NginxError } from './types.js';
import { errorLogHint } from './verify.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** One nginx instance: the private one under the prefix, or the system one. */
export class NginxProcess {
  private buildPaths: Promise<BuildPaths> | undefined;

  constructor(
    readonly bin: string,
    private readonly files: NginxFiles,
  ) {}

  /**
   * Where nginx writes its pid and its error log: under the prefix, or, for a system nginx, the paths
   * compiled into the binary (`nginx -V`, asked once; Debian's paths when it names none).
   */
  paths(): Promise<BuildPaths> {
    if (this.files.prefix) return Promise.resolve(this.files.prefixPaths());
    this.buildPaths ??= this.run(['-V']).then((v) => parseBuildPaths(v.stderr));
    return this.buildPaths;
  }

  async errorLog(): Promise<string> {
    return (await this.paths()).errorLogPath;
  }

  run(extra: string[], timeoutMs = 30_000): Promise<RunResult> {
    return new Promise((resolvePromise) => {
      execFile(this.bin, this.baseArgs(extra), { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolvePromise({ code, stdout, stderr: stderr || (err && !stderr ? err.message : '') });
      });
    });
  }

  /** `nginx -t` on the full config, exactly as nginx will load it. */
  test(): Promise<RunResult> {
    return this.run(['-t', '-q']);
  }

  reload(): Promise<RunResult> {
    return this.run(['-s', 'reload']);
  }

  async start(): Promise<void> {
    const r = await this.startProcess();
    if (r.code !== 0) throw new NginxError(`nginx failed to start: ${nginxMessage(r.stderr)}`);
  }

  /** Start nginx; it daemonizes (so it keeps serving if the agent dies) and we wait for its pid. */
  async startProcess(): Promise<RunResult> {
    const result = await new Promise<RunResult>((resolvePromise) => {
      const child = spawn(this.bin, this.baseArgs([]), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.on('error', (err) => resolvePromise({ code: 127, stdout: '', stderr: err.message }));
      // 'exit', not 'close': the daemonized master must not be able to hold us up via the pipe.
      child.on('exit', (code) => {
        setTimeout(() => {
          child.stderr.destroy();
          resolvePromise({ code, stdout: '', stderr });
        }, 20);
      });
    });
    if (result.code !== 0) return result;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if ((await this.runningPid()) !== null) return result;
      await sleep(50);
    }
    return { code: 1, stdout: '', stderr: `nginx exited without leaving a running master${errorLogHint(await this.errorLog(), 0)}` };
  }

  async isRunning(): Promise<boolean> {
    return (await this.runningPid()) !== null;
  }

  /** The master's pid from the pid file, when that process is alive and is nginx. */
  async runningPid(): Promise<number | null> {
    const pid = Number((readOrNull((await this.paths()).pidPath) ?? '').trim());
    if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return null;
    // A stale pid file can name an unrelated process that reused the pid.
    const cmdline = readOrNull(`/proc/${pid}/cmdline`);
    return cmdline === null || cmdline.includes('nginx') ? pid : null;
  }

  /** Stop the master: gracefully, then harder when it does not go. */
  async stop(): Promise<void> {
    const pid = await this.runningPid();
    if (pid === null) return;
    // SIGQUIT is what `nginx -s quit` sends; signalling directly also works when the config
    // on disk no longer parses (`-s` re-reads it to find the pid file).
    signal(pid, 'SIGQUIT');
    if (await waitForExit(pid, 10_000)) return;
    signal(pid, 'SIGTERM');
    if (await waitForExit(pid, 3000)) return;
    signal(pid, 'SIGKILL');
    await waitForExit(pid, 2000);
  }

  /** nginx arguments for our instance: prefix mode always names the prefix, config and error log. */
  private baseArgs(extra: string[]): string[] {
    const prefix = this.files.prefix;
    if (!prefix) return extra;
    return ['-p', `${prefix}/`, '-c', this.files.mainConf(), '-e', this.files.prefixPaths().errorLogPath, ...extra];
  }
}

/** nginx's stderr reduced to its error lines ("[emerg] … in FILE:LINE"). */
export function nginxMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^nginx: /, '').trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /^\[(emerg|alert|crit|error)\]/.test(l));
  return (errors.length ? errors : lines).slice(0, 3).join('; ') || 'no output from nginx';
}

/** The master's worker processes that still accept connections (Linux /proc). */
export function workerPids(master: number): number[] {
  const pids: number[] = [];
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOrNull(`/proc/${entry}/stat`);
    if (!stat) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== master) continue;
    const cmd = readOrNull(`/proc/${entry}/cmdline`) ?? '';
    if (cmd.includes('worker process') && !cmd.includes('shutting down')) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Wait until each old worker has exited or retitled itself "worker process is shutting down",
 * which nginx does right before it closes its listening sockets on a graceful reload.
 */
export async function waitRetired(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepting = pids.filter((pid) => isAlive(pid) && !(readOrNull(`/proc/${pid}/cmdline`) ?? 'shutting down').includes('shutting down'));
    if (accepting.length === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Is the process alive? A daemonized nginx is reparented to PID 1, which may be slow to reap it:
 * an exited master lingers as a zombie that `kill(pid, 0)` still finds.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readOrNull(`/proc/${pid}/stat`);
  const state = stat ? stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) : '';
  return state !== 'Z' && state !== 'X';
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return false;
}
