// Docker labels on everything berth creates. Cleanup and observation only ever touch objects
// carrying `berth.managed=true`; nothing else on the host is ours.
export const LABEL = {
  managed: 'berth.managed',
  app: 'berth.app',
  process: 'berth.process',
  deployment: 'berth.deployment',
  commit: 'berth.commit',
  /** 1-based number of a container within its process's scale. */
  replica: 'berth.replica',
  /** The server (agent) that owns the object: agents sharing one Docker engine never touch each other's. */
  server: 'berth.server',
  /** A cron run's container (its job name): owned by the cron scheduler, never by the reconciler. */
  cron: 'berth.cron',
} as const;

export function berthLabels(app: string, deploymentId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { [LABEL.managed]: 'true', [LABEL.app]: app, [LABEL.deployment]: deploymentId, ...extra };
}

/** The attachable overlay network of a cluster app (issue 15): its services, release command and cron runs. */
export function appNetworkName(app: string): string {
  return `berth-${app}`;
}
