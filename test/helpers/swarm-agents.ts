// The cluster test bed with berth inside it: a Swarm test bed (./swarm.ts) whose engines are NOT
// joined, a berth agent in every node (the built tree and the host's Node 20 bind-mounted read-only;
// the node image's own Debian has no Node), and a control plane on the host listening on the test
// network's gateway so the agents reach it. Each node is enrolled like a real server: `berth server
// add` on the host, `berth agent join` + `berth agent` inside the node. Forming the cluster is then
// berth's job (`berth cluster …`), not the helper's. docs/testing.md, "Cluster test bed".
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { berth, berthJson } from './cli.js';
import { ensureBusyboxImage } from './docker.js';
import { eventually } from './http.js';
import { startDaemon, stopDaemon, type Daemon } from './stack.js';
import { startSwarm, type Swarm, type SwarmNode } from './swarm.js';
import { runOk } from './swarm-exec.js';
import { NODE_HOST_DIR } from './swarm-node-image.js';
import { ensureRegistryImage, REGISTRY_TEST_IMAGE } from './registry-image.js';
import { freePort, makeTmpDir } from './tmp.js';
import { readFileSync } from 'node:fs';

/** The worktree (dist/, node_modules/, package.json) as the nodes see it. */
const TREE = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/+$/, '');
const NODE_TREE = '/opt/berth';
const NODE_BIN = '/usr/local/bin/node';
const NODE_BERTH = [NODE_BIN, `${NODE_TREE}/dist/cli/main.js`];
const AGENT_DATA = '/var/lib/berth';
/** Where an agent's pid and log are: the node's host directory, readable from the host. */
const AGENT_LOG = `${NODE_HOST_DIR}/agent.log`;
const AGENT_PID = `${NODE_HOST_DIR}/agent.pid`;
/** The overlay reachability check's containers run this (loaded into every node: no registry here). */
export const CHECK_IMAGE = 'berth-test/busybox:latest';

export interface AgentNode {
  /** berth's server name for the node: web1, web2, … */
  server: string;
  node: SwarmNode;
  /** The agent's log file on the host. */
  logFile: string;
}

export class SwarmWithAgents {
  cp?: Daemon;
  cpUrl = '';
  adminToken = '';
  readonly root = makeTmpDir('berth-cluster-');
  readonly agents: AgentNode[] = [];
  /** More settings for every agent (e.g. BERTH_KEEP_RELEASES). */
  agentEnv: Record<string, string> = {};

  constructor(readonly swarm: Swarm) {}

  get cpData(): string {
    return join(this.root, 'cp');
  }
  get cpLog(): string {
    return join(this.root, 'control-plane.log');
  }
  /** Env for `berth` client commands on the host. */
  get env(): Record<string, string> {
    return { BERTH_URL: this.cpUrl, BERTH_TOKEN: this.adminToken, XDG_CONFIG_HOME: join(this.root, 'client-config') };
  }

  agent(server: string): AgentNode {
    const a = this.agents.find((x) => x.server === server);
    if (!a) throw new Error(`no agent ${server}`);
    return a;
  }

  async startControlPlane(): Promise<void> {
    const port = await freePort();
    this.cpUrl = `http://${this.swarm.gateway}:${port}`;
    // Plain HTTP on the test's own bridge network (nothing else is on it): --insecure-http says so.
    this.cp = startDaemon(['control-plane', '--data', this.cpData, '--listen', `${this.swarm.gateway}:${port}`, '--insecure-http'], { BERTH_CLUSTER_CHECK_IMAGE: CHECK_IMAGE }, this.cpLog);
    await eventually(async () => (await fetch(`${this.cpUrl}/healthz`)).status, (s) => s === 200, 30_000).catch((err) => {
      throw new Error(`control plane did not start: ${String(err)}\n${readFileSync(this.cpLog, 'utf8').slice(-3000)}`);
    });
    this.adminToken = readFileSync(join(this.cpData, 'admin-token'), 'utf8').trim();
  }

  /** `berth server add` on the host, `berth agent join` in the node, then the agent in the background. */
  async enrol(node: SwarmNode, server: string): Promise<AgentNode> {
    const added = await berthJson<{ joinToken: string }>(['server', 'add', server], this.env);
    await this.swarm.exec(node, [...NODE_BERTH, 'agent', 'join', this.cpUrl, added.joinToken, '--name', server, '--data', AGENT_DATA], { timeoutMs: 60_000 });
    const a: AgentNode = { server, node, logFile: join(node.hostDir, 'agent.log') };
    this.agents.push(a);
    await this.startAgent(server);
    return a;
  }

  /** Start the node's agent with the bed's settings, and `env` on top (e.g. HTTPS and ACME on one node). */
  async startAgent(server: string, env: Record<string, string> = {}): Promise<void> {
    const { node } = this.agent(server);
    const settings = {
      BERTH_DATA: AGENT_DATA,
      BERTH_NGINX_PREFIX: '/var/lib/berth-nginx',
      BERTH_HTTP_PORT: '80',
      BERTH_HTTPS_PORT: '0',
      BERTH_LOG_FORMAT: 'json',
      BERTH_LOG_LEVEL: 'debug',
      // A cluster's manager runs its berth-managed registry from this image (loaded into every node: no Docker Hub here).
      BERTH_REGISTRY_IMAGE: REGISTRY_TEST_IMAGE,
      ...this.agentEnv,
      ...env,
    };
    const script = `echo $$ > ${AGENT_PID}; exec ${NODE_BERTH.join(' ')} agent --data ${AGENT_DATA} >> ${AGENT_LOG} 2>&1`;
    await runOk(['docker', 'exec', '-d', ...Object.entries(settings).flatMap(([k, v]) => ['-e', `${k}=${v}`]), node.name, 'sh', '-c', script], { timeoutMs: 30_000 });
    await this.waitConnected(server, true);
  }

  /** `berth ARGS` inside the server's node, against its agent's data (e.g. `status --json`). */
  async nodeBerth(server: string, args: string[], timeoutMs = 60_000): Promise<string> {
    return this.swarm.exec(this.agent(server).node, [...NODE_BERTH, ...args, '--data', AGENT_DATA], { timeoutMs });
  }

  /** Stop the node's agent by its pid (the node and its engine keep running). */
  async stopAgent(server: string): Promise<void> {
    const { node } = this.agent(server);
    await this.swarm.exec(node, ['sh', '-c', `kill "$(cat ${AGENT_PID})"`], { timeoutMs: 20_000 });
    await this.waitConnected(server, false);
  }

  async waitConnected(server: string, connected: boolean): Promise<void> {
    await eventually(
      () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], this.env),
      (list) => list.some((s) => s.name === server && s.connected === connected),
      60_000,
      250,
    ).catch((err) => {
      throw new Error(`agent ${server} did not ${connected ? 'connect' : 'disconnect'}: ${String(err)}\n${this.tail(server)}`);
    });
  }

  tail(server: string, lines = 40): string {
    try {
      return readFileSync(this.agent(server).logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no agent log)';
    }
  }

  async close(): Promise<void> {
    await stopDaemon(this.cp);
    await this.swarm.close(); // the agents go with their nodes
  }
}

/** `berth …` on the host against this bed's control plane. */
export function cli(bed: SwarmWithAgents, args: string[], timeoutMs = 300_000) {
  return berth(args, bed.env, timeoutMs);
}

/**
 * The host's git (Debian bookworm, like the node image, which has none) for agents that fetch apps:
 * bind-mounted read-only; it needs only libpcre2 and zlib, which the node image has.
 */
export const HOST_GIT_MOUNTS = ['/usr/bin/git:/usr/bin/git:ro', '/usr/lib/git-core:/usr/lib/git-core:ro', '/usr/share/git-core:/usr/share/git-core:ro'];

/**
 * `nodes` Docker engines in containers (no swarm yet), the check image in each, a control plane on
 * the host, and an enrolled, connected agent in every node (server names web1, web2, …).
 */
export async function startSwarmWithAgents(opts: { nodes?: number; mounts?: string[]; agentEnv?: Record<string, string> } = {}): Promise<SwarmWithAgents> {
  await Promise.all([ensureBusyboxImage(CHECK_IMAGE), ensureRegistryImage()]);
  const swarm = await startSwarm({
    nodes: opts.nodes ?? 3,
    form: false,
    mounts: [`${TREE}:${NODE_TREE}:ro`, `${process.execPath}:${NODE_BIN}:ro`, ...(opts.mounts ?? [])],
  });
  const bed = new SwarmWithAgents(swarm);
  bed.agentEnv = opts.agentEnv ?? {};
  try {
    await bed.startControlPlane();
    await Promise.all(swarm.nodes.map(async (n) => (await swarm.loadImage(n, CHECK_IMAGE), await swarm.loadImage(n, REGISTRY_TEST_IMAGE))));
    await Promise.all(swarm.nodes.map((n, i) => bed.enrol(n, `web${i + 1}`)));
    return bed;
  } catch (err) {
    await bed.close();
    throw err;
  }
}
