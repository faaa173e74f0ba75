// `cluster_request`s from the control plane: one Swarm step each, answered by one `cluster_response`.
// Live only (like cron and logs). Join tokens arrive and leave only inside these messages and are
// never logged: requests and answers are logged by op name only.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type ClusterOp, type ClusterRequest, type ClusterResponse, type ClusterResult } from '../../shared/protocol.js';
import { oneLine } from '../../shared/util/index.js';
import { cleanup, ensureCheckNetwork, reach, serve } from './overlay.js';
import { localAddressTowards, preflight } from './preflight.js';
import { drainNode, initSwarm, inspectNodes, joinSwarm, joinToken, leaveSwarm, removeNode, rotateToken, scrubTokens, SwarmError } from './swarm.js';

export interface ClusterDeps {
  docker: Docker;
  /** This agent's server name (labels on the check containers). */
  server: string;
  /** The control plane's URL: the default address to advertise is the one used to reach it. */
  controlPlaneUrl: string;
  logger: Logger;
}

async function perform(deps: ClusterDeps, op: ClusterOp): Promise<ClusterResult> {
  const { docker } = deps;
  switch (op.op) {
    case 'init': {
      const advertise = op.advertise ?? (await localAddressTowards(deps.controlPlaneUrl));
      return { nodeId: await initSwarm(docker, { advertise, pool: op.addrPool, maskLength: op.addrPoolMaskLength }), advertise };
    }
    case 'join_token':
      return { joinToken: await joinToken(docker, op.role) };
    case 'rotate_token':
      await rotateToken(docker, op.role);
      return {};
    case 'preflight':
      return preflight(op.managerAddr, op.timeoutMs, op.ports);
    case 'join':
      return { nodeId: await joinSwarm(docker, { managerAddr: op.managerAddr, joinToken: op.joinToken, ...(op.advertise ? { advertise: op.advertise } : {}) }) };
    case 'inspect':
      return { nodes: await inspectNodes(docker) };
    case 'drain':
      await drainNode(docker, op.nodeId, op.demote === true);
      return {};
    case 'leave':
      await leaveSwarm(docker, op.force);
      return {};
    case 'remove_node':
      await removeNode(docker, op.nodeId, op.force);
      return {};
    case 'overlay_network':
      await ensureCheckNetwork(docker, op.network);
      return {};
    case 'overlay_serve':
      return { address: await serve(docker, { server: deps.server, ...op }) };
    case 'overlay_reach':
      if (!(await reach(docker, { server: deps.server, ...op }))) throw new SwarmError(`no answer from ${op.address} over the overlay network`);
      return {};
    case 'overlay_cleanup':
      await cleanup(docker);
      return {};
  }
}

export async function answerCluster(deps: ClusterDeps, req: ClusterRequest): Promise<ClusterResponse> {
  const base = { type: 'cluster_response' as const, v: PROTOCOL_VERSION as typeof PROTOCOL_VERSION, requestId: req.requestId };
  const started = Date.now();
  try {
    const result = await perform(deps, req.request);
    deps.logger.info({ op: req.request.op, ms: Date.now() - started }, 'cluster step done');
    return { ...base, ok: true, result };
  } catch (err) {
    const error = scrubTokens(err instanceof SwarmError ? err.message : `the agent could not do it: ${oneLine(err)}`).slice(0, 1000);
    deps.logger.warn({ op: req.request.op, error }, 'cluster step failed');
    return { ...base, ok: false, error };
  }
}
