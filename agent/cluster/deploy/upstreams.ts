// The upstream watcher on a cluster's manager: every couple of seconds, for each cluster app with a
// live release, the running web tasks on ready nodes are listed; when that set changes (a node died,
// Swarm rescheduled a task) the new tasks are probed and the app's nginx upstream is re-rendered
// through the same transactional nginx code, so a dead node's tasks leave nginx within seconds.
// Apps with a deploy running or draining are left to their deploy. Bounded: one pass at a time,
// stopped on shutdown; it keeps working while the control plane is down (desired state is stored).
// What it last routed per app (sites()) is what the reconcile planner plans the app's certificate
// for: the executor's ensure-cert puts a new certificate into that same server block.
import type Docker from 'dockerode';
import type { Logger } from '../../../shared/logger.js';
import type { AppSpec, ServerSpec } from '../../../shared/spec.js';
import type { NginxApplier } from '../../deploy/deploy-run.js';
import type { AppSite } from '../../nginx/index.js';
import type { AgentStore } from '../../store/index.js';
import { listAppServices, listNodes, listServiceTasks } from './services.js';
import { PeriodicPass } from '../periodic-pass.js';
import { probeEndpoint } from './task-health.js';
import { planUpstreams, serversOf, type TaskEndpoint } from './upstream-plan.js';

export interface UpstreamWatcherDeps {
  docker: Docker;
  nginx: NginxApplier;
  store: AgentStore;
  logger: Logger;
  desired: () => ServerSpec | null;
  busyApps: () => ReadonlySet<string>;
  /** Between passes (default 2000 ms). */
  intervalMs?: number;
  /** After the watcher (re-)rendered an app's server block: its certificate can be planned for it now. */
  onRouted?: (app: string) => void;
}

const PROBE_TIMEOUT_MS = 1500;

export class UpstreamWatcher extends PeriodicPass {
  /** What each app's server block was last rendered with: its domains and servers (in order), and the site (null: none). */
  private readonly routed = new Map<string, { domains: string; servers: string[]; site: AppSite | null }>();

  constructor(private readonly deps: UpstreamWatcherDeps) {
    super(deps.intervalMs ?? 2000);
  }

  /**
   * The site last rendered per app (null: its server block was removed, it has no domains). An app
   * missing from it is not known yet (never routed by the watcher, or a deploy of it is running).
   */
  sites(): ReadonlyMap<string, AppSite | null> {
    return new Map([...this.routed].map(([app, r]) => [app, r.site]));
  }


  protected async runPass(): Promise<void> {
    const spec = this.deps.desired();
    const cluster = spec?.cluster;
    if (!spec || !cluster || cluster.role !== 'manager') return;
    const busy = this.deps.busyApps();
    for (const app of this.routed.keys()) if (!spec.apps.some((a) => a.name === app && a.cluster === cluster.name)) this.routed.delete(app);
    for (const app of spec.apps) {
      if (this.closed) return;
      if (app.cluster !== cluster.name) continue;
      // A deploy moves nginx itself; afterwards the set is compared afresh.
      if (busy.has(app.name)) {
        this.routed.delete(app.name);
        continue;
      }
      try {
        await this.follow(app);
      } catch (err) {
        this.deps.logger.warn({ err, app: app.name }, 'could not follow the web tasks of a cluster app');
      }
    }
  }

  private async follow(app: AppSpec): Promise<void> {
    const { docker, store } = this.deps;
    const release = store.releases.get(app.name);
    // No web process, or a static site (served from disk, routed by the reconcile pass): nothing to follow.
    if (!release?.containerPort) return void this.routed.delete(app.name);
    if (app.domains.length === 0) {
      // Its last domain was removed: nothing is routed (once, not every pass).
      if (this.routed.get(app.name)?.domains === '') return;
      await this.deps.nginx.applyApp(app.name, null);
      this.routed.set(app.name, { domains: '', servers: [], site: null });
      this.deps.onRouted?.(app.name);
      return;
    }
    const web = (await listAppServices(docker, app.name)).filter((s) => s.release === release.deploymentId && s.process === 'web');
    if (web.length === 0) return;
    const [tasks, nodes] = await Promise.all([
      listServiceTasks(
        docker,
        web.map((s) => s.id),
      ),
      listNodes(docker),
    ]);
    const plan = planUpstreams(tasks, nodes, release.containerPort);
    // A domain added or removed re-renders too (the standalone reconciler leaves cluster apps alone).
    const domains = app.domains.join(' ');
    const before = this.routed.get(app.name);
    const unchanged = (servers: string[]) => before !== undefined && before.domains === domains && sameList(before.servers, servers);
    if (unchanged(serversOf(plan))) return;
    const healthy = await this.probeNew(plan, new Set(before?.servers ?? []));
    const servers = serversOf(healthy);
    if (servers.length === 0) {
      this.deps.logger.warn({ app: app.name }, 'no web task of the live release answers: nginx keeps its upstream');
      return;
    }
    if (unchanged(servers)) return;
    const port = Number(servers[0]!.slice(servers[0]!.lastIndexOf(':') + 1));
    const site: AppSite = { domains: [...app.domains], upstreamPort: port, upstreamServers: servers };
    await this.deps.nginx.applyApp(app.name, site);
    this.routed.set(app.name, { domains, servers, site });
    this.deps.onRouted?.(app.name);
    this.deps.logger.info({ app: app.name, servers, before: before?.servers ?? null }, 'cluster app upstream updated');
  }

  /** Endpoints already routed stay; new ones must accept a connection first. */
  private async probeNew(plan: TaskEndpoint[], routed: ReadonlySet<string>): Promise<TaskEndpoint[]> {
    const ok = await Promise.all(plan.map(async (e) => routed.has(e.server) || (await probeEndpoint(e, { healthcheck: null, host: undefined }, PROBE_TIMEOUT_MS)) === null));
    return plan.filter((_, i) => ok[i]);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
