// Forming a cluster through the agents (issue 15), no SSH: the manager's agent runs `swarm init`;
// a joining server's agent checks it reaches the manager's ports, gets the CURRENT join token
// relayed from the manager's agent (held in memory for the one request, never stored or logged),
// joins, and the token is rotated at once. Then the overlay data path is checked both ways.
// Every failure names the server; a refused join leaves nothing half-joined.
import { DEFAULT_ADDR_POOL, type ClusterDetails, type ClusterNodeInfo, type ClusterNodeRemoved } from '../../shared/api.js';
import type { Logger } from '../../shared/logger.js';
import type { ClusterOp, ClusterResult, SwarmNodeState } from '../../shared/protocol.js';
import { newId } from '../../shared/ids.js';
import { SerialQueue, sleep } from '../../shared/util/index.js';
import { ConflictError } from '../errors.js';
import type { AgentHub } from '../hub.js';
import type { ServerStore } from '../store/servers.js';
import { DEFAULT_REGISTRY_PORT, managedRegistry, RegistryAddressError } from './registry-ca.js';
import type { ClusterRegistryStore } from './registry-store.js';
import { ServerOfflineError } from './relay.js';
import { pushClusterSpecs } from './specs.js';
import { nodeInfo, overlayUnreachable, unreachablePorts } from './report.js';
import { clusterInfo, type ClusterRow, type ClusterStore } from './store.js';

/** The attachable overlay network the reachability check runs on (labelled berth.cluster-check). */
export const CHECK_NETWORK = 'berth-cluster-check';

export interface FormationOptions {
  hub: AgentHub;
  clusters: ClusterStore;
  servers: ServerStore;
  /** The clusters' registries: `create` makes a berth-managed one on the manager. */
  registries: ClusterRegistryStore;
  logger: Logger;
  /** Image of the overlay check's containers (needs sh, httpd, nc): BERTH_CLUSTER_CHECK_IMAGE, default busybox. */
  checkImage: string;
  /** Bounds (ms): tests shorten none of them; they are here to be read in one place. */
  preflightTimeoutMs?: number;
  readyTimeoutMs?: number;
  drainTimeoutMs?: number;
}

/** A step an agent refused: 409 with its reason, prefixed by the server's name. */
export class ClusterStepError extends ConflictError {
  override name = 'ClusterStepError';
}

export class ClusterFormation {
  /** One cluster change at a time: token relay and rotation must not interleave. */
  private readonly queue = new SerialQueue();
  private readonly log: Logger;

  constructor(private readonly o: FormationOptions) {
    this.log = o.logger.child({ component: 'clusters' });
  }

  /** Ask `server`'s agent for one step; a refusal becomes a 409 naming the server. */
  private async ask(server: string, op: ClusterOp, timeoutMs?: number): Promise<ClusterResult> {
    const answer = await this.o.hub.requestCluster(server, op, timeoutMs);
    if (!answer.ok) throw new ClusterStepError(`${server}: ${answer.error ?? `${op.op} failed`}`);
    return answer.result ?? {};
  }

  /** Every server named must have its agent connected before anything changes. */
  private requireOnline(...servers: string[]): void {
    for (const s of servers) {
      this.o.servers.require(s);
      if (!this.o.hub.isConnected(s)) throw new ServerOfflineError(`server "${s}" is offline: its agent must be connected for cluster changes`);
    }
  }

  create(name: string, manager: string, opts: { advertise?: string; addrPool?: string; registryPort?: number }): Promise<ClusterDetails> {
    return this.queue.run(async () => {
      if (this.o.clusters.get(name)) throw new ConflictError(`cluster "${name}" already exists`);
      this.o.clusters.assertFree(manager);
      this.requireOnline(manager);
      const addrPool = opts.addrPool ?? DEFAULT_ADDR_POOL;
      const init = await this.ask(manager, { op: 'init', cluster: name, ...(opts.advertise ? { advertise: opts.advertise } : {}), addrPool, addrPoolMaskLength: 24 }, 60_000);
      if (!init.nodeId || !init.advertise) throw new ClusterStepError(`${manager}: swarm init gave no node id`);
      // The registry's CA, certificate and credentials before anything is recorded: a failure here undoes the init.
      const registry = await managedRegistry(name, init.advertise, opts.registryPort ?? DEFAULT_REGISTRY_PORT).catch(async (err: Error) => {
        await this.ask(manager, { op: 'leave', force: true }).catch(() => undefined);
        throw err instanceof RegistryAddressError ? new ClusterStepError(`${manager}: ${err.message}`) : err;
      });
      this.o.clusters.create({ name, manager, advertise: init.advertise, addr_pool: addrPool }, init.nodeId);
      this.o.registries.set(registry);
      this.pushSpecs(name);
      this.log.info({ cluster: name, manager, advertise: init.advertise, registry: registry.address }, 'cluster created');
      return this.details(name);
    });
  }

  /** A new revision of every node's desired state (its `cluster` changed: role, registry), sent to the connected ones. */
  private pushSpecs(cluster: string, extra: string[] = []): void {
    pushClusterSpecs(this.o, cluster, extra);
  }

  add(cluster: string, server: string, role: 'manager' | 'worker', builder = false): Promise<ClusterNodeInfo> {
    return this.queue.run(async () => {
      const c = this.o.clusters.require(cluster);
      this.o.clusters.assertFree(server);
      this.requireOnline(c.manager, server);
      const pre = await this.ask(server, { op: 'preflight', managerAddr: c.advertise, timeoutMs: this.o.preflightTimeoutMs ?? 3_000 });
      if (pre.failures?.length) throw new ClusterStepError(`${unreachablePorts(server, pre.failures)}: open these ports from ${server} to ${c.manager} (only to the cluster's nodes), then try again`);
      const { nodeId, addr } = await this.join(c, server, role, pre.localAddr);
      this.o.clusters.addNode(cluster, server, role, nodeId);
      if (builder) this.o.clusters.setBuilder(cluster, server);
      this.pushSpecs(cluster);
      this.log.info({ cluster, server, role, nodeId }, 'server joined the cluster');
      // The other way: the manager reaches the new node's gossip port (and a new manager's 2377), then the overlay both ways.
      const back = await this.ask(c.manager, { op: 'preflight', managerAddr: addr, timeoutMs: this.o.preflightTimeoutMs ?? 3_000, ports: role === 'manager' ? [2377, 7946] : [7946] }).then(
        (r) => (r.failures?.length ? unreachablePorts(c.manager, r.failures) : null),
        (err: Error) => `the check from ${c.manager} to ${server} could not run: ${err.message}`,
      );
      const problems = [back, await this.checkOverlay(c.manager, server)].filter((p) => p !== null);
      const reachError = problems.length ? problems.join('; ') : null;
      this.o.clusters.setReachError(server, reachError);
      if (reachError) this.log.warn({ cluster, server, error: reachError }, 'reachability check after the join failed');
      const live = await this.liveNodes(c.manager);
      return nodeInfo(this.o.clusters.membership(server)!, live);
    });
  }

  /** Relay a fresh token, join, rotate it, and wait until the manager lists the node Ready; undo a join that never got Ready. */
  private async join(c: ClusterRow, server: string, role: 'manager' | 'worker', localAddr: string | undefined): Promise<{ nodeId: string; addr: string }> {
    let nodeId: string | undefined;
    try {
      const { joinToken } = await this.ask(c.manager, { op: 'join_token', role });
      if (!joinToken) throw new ClusterStepError(`${c.manager}: no join token`);
      nodeId = (await this.ask(server, { op: 'join', managerAddr: c.advertise, joinToken, ...(localAddr ? { advertise: localAddr } : {}) }, 90_000)).nodeId;
    } finally {
      // The token just relayed stops working whatever happened.
      await this.ask(c.manager, { op: 'rotate_token', role }).catch((err: Error) => this.log.error({ cluster: c.name, err: err.message }, 'could not rotate the join token'));
    }
    if (!nodeId) throw new ClusterStepError(`${server}: swarm join gave no node id`);
    try {
      const nodes = await this.waitFor(c.manager, (list) => list.find((n) => n.id === nodeId)?.state === 'ready', this.o.readyTimeoutMs ?? 60_000, `${server} did not become Ready on ${c.manager}`);
      return { nodeId, addr: nodes.find((n) => n.id === nodeId)!.addr };
    } catch (err) {
      await this.ask(server, { op: 'leave', force: true }).catch(() => undefined);
      await this.ask(c.manager, { op: 'remove_node', nodeId, force: true }).catch(() => undefined);
      throw err;
    }
  }

  /** Poll the manager's node list until `done` (bounded). */
  private async waitFor(manager: string, done: (nodes: SwarmNodeState[]) => boolean, timeoutMs: number, failure: string): Promise<SwarmNodeState[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nodes = (await this.ask(manager, { op: 'inspect' })).nodes ?? [];
      if (done(nodes)) return nodes;
      if (Date.now() > deadline) throw new ClusterStepError(`${failure} within ${Math.round(timeoutMs / 1000)} s`);
      await sleep(500);
    }
  }

  /** Listeners on both nodes, each reached from the other over the overlay network; null when both ways work. */
  private async checkOverlay(manager: string, server: string): Promise<string | null> {
    const image = this.o.checkImage;
    const word = (s: string) => `${s.replace(/[^a-z0-9]/g, '')}${newId()}`.slice(-40);
    const words = { [manager]: word(manager), [server]: word(server) };
    try {
      await this.ask(manager, { op: 'overlay_network', network: CHECK_NETWORK });
      const serve = (s: string) => this.ask(s, { op: 'overlay_serve', network: CHECK_NETWORK, image, word: words[s]!, seconds: 60 }, 150_000);
      const [m, w] = await Promise.all([serve(manager), serve(server)]);
      if (!m.address || !w.address) throw new Error('a listener got no address on the overlay network');
      const reach = (from: string, to: string, address: string) =>
        this.ask(from, { op: 'overlay_reach', network: CHECK_NETWORK, image, address, word: words[to]!, timeoutMs: 15_000 }, 150_000).then(
          () => null,
          () => overlayUnreachable(from, to),
        );
      const failures = (await Promise.all([reach(server, manager, m.address), reach(manager, server, w.address)])).filter((f): f is string => f !== null);
      return failures.length ? failures.join('; ') : null;
    } catch (err) {
      return `the overlay check between ${manager} and ${server} could not run: ${(err as Error).message}`;
    } finally {
      await Promise.all([manager, server].map((s) => this.ask(s, { op: 'overlay_cleanup' }).catch(() => undefined)));
    }
  }

  remove(cluster: string, server: string): Promise<ClusterNodeRemoved> {
    return this.queue.run(async () => {
      const c = this.o.clusters.require(cluster);
      const node = this.o.clusters.membership(server);
      if (!node || node.cluster !== cluster) throw new ConflictError(`server "${server}" is not in cluster "${cluster}"`);
      if (server === c.manager) throw new ConflictError(`server "${server}" is the manager of cluster "${cluster}": it cannot be removed (removing a cluster is not built yet)`);
      this.requireOnline(c.manager, server);
      const before = (await this.liveNodes(c.manager))?.find((n) => n.id === node.node_id)?.runningTasks ?? 0;
      // A manager is demoted as it is drained: it then leaves as a plain worker, never taking quorum with it.
      await this.ask(c.manager, { op: 'drain', nodeId: node.node_id, demote: node.role === 'manager' });
      const drained = (n: SwarmNodeState | undefined) => !n || (n.runningTasks === 0 && (node.role === 'worker' || n.managerReachability === ''));
      await this.waitFor(c.manager, (nodes) => drained(nodes.find((n) => n.id === node.node_id)), this.o.drainTimeoutMs ?? 120_000, `the tasks of ${server} did not leave it (it stays drained)`);
      await this.ask(server, { op: 'leave', force: false }, 60_000);
      // A node that left shows Down on the manager after a moment; only then is a plain `node rm` accepted.
      const down = await this.waitFor(c.manager, (nodes) => nodes.find((n) => n.id === node.node_id)?.state !== 'ready', 30_000, `${server} still shows Ready on ${c.manager} after leaving`).then(
        () => true,
        () => false,
      );
      await this.ask(c.manager, { op: 'remove_node', nodeId: node.node_id, force: !down });
      this.o.clusters.removeNode(server);
      this.pushSpecs(cluster, [server]);
      if (c.builder === server) this.log.info({ cluster, server }, 'the builder left the cluster: the manager builds again');
      this.log.info({ cluster, server, drainedTasks: before }, 'server removed from the cluster');
      return { cluster, server, drainedTasks: before };
    });
  }

  /** The manager's `node ls`, or undefined when it is offline (then node states are unknown). */
  private async liveNodes(manager: string): Promise<SwarmNodeState[] | undefined> {
    if (!this.o.hub.isConnected(manager)) return undefined;
    return (await this.ask(manager, { op: 'inspect' })).nodes ?? [];
  }

  /** `berth cluster builder`: which node builds the cluster's apps (null or the manager: the manager). */
  setBuilder(cluster: string, server: string | null): Promise<ClusterDetails> {
    return this.queue.run(async () => {
      const before = this.o.clusters.require(cluster).builder;
      this.o.clusters.setBuilder(cluster, server);
      // The new builder gets the registry's credentials to push, and the old one loses them.
      this.pushSpecs(cluster);
      this.log.info({ cluster, builder: this.o.clusters.require(cluster).builder ?? 'manager', before: before ?? 'manager' }, 'cluster builder set');
      return this.details(cluster);
    });
  }

  async details(name: string): Promise<ClusterDetails> {
    const c = this.o.clusters.require(name);
    const live = await this.liveNodes(c.manager);
    const nodes = this.o.clusters.nodes(name).map((row) => nodeInfo(row, live));
    const reg = this.o.registries.get(name);
    const registry = reg ? { address: reg.address, mode: reg.mode } : null;
    return { ...clusterInfo(c, nodes.length), managerOnline: live !== undefined, nodes, registry };
  }
}
