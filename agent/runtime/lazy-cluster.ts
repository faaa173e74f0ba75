// Cluster mode (Swarm steps, the TCP preflight, overlay checks) loads on the first cluster_request:
// most agents never form a cluster (docs/benchmarks.md, "Agent memory").
import type { answerCluster as AnswerCluster } from '../cluster/index.js';

/** `answerCluster`, loaded on first use. */
export const answerClusterLazily: typeof AnswerCluster = async (...args) => (await import('../cluster/index.js')).answerCluster(...args);
