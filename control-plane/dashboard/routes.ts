// The dashboard's pages and form actions. Reads and changes are admin-API calls; a failed change
// re-renders the page with the API's one-line error, a successful one redirects (POST → 303 → GET).
import type { Context, Hono } from 'hono';
import type { AppDetails, AppInfo, AppUpdated, CronJobInfo, DeploymentDetails, DeploymentInfo, DeploymentLogs, DomainInfo, EnvVar, ServerCreated, ServerInfo } from '../../shared/api.js';
import { deploymentId } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import type { ApiDeps } from '../api/deps.js';
import { afterSeq } from '../api/deployments.js';
import { deploymentEventStream } from '../api/sse.js';
import { seg, type ApiCall } from './api-client.js';
import { appPage, type AppPageData } from './app-page.js';
import { appsPage, serversPage, summarize } from './pages.js';
import { cronPage, runtimeLogsPage } from './ops-pages.js';
import type { Session } from './session.js';

/** The newest deployments a page reads (its history shows 50): an app's whole history can be a million rows. */
const RECENT_DEPLOYMENTS = 50;

type Env = { Variables: { session: Session; form: Record<string, string> } };
type C = Context<Env>;
type Msg = { error?: string; notice?: string };

/** Fixed notices after a redirect (never text from the request: no content injection via the URL). */
const NOTICES: Record<string, string> = {
  created: 'App created. Click Deploy to build and release it.',
  deployed: 'Deploy queued.',
  rollback: 'Rollback queued.',
  scaled: 'Scale deployment queued: the live release restarts at the new counts, without a rebuild.',
  cancelled: 'Cancel requested.',
  env: 'Saved. Env changes take effect on the next deploy.',
  domain: 'Domains updated.',
  deleted: 'App deleted.',
  cron: 'Cron job started.',
  rotated: 'New webhook secrets: update them in your Git host and CI.',
  settings: 'Saved. The next deploy uses the new settings.',
  moved: 'App moved: it no longer runs on its old server, and its live commit is being deployed on the new one.',
  'server-removed': 'Server removed.',
};

export type Kit = ReturnType<typeof makeKit>;

/** Page renderers and the form-action helper shared by the route groups. */
function makeKit(deps: ApiDeps, api: ApiCall) {
  const notice = (c: C): Msg => ({ notice: NOTICES[c.req.query('done') ?? ''] });

  const renderApps = async (c: C, msg: Msg, status: 200 | 400 | 404 | 409 = 200) => {
    const [apps, servers] = await Promise.all([api<AppInfo[]>('GET', '/api/apps'), api<ServerInfo[]>('GET', '/api/servers')]);
    const rows = await Promise.all(
      apps.body.map(async (app) => ({ app, summary: summarize((await api<DeploymentInfo[]>('GET', `/api/apps/${seg(app.name)}/deployments?limit=${RECENT_DEPLOYMENTS}`)).body) })),
    );
    return c.html(appsPage(rows, servers.body, c.get('session').csrf, msg), status);
  };

  const renderApp = async (c: C, name: string, msg: Msg, status: 200 | 400 | 404 | 409 = 200) => {
    const base = `/api/apps/${seg(name)}`;
    const app = await api<AppDetails>('GET', base);
    if (!app.ok) return renderApps(c, { error: app.error }, 404);
    const reveal = { env: c.req.query('reveal') === 'env', secrets: c.req.query('reveal') === 'secrets' };
    const [deployments, env, domains, servers] = await Promise.all([
      api<DeploymentInfo[]>('GET', `${base}/deployments?limit=${RECENT_DEPLOYMENTS}`),
      api<EnvVar[]>('GET', `${base}/env${reveal.env ? '?reveal=1' : ''}`),
      api<DomainInfo[]>('GET', `${base}/domains`),
      api<ServerInfo[]>('GET', '/api/servers'),
    ]);
    // Containers as the agent last reported them, read from the hub: the API has no route for them yet.
    const observed = deps.hub.isConnected(app.body.server) ? deps.hub.observedState(app.body.server) : undefined;
    const containers = observed ? observed.containers.filter((x) => x.app === app.body.name) : null;
    const data: AppPageData = { app: app.body, deployments: deployments.body, env: env.body, domains: domains.body, reveal, containers, servers: servers.body.map((s) => s.name) };
    const wanted = deploymentId.safeParse(c.req.query('deployment') ?? '');
    const followId = wanted.success && deployments.body.some((d) => d.id === wanted.data) ? wanted.data : deployments.body[0]?.id;
    if (followId) {
      const [details, logs] = await Promise.all([api<DeploymentDetails>('GET', `/api/deployments/${followId}`), api<DeploymentLogs>('GET', `/api/deployments/${followId}/logs`)]);
      if (details.ok && logs.ok) data.current = { details: details.body, logs: logs.body };
    }
    return c.html(appPage(data, c.get('session').csrf, msg), status);
  };

  const renderServers = async (c: C, msg: { error?: string; notice?: string; created?: ServerCreated }, status: 200 | 201 | 400 | 404 | 409 = 200) => {
    const [servers, apps] = await Promise.all([api<ServerInfo[]>('GET', '/api/servers'), api<AppInfo[]>('GET', '/api/apps')]);
    return c.html(serversPage(servers.body, apps.body, c.get('session').csrf, msg), status);
  };

  /** Run an API change from a form; on success redirect with a fixed notice, else re-render with the error. */
  const act = async (c: C, call: () => Promise<{ ok: boolean; status: number; error: string }>, done: { to: string; notice: string }, onError: (msg: Msg, status: 400 | 404 | 409) => Promise<Response>) => {
    const res = await call();
    if (res.ok) return c.redirect(`${done.to}${done.to.includes('?') ? '&' : '?'}done=${done.notice}`, 303);
    return onError({ error: res.error }, res.status === 404 ? 404 : res.status === 409 ? 409 : 400);
  };

  const nameOf = (c: C) => c.req.param('name') ?? '';
  const appUrl = (name: string) => `/ui/apps/${seg(name)}`;
  return { api, notice, renderApps, renderApp, renderServers, act, nameOf, appUrl };
}

export function registerPageRoutes(ui: Hono<Env>, deps: ApiDeps, api: ApiCall): void {
  const kit = makeKit(deps, api);
  registerAppPages(ui, kit);
  registerLiveAndOpsPages(ui, deps, kit);
}

function registerAppPages(ui: Hono<Env>, kit: Kit): void {
  const { api, notice, renderApps, renderApp, act, nameOf, appUrl } = kit;
  ui.get('/ui/apps', (c) => renderApps(c, notice(c)));
  ui.post('/ui/apps', (c) => {
    const f = c.get('form');
    const body = { name: f.name?.trim(), repo: f.repo?.trim(), server: f.server, ...(f.branch?.trim() ? { branch: f.branch.trim() } : {}) };
    return act(c, () => api('POST', '/api/apps', body), { to: appUrl(body.name ?? ''), notice: 'created' }, (m, s) => renderApps(c, m, s));
  });
  ui.get('/ui/apps/:name', (c) => renderApp(c, nameOf(c), notice(c)));

  ui.post('/ui/apps/:name/deploy', async (c) => {
    const name = nameOf(c);
    const res = await api<DeploymentInfo>('POST', `/api/apps/${seg(name)}/deploy`);
    if (!res.ok) return renderApp(c, name, { error: res.error }, 400);
    return c.redirect(`${appUrl(name)}?deployment=${res.body.id}&done=deployed`, 303);
  });
  ui.post('/ui/apps/:name/rollback', async (c) => {
    const name = nameOf(c);
    const id = c.get('form').deploymentId;
    const res = await api<DeploymentInfo>('POST', `/api/apps/${seg(name)}/rollback`, id ? { deploymentId: id } : undefined);
    if (!res.ok) return renderApp(c, name, { error: res.error }, res.status === 404 ? 404 : 409);
    return c.redirect(`${appUrl(name)}?deployment=${res.body.id}&done=rollback`, 303);
  });
  registerScaleForms(ui, kit);
  ui.post('/ui/deployments/:id/cancel', (c) => {
    const name = appName.safeParse(c.get('form').app).data ?? '';
    return act(c, () => api('POST', `/api/deployments/${seg(c.req.param('id'))}/cancel`), { to: appUrl(name), notice: 'cancelled' }, (m, s) => renderApp(c, name, m, s));
  });
  ui.post('/ui/apps/:name/env', (c) => {
    const name = nameOf(c);
    const { key = '', value = '' } = c.get('form');
    return act(c, () => api('PATCH', `/api/apps/${seg(name)}/env`, { set: { [key.trim()]: value } }), { to: appUrl(name), notice: 'env' }, (m, s) => renderApp(c, name, m, s));
  });
  ui.post('/ui/apps/:name/env/unset', (c) => {
    const name = nameOf(c);
    return act(c, () => api('PATCH', `/api/apps/${seg(name)}/env`, { unset: [c.get('form').key ?? ''] }), { to: appUrl(name), notice: 'env' }, (m, s) => renderApp(c, name, m, s));
  });
  ui.post('/ui/apps/:name/domains', (c) => {
    const name = nameOf(c);
    return act(c, () => api('POST', `/api/apps/${seg(name)}/domains`, { domain: c.get('form').domain?.trim() }), { to: appUrl(name), notice: 'domain' }, (m, s) => renderApp(c, name, m, s));
  });
  ui.post('/ui/apps/:name/domains/remove', (c) => {
    const name = nameOf(c);
    return act(c, () => api('DELETE', `/api/apps/${seg(name)}/domains/${seg(c.get('form').domain ?? '')}`), { to: appUrl(name), notice: 'domain' }, (m, s) => renderApp(c, name, m, s));
  });
  ui.post('/ui/apps/:name/webhooks/rotate', (c) => {
    const name = nameOf(c);
    return act(c, () => api('POST', `/api/apps/${seg(name)}/webhooks/rotate`), { to: `${appUrl(name)}?reveal=secrets`, notice: 'rotated' }, (m, s) => renderApp(c, name, m, s));
  });
  // Only the fields the form changed go to the API: the repository is shown with its credentials
  // masked, and sending that back would replace the real URL.
  ui.post('/ui/apps/:name/settings', async (c) => {
    const name = nameOf(c);
    const current = await api<AppDetails>('GET', `/api/apps/${seg(name)}`);
    if (!current.ok) return renderApp(c, name, { error: current.error }, 404);
    const f = c.get('form');
    const change: Record<string, string> = {};
    for (const k of ['repo', 'branch', 'server'] as const) {
      const v = f[k]?.trim();
      if (v !== undefined && v !== current.body[k]) change[k] = v;
    }
    const res = await api<AppUpdated>('PATCH', `/api/apps/${seg(name)}`, change);
    if (!res.ok) return renderApp(c, name, { error: res.error }, res.status === 404 ? 404 : res.status === 409 ? 409 : 400);
    const dep = res.body.moved?.deployment;
    return c.redirect(`${appUrl(name)}?${dep ? `deployment=${dep.id}&` : ''}done=${res.body.moved ? 'moved' : 'settings'}`, 303);
  });
  ui.post('/ui/apps/:name/delete', (c) => {
    const name = nameOf(c);
    return act(c, () => api('DELETE', `/api/apps/${seg(name)}`), { to: '/ui/apps', notice: 'deleted' }, (m, s) => renderApp(c, name, m, s));
  });

}

/** `berth scale` from the app page: one process's count (PUT), or back to the repo's (DELETE). */
function registerScaleForms(ui: Hono<Env>, kit: Kit): void {
  const { api, renderApp, nameOf, appUrl } = kit;
  const scaled = async (c: C, name: string, res: Awaited<ReturnType<typeof api<DeploymentInfo>>>) => {
    if (!res.ok) return renderApp(c, name, { error: res.error }, res.status === 404 ? 404 : res.status === 409 ? 409 : 400);
    return c.redirect(`${appUrl(name)}?deployment=${res.body.id}&done=scaled`, 303);
  };
  ui.post('/ui/apps/:name/scale', async (c) => {
    const name = nameOf(c);
    const { process = '', count = '' } = c.get('form');
    // A whole number goes as a number; anything else as typed, for the API to say what is wrong with it.
    const n = /^\d{1,6}$/.test(count.trim()) ? Number(count.trim()) : count;
    return scaled(c, name, await api<DeploymentInfo>('PUT', `/api/apps/${seg(name)}/scale`, { [process.trim()]: n }));
  });
  ui.post('/ui/apps/:name/scale/reset', async (c) => {
    const name = nameOf(c);
    return scaled(c, name, await api<DeploymentInfo>('DELETE', `/api/apps/${seg(name)}/scale`));
  });
}

function registerLiveAndOpsPages(ui: Hono<Env>, deps: ApiDeps, kit: Kit): void {
  const { api, notice, renderServers, act, nameOf, appUrl } = kit;
  // The live log for the browser: the API's own SSE stream, authorised by the session cookie
  // (EventSource cannot send an Authorization header).
  ui.get('/ui/deployments/:id/events', (c) => {
    const id = deploymentId.safeParse(c.req.param('id'));
    const after = afterSeq.safeParse(c.req.query('after') ?? c.req.header('last-event-id') ?? '-1');
    if (!id.success || !after.success) return c.text('invalid deployment id or after', 400);
    if (!deps.stores.deployments.get(id.data)) return c.text('no such deployment', 404);
    return deploymentEventStream(c, deps, id.data, after.data);
  });

  const renderCron = async (c: C, name: string, msg: Msg, status: 200 | 400 | 404 | 409 = 200) => {
    const jobs = await api<CronJobInfo[]>('GET', `/api/apps/${seg(name)}/cron`);
    return c.html(cronPage(name, jobs.ok ? jobs.body : [], c.get('session').csrf, jobs.ok ? msg : { error: jobs.error }), status);
  };
  ui.get('/ui/apps/:name/cron', (c) => renderCron(c, nameOf(c), notice(c)));
  ui.post('/ui/apps/:name/cron/run', (c) => {
    const name = nameOf(c);
    return act(c, () => api('POST', `/api/apps/${seg(name)}/cron/${seg(c.get('form').job ?? '')}/run`), { to: `${appUrl(name)}/cron`, notice: 'cron' }, (m, s) => renderCron(c, name, m, s));
  });
  ui.get('/ui/apps/:name/logs', (c) => {
    const proc = c.req.query('process')?.trim();
    return c.html(runtimeLogsPage(nameOf(c), proc || undefined, c.get('session').csrf));
  });
  // The API's runtime-log stream for the browser, authorised by the session cookie; the request's
  // abort signal goes along so a closed tab stops the agent's follow.
  ui.get('/ui/apps/:name/logs/stream', async (c) => {
    const q = new URLSearchParams({ tail: c.req.query('tail') ?? '200', follow: '1', ...(c.req.query('process') ? { process: c.req.query('process')! } : {}) });
    const res = await api.stream(`/api/apps/${seg(nameOf(c))}/logs?${q.toString()}`, c.req.raw.signal);
    if (res.ok) return res;
    const error = ((await res.json().catch(() => ({}))) as { error?: string }).error ?? `HTTP ${res.status}`;
    // Still an event stream, so the page can say why instead of retrying forever.
    return c.body(`event: end\ndata: ${JSON.stringify({ error })}\n\n`, 200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
  });

  ui.get('/ui/servers', (c) => renderServers(c, notice(c)));
  ui.post('/ui/servers/remove', (c) => {
    const name = c.get('form').name ?? '';
    return act(c, () => api('DELETE', `/api/servers/${seg(name)}`), { to: '/ui/servers', notice: 'server-removed' }, (m, s) => renderServers(c, m, s));
  });
  ui.post('/ui/servers', async (c) => {
    const f = c.get('form');
    const res = await api<ServerCreated>('POST', '/api/servers', { name: f.name?.trim(), ...(f.baseDomain?.trim() ? { baseDomain: f.baseDomain.trim() } : {}) });
    // The install command carries a one-time join token: shown once, in this answer only.
    return res.ok ? renderServers(c, { created: res.body }, 201) : renderServers(c, { error: res.error }, res.status === 409 ? 409 : 400);
  });
}
