// A whole berth installation on loopback for end-to-end tests: a control plane and an agent as
// real processes (the compiled CLI), temp data dirs, a private nginx under a temp prefix.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, createWriteStream, readFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BERTH_BIN, berth, berthJson } from './cli.js';
import { eventually } from './http.js';
import { freePort, makeTmpDir } from './tmp.js';

export interface Daemon {
  proc: ChildProcess;
  logFile: string;
}

export function startDaemon(args: string[], env: Record<string, string>, logFile: string): Daemon {
  const out = createWriteStream(logFile, { flags: 'a' });
  const proc = spawn(process.execPath, [BERTH_BIN, ...args], {
    env: { ...process.env, BERTH_LOG_FORMAT: 'json', BERTH_LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.pipe(out);
  proc.stderr!.pipe(out);
  return { proc, logFile };
}

export async function stopDaemon(d: Daemon | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!d || d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => d.proc.once('exit', () => r()));
  d.proc.kill(signal);
  const timer = setTimeout(() => d.proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export class Stack {
  readonly root: string;
  cpUrl = '';
  adminToken = '';
  httpPort = 0;
  /** Outside `root` (0700): nginx workers (nobody) must traverse to the challenge files. */
  readonly acmeWebroot = makeTmpDir('berth-acme-webroot-');
  /** 0 = HTTPS off (BERTH_HTTPS_PORT=0); set with `Stack.create(name, { https: true })`. */
  httpsPort = 0;
  cp?: Daemon;
  agent?: Daemon;
  /** Unique per stack: agents of parallel test runs share one Docker engine and only touch their own server's objects. */
  readonly serverName = `local-${Math.random().toString(36).slice(2, 8)}`;
  readonly apps = new Set<string>();
  /** Extra agent settings (e.g. BERTH_BASE_IMAGE_*, BERTH_STATIC_DIR), added to agentEnv. */
  readonly extraAgentEnv: Record<string, string>;

  private constructor(root: string, extraAgentEnv: Record<string, string> = {}) {
    this.root = root;
    chmodSync(this.acmeWebroot, 0o755);
    this.extraAgentEnv = extraAgentEnv;
  }

  static async create(name: string, opts: { agentEnv?: Record<string, string>; https?: boolean } = {}): Promise<Stack> {
    const stack = new Stack(makeTmpDir(`berth-${name}-`), { ...opts.agentEnv });
    stack.httpPort = await freePort();
    if (opts.https) {
      do stack.httpsPort = await freePort();
      while (stack.httpsPort === stack.httpPort);
    }
    return stack;
  }

  /** Add or replace agent settings (e.g. ACME settings once Pebble runs); they apply from the next agent start. */
  setAgentEnv(env: Record<string, string | undefined>): void {
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete this.extraAgentEnv[k];
      else this.extraAgentEnv[k] = v;
    }
  }

  get cpData(): string {
    return join(this.root, 'cp');
  }
  get agentData(): string {
    return join(this.root, 'agent');
  }
  get nginxPrefix(): string {
    return join(this.root, 'nginx');
  }

  /** Env for client commands. */
  get env(): Record<string, string> {
    return { BERTH_URL: this.cpUrl, BERTH_TOKEN: this.adminToken, XDG_CONFIG_HOME: join(this.root, 'client-config') };
  }

  get agentEnv(): Record<string, string> {
    return {
      BERTH_DATA: this.agentData,
      BERTH_NGINX_PREFIX: this.nginxPrefix,
      BERTH_HTTP_PORT: String(this.httpPort),
      BERTH_HTTPS_PORT: String(this.httpsPort),
      BERTH_ACME_WEBROOT: this.acmeWebroot,
      BERTH_HEALTH_STABLE_MS: '500',
      BERTH_HEALTH_TIMEOUT_MS: '20000',
      BERTH_DRAIN_MS: '200',
      BERTH_STOP_GRACE_S: '1',
      ...this.extraAgentEnv,
    };
  }

  async startControlPlane(): Promise<void> {
    const port = this.cpUrl ? Number(new URL(this.cpUrl).port) : await freePort();
    this.cp = startDaemon(['control-plane', '--data', this.cpData, '--listen', `127.0.0.1:${port}`], {}, join(this.root, 'control-plane.log'));
    this.cpUrl = `http://127.0.0.1:${port}`;
    await eventually(
      async () => (await fetch(`${this.cpUrl}/healthz`)).status,
      (s) => s === 200,
      20_000,
    ).catch((err) => {
      throw new Error(`control plane did not start: ${String(err)}\n${this.tail('control-plane.log')}`);
    });
    this.adminToken = readFileSync(join(this.cpData, 'admin-token'), 'utf8').trim();
  }

  /** `berth server add` + `berth agent join` + `berth agent`. */
  async joinAndStartAgent(): Promise<void> {
    const added = await berthJson<{ joinToken: string }>(['server', 'add', this.serverName], this.env);
    const joined = await berth(['agent', 'join', this.cpUrl, added.joinToken, '--name', this.serverName, '--data', this.agentData], this.env);
    if (joined.code !== 0) throw new Error(`agent join failed: ${joined.stderr}`);
    await this.startAgent();
  }

  async startAgent(): Promise<void> {
    this.agent = startDaemon(['agent', '--data', this.agentData], this.agentEnv, join(this.root, 'agent.log'));
    await eventually(
      () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], this.env),
      (list) => list.some((s) => s.name === this.serverName && s.connected),
      30_000,
    ).catch((err) => {
      throw new Error(`agent did not connect: ${String(err)}\n${this.tail('agent.log')}`);
    });
  }

  async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopDaemon(this.agent, signal);
  }

  async stopControlPlane(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopDaemon(this.cp, signal);
  }

  tail(file: string, lines = 60): string {
    const path = join(this.root, file);
    if (!existsSync(path)) return `(no ${file})`;
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  }

  /** Stop daemons and the private nginx; remove only the containers and images of this stack's apps. */
  async destroy(): Promise<void> {
    await this.stopAgent();
    await this.stopControlPlane();
    rmSync(this.acmeWebroot, { recursive: true, force: true });
    if (existsSync(join(this.nginxPrefix, 'nginx.pid'))) {
      try {
        execFileSync('nginx', ['-s', 'quit', '-p', this.nginxPrefix, '-c', 'nginx.conf'], { stdio: 'ignore' });
      } catch {
        // already stopped
      }
    }
    for (const app of this.apps) {
      const ids = execFileSync('docker', ['ps', '-aq', '--filter', 'label=berth.managed=true', '--filter', `label=berth.app=${app}`, '--filter', `label=berth.server=${this.serverName}`], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);
      if (ids.length) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
      // Images can be parents of each other (a build command's image sits on its build's image):
      // remove one at a time, children first by retrying, and never fail the test over cleanup.
      for (let round = 0; round < 3; round++) {
        const images = execFileSync('docker', ['images', '-aq', '--filter', 'label=berth.managed=true', '--filter', `label=berth.app=${app}`, '--filter', `label=berth.server=${this.serverName}`], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean);
        if (images.length === 0) break;
        for (const image of new Set(images)) {
          try {
            execFileSync('docker', ['rmi', '-f', image], { stdio: 'ignore' });
          } catch {
            // a parent of an image still present: retried next round
          }
        }
      }
    }
  }
}
