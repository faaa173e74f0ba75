// What the agent does with each message from the control plane.
import { answerCron } from '../cron/index.js';
import { acceptOrder, cancelOrder } from '../deploy/orders.js';
import { answerStatusRequest } from '../deploy/status-report.js';
import { listBerthContainers } from '../docker/containers.js';
import { answerClusterLazily } from './lazy-cluster.js';
import type { AgentRuntime } from './runtime.js';

export function handleControlPlaneMessages(rt: AgentRuntime): void {
  const { connection, store, logger, queue, runtimeLogs } = rt;
  connection.on('deploy', (order) => acceptOrder(rt, queue, order));
  connection.on('cancel', (cancel) => cancelOrder(rt, queue, cancel));
  connection.on('deploy_status_request', (ids) => {
    for (const answer of answerStatusRequest(ids, (id) => store.deploys.get(id))) rt.send(answer);
  });
  // `berth logs`: live only, never through the outbox; a dropped link ends every stream.
  connection.on('logs_request', (req) => void runtimeLogs.serve(req));
  connection.on('logs_cancel', (requestId) => runtimeLogs.cancel(requestId));
  connection.on('disconnected', () => runtimeLogs.cancelAll());
  // `berth cron`: answered at once from the scheduler (live only, like logs).
  connection.on('cron_request', (req) => connection.send(answerCron(rt.cron, req)));
  // Cluster formation (issue 15): one Swarm step per request, answered when done (live only).
  const cluster = { docker: rt.docker, server: rt.settings.server, controlPlaneUrl: rt.creds.controlPlaneUrl, logger: logger.child({ component: 'cluster' }) };
  connection.on('cluster_request', (req) => {
    answerClusterLazily(cluster, req)
      .then((answer) => connection.send(answer))
      .catch((err) => logger.error({ err, op: req.request.op }, 'could not answer a cluster request'));
  });
  connection.on('desired_state', (spec) => {
    if (spec.server !== rt.creds.server) {
      logger.error({ expected: rt.creds.server, got: spec.server }, 'ignored a desired state for another server');
      return;
    }
    store.desired.save(spec);
    logger.info({ revision: spec.revision, apps: spec.apps.length }, 'desired state received');
    rt.appsChanged();
  });
  connection.on('connected', () => {
    rt.reportCerts(true);
    listBerthContainers(rt.docker, { server: rt.settings.server })
      .then((containers) => rt.sendObserved(containers))
      .catch((err) => logger.warn({ err }, 'could not observe containers for the control plane'));
  });
}
