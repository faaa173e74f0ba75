// The switching phase of a deploy: the healthy release becomes the app's current one and nginx
// routes the app's domains to it (its web replicas, or a static site's directory).
import type { AppSite } from '../nginx/index.js';
import type { StartedContainer } from '../docker/containers.js';
import type { ReleaseProcess } from '../store/index.js';
import { NEVER, type DeployRun } from './deploy-run.js';
import type { Prepared } from './prepare.js';

/** What the switch made live. */
export interface Switched {
  /** The web replicas, in replica order (the first is the one the release record names). */
  webs: StartedContainer[];
  /** What nginx routes the domains to (null: no web process, nothing is routed). */
  site: AppSite | null;
}

/** Where nginx sends the app's traffic: a static site's files, or every web replica's port. */
function routeFor(staticRoot: string | null, webs: StartedContainer[], domains: string[]): AppSite | null {
  const first = webs[0];
  if (staticRoot) return { domains, staticRoot };
  if (!first) return null;
  return webs.length === 1 ? { domains, upstreamPort: first.hostPort } : { domains, upstreamPort: first.hostPort, upstreamPorts: webs.map((w) => w.hostPort) };
}

/** switching: the release is recorded as current, then nginx moves (or the failure puts the previous one back). */
export async function switchPhase(run: DeployRun, prepared: Prepared, processes: ReleaseProcess[], domains: string[]): Promise<Switched> {
  const { store, nginx } = run.deps;
  const { app, id } = run;
  const webs = run.started.filter((c) => c.process === 'web').sort((a, b) => a.replica - b.replica);
  const first = webs[0];
  const site = routeFor(prepared.staticRoot, webs, domains);
  // Past the health gate the switch is not cancelled halfway: nginx either moves or stays (its
  // own transaction), so only the phase deadline can stop it, never a cancel or a shutdown.
  await run.runPhase(
    'switching',
    {},
    async () => {
      // Recorded before nginx moves: if the agent dies mid-switch, recovery sees a healthy current
      // release and reconciliation finishes routing to it rather than to a container being removed.
      run.switched.previous = store.releases.activate({
        app,
        deploymentId: id,
        image: prepared.image ?? '',
        containerId: first?.id ?? '',
        hostPort: first?.hostPort ?? 0,
        containerPort: first?.containerPort ?? null,
        commit: run.commit ?? null,
        processes,
        staticRoot: prepared.staticRoot,
        env: run.env,
        volumes: prepared.config.volumes ?? {},
      });
      run.switched.activated = true;
      await nginx.applyApp(app, site && domains.length > 0 ? site : null);
    },
    NEVER,
  );
  return { webs, site };
}
