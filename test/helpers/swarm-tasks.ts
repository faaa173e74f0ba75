// A Swarm service's tasks as the manager reports them, with what a test needs to reach each one:
// the node it runs on (hostname and address) and its host-mode published ports.
import type { Swarm } from './swarm.js';

export interface SwarmTask {
  id: string;
  /** Swarm hostname of the task's node (the node container's name), '' while unassigned. */
  node: string;
  /** The node's address as Swarm knows it. */
  nodeAddr: string;
  state: string;
  desiredState: string;
  /** Swarm's error text for a failed task ("No such image: …", "no suitable node …"). */
  err: string;
  containerId: string;
  /** The image reference in the task's spec (digest-pinned when the service was created by digest). */
  image: string;
  /** Host-mode published ports: target port → port on the node. */
  hostPorts: Map<number, number>;
}

interface RawTask {
  ID: string;
  NodeID?: string;
  DesiredState: string;
  Spec: { ContainerSpec: { Image: string } };
  Status: {
    State: string;
    Err?: string;
    ContainerStatus?: { ContainerID?: string };
    PortStatus?: { Ports?: Array<{ TargetPort?: number; PublishedPort?: number; PublishMode?: string }> };
  };
}

interface RawNode {
  ID: string;
  Description: { Hostname: string };
  Status: { Addr: string };
}

/** Tasks of `service` (by default only those Swarm wants running). */
export async function serviceTasks(swarm: Swarm, service: string, desiredState: 'running' | 'any' = 'running'): Promise<SwarmTask[]> {
  const filters: Record<string, string[]> = { service: [service] };
  if (desiredState !== 'any') filters['desired-state'] = [desiredState];
  const docker = swarm.manager.docker;
  const [tasks, nodes] = (await Promise.all([docker.listTasks({ filters }), docker.listNodes()])) as [RawTask[], RawNode[]];
  const byId = new Map(nodes.map((n) => [n.ID, n]));
  return tasks.map((x) => {
    const node = x.NodeID ? byId.get(x.NodeID) : undefined;
    const hostPorts = new Map<number, number>();
    for (const p of x.Status.PortStatus?.Ports ?? []) {
      if (p.PublishMode === 'host' && p.TargetPort && p.PublishedPort) hostPorts.set(p.TargetPort, p.PublishedPort);
    }
    return {
      id: x.ID,
      node: node?.Description.Hostname ?? '',
      nodeAddr: node?.Status.Addr ?? '',
      state: x.Status.State,
      desiredState: x.DesiredState,
      err: x.Status.Err ?? '',
      containerId: x.Status.ContainerStatus?.ContainerID ?? '',
      image: x.Spec.ContainerSpec.Image,
      hostPorts,
    };
  });
}
