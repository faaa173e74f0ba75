// The Swarm service of one process of one cluster release (pure): spec + release + image digest in,
// Docker's CreateServiceOptions out. One service per process per release, so a deploy is blue/green
// over services and Swarm's own update/rollback is never used. The web process publishes its port in
// host mode with no fixed published port: each task gets its own port on its node, and the old and
// the new release coexist on one node while the manager's nginx moves between them.
import type Docker from 'dockerode';
import { createHash } from 'node:crypto';
import { shellCommand, PROCESS_LOG_OPTIONS } from '../../docker/container-spec.js';
import { LABEL } from '../../docker/labels.js';
import type { ReleaseProcess } from '../../store/index.js';

export class ClusterDeployError extends Error {
  override name = 'ClusterDeployError';
}

/** Labels of cluster objects, besides the standalone ones (berth.app, berth.process). */
export const CLUSTER_LABEL = { release: 'berth.release', cluster: 'berth.cluster' } as const;

/** Restarts Swarm may make of a crashed task before it stays failed (the health gate fails on the first). */
export const RESTART_MAX_ATTEMPTS = 3;
const SECOND_NS = 1_000_000_000;

/** Where a process's tasks may run. */
export type Placement = { kind: 'workers' } | { kind: 'any' } | { kind: 'node'; nodeId: string };

export interface ServiceInput {
  app: string;
  cluster: string;
  /** The manager's server name (berth.server on the service and the network): its reconciler removes them once the app is gone. */
  server?: string;
  deploymentId: string;
  process: ReleaseProcess;
  /** REGISTRY/berth/APP@sha256:… — never a tag. */
  imageRef: string;
  env: Record<string, string>;
  /** The web process's port in its container (PORT). */
  containerPort: number | null;
  /** The app's attachable overlay network. */
  network: string;
  placement: Placement;
  /** The app's named volumes (a process with volumes runs at most one task, pinned to one node). */
  volumes: Docker.MountSettings[];
  stopGraceS: number;
}

/** berth-APP-PROCESS-RELEASE, or a hashed form when that passes Swarm's 63 characters (labels keep the names). */
export function serviceName(app: string, process: string, deploymentId: string): string {
  const plain = `berth-${app}-${process}-${deploymentId}`;
  if (plain.length <= 63) return plain;
  const short = createHash('sha256').update(`${app}\0${process}`).digest('hex').slice(0, 12);
  return `berth-${short}-${deploymentId}`.slice(0, 63);
}

/** The overlay network of an app's services, its release command and its cron runs. */
export { appNetworkName } from '../../docker/labels.js';

/** The labels of a release's service (and of its tasks' containers). */
export function serviceLabels(i: Pick<ServiceInput, 'app' | 'cluster' | 'deploymentId' | 'server'>, process: string): Record<string, string> {
  return {
    ...(i.server ? { [LABEL.server]: i.server } : {}),
    [LABEL.managed]: 'true',
    [LABEL.app]: i.app,
    [LABEL.process]: process,
    [LABEL.deployment]: i.deploymentId,
    [CLUSTER_LABEL.release]: i.deploymentId,
    [CLUSTER_LABEL.cluster]: i.cluster,
  };
}

function constraints(p: Placement): string[] {
  if (p.kind === 'workers') return ['node.role==worker'];
  if (p.kind === 'node') return [`node.id==${p.nodeId}`];
  return [];
}

/** Docker's create options of one process's service. Refuses a process with volumes at scale > 1. */
export function serviceSpec(i: ServiceInput): Docker.CreateServiceOptions {
  const p = i.process;
  if (i.volumes.length > 0 && p.scale > 1) {
    throw new ClusterDeployError(`process ${p.name} has volumes and scale ${p.scale}: a process with volumes runs one task on one node in a cluster (set its scale to 1)`);
  }
  const isWeb = p.name === 'web';
  if (isWeb && !i.containerPort) throw new ClusterDeployError('the web process has no port');
  const env = Object.entries(isWeb ? { ...i.env, PORT: String(i.containerPort) } : i.env).map(([k, v]) => `${k}=${v}`);
  const labels = serviceLabels(i, p.name);
  // Task containers are not berth.managed: the standalone reconciler of the node they land on must never adopt them.
  const { [LABEL.managed]: _managed, [LABEL.server]: _server, ...taskLabels } = labels;
  return {
    Name: serviceName(i.app, p.name, i.deploymentId),
    Labels: labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: i.imageRef,
        // Args replaces the image's CMD and keeps its ENTRYPOINT, as `command:` does standalone.
        ...(p.command ? { Args: shellCommand(p.command) } : {}),
        Env: env,
        Labels: taskLabels,
        Init: true,
        StopGracePeriod: i.stopGraceS * SECOND_NS,
        ...(i.volumes.length > 0 ? { Mounts: i.volumes } : {}),
      },
      Resources: { Limits: { ...(p.memory ? { MemoryBytes: p.memory } : {}), ...(p.cpus ? { NanoCPUs: Math.round(p.cpus * 1e9) } : {}) } },
      RestartPolicy: { Condition: 'on-failure', Delay: 2 * SECOND_NS, MaxAttempts: RESTART_MAX_ATTEMPTS },
      Placement: { Constraints: constraints(i.placement) },
      // The process name is the tasks' alias on the app's network: `web` reaches the web tasks (dnsrr) whatever the release.
      Networks: [{ Target: i.network, Aliases: [p.name] }],
      LogDriver: { Name: 'json-file', Options: { ...PROCESS_LOG_OPTIONS } },
    },
    Mode: { Replicated: { Replicas: p.scale } },
    // dnsrr: no VIP and no ingress routing mesh (IPVS drops requests during updates); nginx routes to tasks.
    EndpointSpec: {
      Mode: 'dnsrr',
      ...(isWeb ? { Ports: [{ Protocol: 'tcp', TargetPort: i.containerPort!, PublishMode: 'host' }] } : {}),
    },
  };
}
