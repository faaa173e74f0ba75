// A real multi-node Docker Swarm on one machine for cluster-mode tests: N Docker engines, each in its
// own container of the node image (./swarm-node-image.ts) on a bridge network this helper creates,
// node 1 the manager and the others workers. The host reaches each node's engine through a socket in
// a bind-mounted directory. Everything it creates is named `berth-swarm-test-<rand>-…`, labelled
// berth-test=swarm, and removed by close() (or at process exit); BERTH_TEST_KEEP_TMP=1 keeps it.
// How it works and its limits: docs/testing.md, "Cluster test bed".
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Docker from 'dockerode';
import { ensureDocker } from './docker.js';
import { eventually } from './http.js';
import { run, runOk, type Run, type RunOptions } from './swarm-exec.js';
import { ensureSwarmNodeImage, NODE_ENTRYPOINT, NODE_HOST_DIR } from './swarm-node-image.js';
import { chooseSubnet, hostAddress } from './swarm-subnet.js';
import { makeTmpDir } from './tmp.js';

export type { Run } from './swarm-exec.js';

export const SWARM_LABEL = 'berth-test=swarm';

export interface SwarmOptions {
  /** How many nodes (default 3): node 1 is the manager, the rest join as workers. */
  nodes?: number;
  /** The bridge network's subnet, a /24 or wider (default: BERTH_TEST_SWARM_SUBNET, else a free 172.31.x.0/24). */
  subnet?: string;
  /** `swarm init --default-addr-pool` (overlay networks' addresses; Swarm's default is 10.0.0.0/8). */
  defaultAddrPool?: string;
  /** Extra dockerd arguments for every node. */
  dockerdArgs?: string[];
  /** Extra bind mounts for every node, `HOST:CONTAINER[:ro]` (e.g. the built tree and the host's Node 20 for agents in the nodes). */
  mounts?: string[];
  /** Bound on each wait (an engine answering, nodes Ready); default 90 s. */
  timeoutMs?: number;
  /** false: leave the engines out of any swarm (berth's agents form it: test/helpers/swarm-agents.ts). */
  form?: boolean;
}

export interface SwarmNode {
  /** Container name, hostname and Swarm hostname. */
  name: string;
  ip: string;
  role: 'manager' | 'worker';
  /** dockerode client for the node's own engine (through hostDir/docker.sock). */
  docker: Docker;
  socketPath: string;
  /** Host directory bind-mounted at /berth-host in the node. */
  hostDir: string;
  /** The docker volume holding the node's /var/lib/docker. */
  volume: string;
}

/** Swarms not closed yet: removed synchronously when the process exits. */
const live = new Set<Swarm>();
process.on('exit', () => {
  for (const s of live) s.closeSync();
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const s of live) s.closeSync();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

const keep = () => process.env.BERTH_TEST_KEEP_TMP === '1';

export class Swarm {
  readonly prefix: string;
  readonly network: string;
  readonly nodes: SwarmNode[] = [];
  /** The network's gateway: the host's address as the nodes see it (where a control plane on the host listens for agents in nodes). */
  gateway = '';
  subnet = '';
  private closing?: Promise<void>;
  private readonly timeoutMs: number;

  private constructor(prefix: string, timeoutMs: number) {
    this.prefix = prefix;
    this.network = `${prefix}-net`;
    this.timeoutMs = timeoutMs;
  }

  get manager(): SwarmNode {
    return this.node(1);
  }

  get workers(): SwarmNode[] {
    return this.nodes.slice(1);
  }

  /** A node by name, or by 1-based index. */
  node(which: string | number): SwarmNode {
    const n = typeof which === 'number' ? this.nodes[which - 1] : this.nodes.find((x) => x.name === which);
    if (!n) throw new Error(`no swarm node ${which}`);
    return n;
  }

  /** `docker exec` a program (no shell) in a node; resolves whatever the exit code. */
  tryExec(node: SwarmNode | string, argv: string[], opts: RunOptions = {}): Promise<Run> {
    return run(['docker', 'exec', '-i', this.nodeName(node), ...argv], opts);
  }

  /** `docker exec` a program in a node and expect exit code 0; resolves with its stdout. */
  exec(node: SwarmNode | string, argv: string[], opts: RunOptions = {}): Promise<string> {
    return runOk(['docker', 'exec', '-i', this.nodeName(node), ...argv], opts);
  }

  /** Copy an image from the host's engine into a node's engine (`docker save | docker exec -i NODE docker load`). */
  async loadImage(node: SwarmNode | string, image: string): Promise<void> {
    const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
    const load = spawn('docker', ['exec', '-i', this.nodeName(node), 'docker', 'load', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
    save.stdout.pipe(load.stdin);
    let errors = '';
    save.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    load.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    const exit = (p: ReturnType<typeof spawn>) => new Promise<number | null>((r) => p.on('close', r));
    const timer = setTimeout(() => (save.kill('SIGKILL'), load.kill('SIGKILL')), 5 * 60_000);
    const [a, b] = await Promise.all([exit(save), exit(load)]).finally(() => clearTimeout(timer));
    if (a !== 0 || b !== 0) throw new Error(`loading ${image} into ${this.nodeName(node)} failed (save ${a}, load ${b}): ${errors.trim()}`);
  }

  /** Stop a node's container (its engine shuts down; the Swarm sees the node go Down). */
  async stopNode(node: SwarmNode | string, graceSeconds = 15): Promise<void> {
    await runOk(['docker', 'stop', '-t', String(graceSeconds), this.nodeName(node)], { timeoutMs: (graceSeconds + 30) * 1000 });
  }

  /** Start a stopped node again and wait until its engine answers and the manager lists it Ready (it rejoins by itself). */
  async startNode(node: SwarmNode | string): Promise<void> {
    const n = typeof node === 'string' ? this.node(node) : node;
    await runOk(['docker', 'start', n.name], { timeoutMs: 60_000 });
    await this.waitEngine(n);
    await this.waitReady([n.name]);
  }

  /** `docker node ls` on the manager: hostname → { status, availability, manager status }. */
  async nodeStates(): Promise<Map<string, { status: string; availability: string; managerStatus: string }>> {
    const out = await this.exec(this.manager, ['docker', 'node', 'ls', '--format', '{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}'], { timeoutMs: 20_000 });
    const states = new Map<string, { status: string; availability: string; managerStatus: string }>();
    for (const line of out.trim().split('\n').filter(Boolean)) {
      const [host = '', status = '', availability = '', managerStatus = ''] = line.split('\t');
      states.set(host, { status, availability, managerStatus });
    }
    return states;
  }

  /** Wait until the manager lists every one of `names` as Ready. */
  async waitReady(names = this.nodes.map((n) => n.name)): Promise<void> {
    await eventually(
      () => this.nodeStates(),
      (s) => names.every((n) => s.get(n)?.status === 'Ready'),
      this.timeoutMs,
      500,
    );
  }

  /** Memory each node's container uses now (bytes, page cache not counted), by node name. */
  async memoryUsage(): Promise<Record<string, number>> {
    const docker = await ensureDocker();
    const result: Record<string, number> = {};
    for (const n of this.nodes) {
      const s = (await docker.getContainer(n.name).stats({ stream: false })) as { memory_stats?: { usage?: number; stats?: Record<string, number> } };
      const m = s.memory_stats ?? {};
      result[n.name] = (m.usage ?? 0) - (m.stats?.total_inactive_file ?? m.stats?.inactive_file ?? 0);
    }
    return result;
  }

  /** Remove every container, volume and network this swarm made. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      live.delete(this);
      if (keep()) return this.reportKept();
      const names = this.nodes.map((n) => n.name);
      if (names.length) await run(['docker', 'rm', '-f', '-v', ...names], { timeoutMs: 120_000 });
      const volumes = this.nodes.map((n) => n.volume);
      if (volumes.length) await run(['docker', 'volume', 'rm', '-f', ...volumes], { timeoutMs: 60_000 });
      await run(['docker', 'network', 'rm', this.network], { timeoutMs: 30_000 });
    })();
    return this.closing;
  }

  /** close() for the process's exit handler, where nothing asynchronous runs. */
  closeSync(): void {
    if (this.closing) return;
    this.closing = Promise.resolve();
    live.delete(this);
    if (keep()) return this.reportKept();
    const quiet = (args: string[]) => {
      try {
        execFileSync('docker', args, { stdio: 'ignore', timeout: 60_000 });
      } catch {
        // already gone
      }
    };
    if (this.nodes.length) quiet(['rm', '-f', '-v', ...this.nodes.map((n) => n.name)]);
    if (this.nodes.length) quiet(['volume', 'rm', '-f', ...this.nodes.map((n) => n.volume)]);
    quiet(['network', 'rm', this.network]);
  }

  private reportKept(): void {
    process.stderr.write(
      `BERTH_TEST_KEEP_TMP=1: kept swarm ${this.prefix}:\n` +
        this.nodes.map((n) => `  ${n.name} ${n.ip}: docker -H unix://${n.socketPath} …  or  docker exec -it ${n.name} bash\n`).join('') +
        `Remove with:\n` +
        `  docker rm -f -v $(docker ps -aq --filter label=berth-test.swarm=${this.prefix}); ` +
        `docker volume rm $(docker volume ls -q --filter label=berth-test.swarm=${this.prefix}); docker network rm ${this.network}\n`,
    );
  }

  private nodeName(node: SwarmNode | string): string {
    return typeof node === 'string' ? this.node(node).name : node.name;
  }

  private async waitEngine(n: SwarmNode): Promise<void> {
    await eventually(
      async () => {
        const state = await runOk(['docker', 'inspect', '-f', '{{.State.Status}}', n.name], { timeoutMs: 10_000 });
        if (state.trim() !== 'running') {
          const logs = await run(['docker', 'logs', '--tail', '20', n.name], { timeoutMs: 10_000 });
          throw new Error(`node ${n.name} is ${state.trim()}: ${logs.stdout}${logs.stderr}`);
        }
        await n.docker.ping();
        return true;
      },
      (ok) => ok,
      this.timeoutMs,
      250,
    ).catch((err: Error) => {
      throw new Error(`the engine in ${n.name} did not answer: ${err.message}`);
    });
  }

  /** Create the network, volumes and node containers, then init and join the Swarm. */
  static async start(opts: SwarmOptions = {}): Promise<Swarm> {
    const count = opts.nodes ?? 3;
    if (count < 1 || count > 200) throw new Error(`nodes must be 1..200, not ${count}`);
    const image = await ensureSwarmNodeImage();
    const swarm = new Swarm(`berth-swarm-test-${randomBytes(3).toString('hex')}`, opts.timeoutMs ?? 90_000);
    live.add(swarm);
    try {
      await swarm.createNetwork(opts.subnet ?? process.env.BERTH_TEST_SWARM_SUBNET);
      for (let i = 1; i <= count; i++) swarm.nodes.push(await swarm.createNode(i, image, opts));
      await Promise.all(swarm.nodes.map((n) => swarm.waitEngine(n)));
      if (opts.form !== false) await swarm.initAndJoin(opts.defaultAddrPool);
      return swarm;
    } catch (err) {
      await swarm.close();
      throw err;
    }
  }

  private async createNetwork(requested: string | undefined): Promise<void> {
    // Another test may create a network between the check and ours: retry with another subnet.
    for (let attempt = 1; ; attempt++) {
      this.subnet = requested ?? (await chooseSubnet());
      this.gateway = hostAddress(this.subnet, 1);
      const res = await run(
        ['docker', 'network', 'create', '--driver', 'bridge', '--subnet', this.subnet, '--gateway', this.gateway, '--label', SWARM_LABEL, '--label', `berth-test.swarm=${this.prefix}`, this.network],
        { timeoutMs: 30_000 },
      );
      if (res.code === 0) return;
      if (requested || attempt >= 5 || !/overlap/i.test(res.stderr)) throw new Error(`docker network create ${this.subnet} failed: ${res.stderr.trim()}`);
    }
  }

  private async createNode(index: number, image: string, opts: SwarmOptions): Promise<SwarmNode> {
    const name = `${this.prefix}-node${index}`;
    const ip = hostAddress(this.subnet, index + 1);
    const hostDir = makeTmpDir(`swarm-node${index}`);
    const volume = `${name}-docker`;
    const labels = ['--label', SWARM_LABEL, '--label', `berth-test.swarm=${this.prefix}`];
    await runOk(['docker', 'volume', 'create', ...labels, volume], { timeoutMs: 30_000 });
    // --privileged fails on these machines (no CAP_SYS_RESOURCE in the VM's bounding set): everything else instead.
    await runOk(
      [
        'docker', 'run', '-d', '--name', name, '--hostname', name, ...labels,
        '--network', this.network, '--ip', ip,
        '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
        '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined', '--security-opt', 'systempaths=unconfined',
        '--init',
        // A fresh /run on every start: no stale pid files or containerd state after stopNode/startNode.
        '--tmpfs', '/run:rw,exec,nosuid,nodev,mode=755,size=64m',
        '-v', `${volume}:/var/lib/docker`, '-v', `${hostDir}:${NODE_HOST_DIR}`, ...(opts.mounts ?? []).flatMap((m) => ['-v', m]),
        '--entrypoint', NODE_ENTRYPOINT,
        image, ...(opts.dockerdArgs ?? []),
      ],
      { timeoutMs: 60_000 },
    );
    const socketPath = join(hostDir, 'docker.sock');
    return { name, ip, role: index === 1 ? 'manager' : 'worker', docker: new Docker({ socketPath }), socketPath, hostDir, volume };
  }

  private async initAndJoin(defaultAddrPool: string | undefined): Promise<void> {
    const m = this.manager;
    const pool = defaultAddrPool ? ['--default-addr-pool', defaultAddrPool] : [];
    await this.exec(m, ['docker', 'swarm', 'init', '--advertise-addr', m.ip, '--listen-addr', `${m.ip}:2377`, ...pool], { timeoutMs: 60_000 });
    const token = (await this.exec(m, ['docker', 'swarm', 'join-token', '-q', 'worker'], { timeoutMs: 20_000 })).trim();
    await Promise.all(
      this.workers.map((w) =>
        this.exec(w, ['docker', 'swarm', 'join', '--token', token, '--advertise-addr', w.ip, '--listen-addr', `${w.ip}:2377`, `${m.ip}:2377`], { timeoutMs: 60_000 }),
      ),
    );
    await this.waitReady();
  }
}

/** Start a Swarm of `opts.nodes` engines (default 3); call close() when done (also done at process exit). */
export function startSwarm(opts: SwarmOptions = {}): Promise<Swarm> {
  return Swarm.start(opts);
}
