// `berth cluster …` (issue 15, slice 1): form a Docker Swarm from enrolled servers through their
// agents — no SSH, no join token ever shown or stored — and choose the node that builds its apps.
import type { Command } from 'commander';
import type { ClusterDetails, ClusterInfo, ClusterNodeInfo, ClusterNodeRemoved } from '../../shared/api.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output, printTable } from '../output.js';
import { registerClusterRegistryCommand } from './cluster-registry.js';

/** Joins and drains run several agent steps (an overlay check, tasks moving away): minutes, not seconds. */
const LONG_MS = 10 * 60_000;
const client = () => new ApiClient(loadClientConfig());

function printNodes(nodes: ClusterNodeInfo[]): void {
  printTable(
    nodes.map((n) => ({ ...n, state: n.state ?? 'unknown', tasks: n.runningTasks, leader: n.leader ? 'leader' : '' })),
    ['server', 'role', 'state', 'availability', 'reachability', 'tasks', 'addr', 'leader', 'error'],
  );
}

function printCluster(c: ClusterDetails): void {
  process.stdout.write(tty`cluster ${c.name}: manager ${c.manager}, advertised at ${c.advertise}, overlay pool ${c.addrPool}\n`);
  if (c.builder) process.stdout.write(tty`builds on: ${c.builder}${c.builder === c.manager ? ' (the manager)' : ''}\n`);
  if (c.registry) process.stdout.write(tty`registry: ${c.registry.address} (${c.registry.mode === 'managed' ? "berth-managed, on the manager" : 'external'})\n`);
  if (!c.managerOnline) process.stdout.write(tty`the manager ${c.manager} is offline: node states are unknown\n`);
  printNodes(c.nodes);
}

const HELP = `
A cluster is a Docker Swarm made of servers already enrolled with \`berth server add\` + \`berth agent join\`.
The control plane asks the agents to do each step: no SSH, and join tokens are read live from the
manager, relayed once and rotated right after (never stored). Ports between the cluster's nodes ONLY:
2377/tcp to managers, 7946/tcp+udp and 4789/udp between all nodes (see docs/cluster.md).

Examples:
  berth cluster create prod --manager web1
  berth cluster add prod web2
  berth cluster add prod build1 --builder    # build1 fetches, builds and pushes the cluster's apps
  berth cluster builder prod --manager       # builds on the manager again
  berth cluster show prod
  berth cluster rm prod web2

Each cluster gets a private registry on its manager (TLS from a per-cluster CA, port --registry-port,
open it to the cluster's nodes only). Apps are deployed to it with \`berth app create APP --cluster prod\`.
Builds run on the manager unless a node is marked as the builder: it builds (with the build's memory/CPU
caps) and pushes, then the manager releases, starts and switches from the pushed digest.`;

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('form a Docker Swarm cluster from your servers, through their agents (no SSH)').addHelpText('after', HELP);
  registerClusterRegistryCommand(cluster);

  cluster
    .command('create')
    .description("create a cluster: the manager server's agent runs `swarm init`")
    .argument('<name>', 'cluster name (lower-case letters, digits, "-")')
    .requiredOption('--manager <server>', 'the server that manages the swarm (its agent must be connected)')
    .option('--advertise <addr>', "the manager's address the other nodes reach (default: the address it reaches the control plane from)")
    .option('--addr-pool <cidr>', 'address pool of the overlay networks (default 172.29.0.0/16, outside 10.0.0.0/8)')
    .option('--registry-port <port>', "port of the cluster's private registry on the manager (default 5000; open it to the cluster's nodes only)")
    .option('--json', 'print JSON: the cluster ({name, manager, advertise, addrPool, nodes: [...], registry: {address, mode}})')
    .action(async (name: string, opts: { manager: string; advertise?: string; addrPool?: string; registryPort?: string; json?: boolean }) => {
      const port = opts.registryPort === undefined ? undefined : Number(opts.registryPort);
      if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65_535)) throw new CliError('--registry-port must be a port number between 1 and 65535');
      const body = {
        name,
        manager: opts.manager,
        ...(opts.advertise ? { advertise: opts.advertise } : {}),
        ...(opts.addrPool ? { addrPool: opts.addrPool } : {}),
        ...(port !== undefined ? { registryPort: port } : {}),
      };
      const created = await client().request<ClusterDetails>('POST', '/api/clusters', body, LONG_MS);
      output(!!opts.json, created, (c) => {
        process.stdout.write(tty`cluster ${c.name} created.\nadd servers with: berth cluster add ${c.name} SERVER\n`);
        printCluster(c);
      });
    });

  cluster
    .command('add')
    .description("add a server: its agent checks it reaches the manager's ports, joins with a token relayed from the manager (rotated right after), then the overlay network is checked both ways")
    .argument('<name>', 'cluster name')
    .argument('<server>', 'server to add (its agent must be connected)')
    .option('--role <role>', 'worker or manager', 'worker')
    .option('--builder', "the new node builds the cluster's apps (fetch, build, push) instead of the manager")
    .option('--json', 'print JSON: the node ({server, role, state, availability, reachability, error, ...})')
    .action(async (name: string, server: string, opts: { role: string; builder?: boolean; json?: boolean }) => {
      if (opts.role !== 'worker' && opts.role !== 'manager') throw new CliError('--role must be worker or manager');
      const body = { server, role: opts.role, ...(opts.builder ? { builder: true } : {}) };
      const node = await client().request<ClusterNodeInfo>('POST', `/api/clusters/${seg(name)}/nodes`, body, LONG_MS);
      output(!!opts.json, node, (n) => {
        process.stdout.write(tty`${n.server} joined cluster ${name} as ${n.role}${opts.builder ? ", and builds the cluster's apps" : ''}.\n`);
        printNodes([n]);
      });
      if (node.reachability === 'unreachable') throw new CliError(`${server} joined but is unreachable: ${node.error ?? 'unknown reason'}`);
    });

  registerBuilderCommand(cluster);

  cluster
    .command('rm')
    .description('remove a server from a cluster: drains it (its tasks move to other nodes), then it leaves the swarm (a builder: the manager builds again)')
    .argument('<name>', 'cluster name')
    .argument('<server>', 'server to remove')
    .option('--json', 'print JSON: {cluster, server, drainedTasks}')
    .action(async (name: string, server: string, opts: { json?: boolean }) => {
      const removed = await client().request<ClusterNodeRemoved>('DELETE', `/api/clusters/${seg(name)}/nodes/${seg(server)}`, undefined, LONG_MS);
      output(!!opts.json, removed, (r) => process.stdout.write(tty`${r.server} drained (${r.drainedTasks} task(s) moved) and removed from cluster ${r.cluster}.\n`));
    });

  cluster
    .command('ls')
    .description('list clusters')
    .option('--json', 'print JSON: an array of clusters ({name, manager, builder, advertise, addrPool, createdAt, nodeCount})')
    .action(async (opts: { json?: boolean }) => {
      const list = await client().get<ClusterInfo[]>('/api/clusters');
      output(!!opts.json, list, (l) => printTable(l.map((c) => ({ ...c, nodes: c.nodeCount, builder: c.builder ?? c.manager })), ['name', 'manager', 'builder', 'advertise', 'nodes', 'createdAt']));
    });

  cluster
    .command('show')
    .description("a cluster's nodes as its manager sees them now: role, state, availability, reachability, running tasks")
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON: the cluster with its nodes')
    .action(async (name: string, opts: { json?: boolean }) => {
      const c = await client().get<ClusterDetails>(`/api/clusters/${seg(name)}`);
      output(!!opts.json, c, printCluster);
    });
}

/** `berth cluster builder NAME SERVER|--manager`: the node that fetches, builds and pushes the cluster's apps. */
function registerBuilderCommand(cluster: Command): void {
  cluster
    .command('builder')
    .description("set which node builds the cluster's apps: SERVER (a node of the cluster) or --manager")
    .argument('<name>', 'cluster name')
    .argument('[server]', 'the node that fetches, builds and pushes (its agent must be connected when a deploy runs)')
    .option('--manager', 'build on the manager again')
    .option('--json', 'print JSON: the cluster ({name, manager, builder, nodes: [...], ...})')
    .action(async (name: string, server: string | undefined, opts: { manager?: boolean; json?: boolean }) => {
      if ((server === undefined) === !opts.manager) throw new CliError('give either SERVER or --manager');
      const c = await client().request<ClusterDetails>('PUT', `/api/clusters/${seg(name)}/builder`, { server: server ?? null });
      output(!!opts.json, c, (d) => process.stdout.write(tty`cluster ${d.name} builds on ${d.builder ?? d.manager}${d.builder === d.manager ? ' (the manager)' : ''}.\n`));
    });
}
