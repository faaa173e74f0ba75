// Apps and domains. Each change is pushed at once as new desired state to the app's server.
import type { Hono } from 'hono';
import { z } from 'zod';
import { addDomainBody, createAppBody, rotateWebhookBody, updateAppBody, type AppDetails, type AppInfo, type AppUpdated, type DomainInfo, type WebhookSecrets } from '../../shared/api.js';
import { appName, existingDomainName } from '../../shared/validation.js';
import { domainInfo, type AppRow } from '../store/apps.js';
import { deploymentInfo } from '../store/deployments.js';
import { triggerDeploy } from '../deploys.js';
import { webhookUrls } from '../webhooks/routes.js';
import type { Stores } from '../store/index.js';
import type { ApiDeps } from './deps.js';
import { pageLimit, readJson, validParam } from './http.js';

/**
 * An app's domains (explicit ones, then its default hostname) with the certificate state its agent
 * last reported: whether the certificate covers each one, its expiry, the last attempt and the next.
 */
export function domainViews(stores: Stores, row: AppRow): DomainInfo[] {
  const reported = stores.certs.forApp(row.name);
  const explicit = stores.apps.domains(row.name).map((d) => ({ ...domainInfo(d), isDefault: false }));
  const def = stores.apps.defaultDomain(row);
  const all = def && !explicit.some((d) => d.domain === def) ? [...explicit, { domain: def, app: row.name, createdAt: row.created_at, isDefault: true }] : explicit;
  return all.map((d) => {
    const s = reported?.status;
    const covered = !!s && s.certDomains.includes(d.domain) && s.state !== 'expired';
    // A certificate re-issued only for another domain set is still valid for the names it covers.
    const coveredState = s && s.state === 'renewal-due' && s.reason && s.reason !== 'expiring' ? 'valid' : s?.state;
    return {
      ...d,
      https: covered,
      certState: s ? (s.certDomains.includes(d.domain) ? coveredState! : 'missing') : null,
      certIssuer: s && s.certDomains.includes(d.domain) ? s.issuer : null,
      certExpiresAt: s && s.certDomains.includes(d.domain) ? s.notAfter : null,
      certDaysLeft: s && s.certDomains.includes(d.domain) ? s.daysLeft : null,
      certLastAttemptAt: s?.lastAttemptAt ?? null,
      certLastResult: s?.lastResult ?? null,
      certLastError: s?.lastError ?? null,
      certLastSuccessAt: s?.lastSuccessAt ?? null,
      certNextAttemptAt: s?.nextAttemptAt ?? null,
      certReportedAt: reported?.reportedAt ?? null,
    };
  });
}

/** `?purgeVolumes=1` on DELETE /api/apps/NAME: the app's volumes (its data) are deleted too. */
const purgeFlag = z.enum(['0', '1', 'true', 'false'], { message: 'purgeVolumes must be 1 or 0' }).transform((v) => v === '1' || v === 'true');

export function registerAppRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });
  const appParam = (v: string | undefined) => validParam(appName, v, 'app name');
  const info = (row: AppRow): AppInfo => ({ ...stores.apps.info(row), webhooks: webhookUrls(deps.url(), row.name) });
  const details = (row: AppRow): AppDetails => ({ ...info(row), webhookSecrets: stores.webhooks.secrets(row.name) });

  app.post('/api/apps', async (c) => {
    const req = await readJson(c, createAppBody, { name: 'app name', repo: 'repo URL', branch: 'branch', server: 'server name', cluster: 'cluster name', rootDir: 'root directory', watch: 'watch pattern', knownHosts: 'known hosts' });
    // A cluster app is deployed and served by the cluster's manager (issue 15).
    const server = req.cluster !== undefined ? stores.clusters.require(req.cluster).manager : req.server!;
    const row = stores.apps.create({ ...req, server });
    log.info({ app: row.name, server: row.server, cluster: row.cluster }, 'app created');
    hub.pushDesiredState(row.server);
    const body: AppDetails = details(row);
    return c.json(body, 201);
  });

  // `?limit=N&after=NAME` pages through them by name (the cursor is the last name of the previous page).
  app.get('/api/apps', (c) => {
    const limit = pageLimit(c.req.query('limit'));
    const rawAfter = c.req.query('after');
    const after = rawAfter === undefined ? undefined : validParam(appName, rawAfter, 'after');
    const urls = (name: string) => webhookUrls(deps.url(), name);
    const body: AppInfo[] = stores.apps.infoMany(stores.apps.list({ ...(limit ? { limit } : {}), ...(after ? { after } : {}) })).map((a) => ({ ...a, webhooks: urls(a.name) }));
    return c.json(body);
  });

  app.get('/api/apps/:name', (c) => {
    const row = stores.apps.require(appParam(c.req.param('name')));
    // Issue 16: which scale applies (only here: the answers of create and change stay as they were).
    const live = stores.deployments.doneByApp(row.name, 1)[0];
    const liveInfo = live ? deploymentInfo(live) : null;
    const body: AppDetails = { ...details(row), scale: { override: stores.scale.get(row.name), repo: liveInfo?.repoScale ?? null }, live: liveInfo };
    return c.json(body);
  });

  // Issue 16: change the repository, branch or server after creation. Pushes and deploys use the
  // new values from now on; a move also deploys the live commit on the new server.
  app.patch('/api/apps/:name', async (c) => {
    const name = appParam(c.req.param('name'));
    const change = await readJson(c, updateAppBody, { repo: 'repo URL', branch: 'branch', server: 'server name', knownHosts: 'known hosts' });
    const { before, after } = stores.apps.update(name, change);
    log.info({ app: name, changed: Object.keys(change), server: after.server }, 'app changed');
    hub.pushDesiredState(before.server);
    let moved: AppUpdated['moved'];
    if (after.server !== before.server) {
      hub.pushDesiredState(after.server);
      const live = stores.deployments.doneByApp(name)[0];
      const queued = live?.commit ? triggerDeploy(deps, after, { commit: live.commit, trigger: 'manual' }).row : null;
      moved = { from: before.server, deployment: queued ? deploymentInfo(queued) : null };
    }
    const body: AppUpdated = { ...details(after), ...(moved ? { moved } : {}) };
    return c.json(body);
  });

  app.post('/api/apps/:name/webhooks/rotate', async (c) => {
    const row = stores.apps.require(appParam(c.req.param('name')));
    const { which } = await readJson(c, rotateWebhookBody, { which: 'which' }, { optional: true });
    const secrets: WebhookSecrets = stores.webhooks.rotate(row.name, which);
    log.info({ app: row.name, which }, 'webhook secrets rotated');
    const body: AppDetails = { ...info(row), webhookSecrets: secrets };
    return c.json(body);
  });

  app.delete('/api/apps/:name', (c) => {
    const name = appParam(c.req.param('name'));
    const rawPurge = c.req.query('purgeVolumes');
    const purgeVolumes = rawPurge === undefined ? false : validParam(purgeFlag, rawPurge, 'purgeVolumes');
    stores.apps.require(name);
    // Followers of its unfinished deployments (deploy --wait, ?wait=1) get an answer before the rows go.
    for (const d of stores.deployments.cancelUnfinished(name, 'the app was deleted')) {
      hub.sendCancel(d);
      deps.events.deployment(deploymentInfo(d));
    }
    const row = stores.apps.delete(name, { purgeVolumes });
    log.info({ app: row.name, purgeVolumes }, 'app deleted');
    hub.pushDesiredState(row.server);
    // purgeVolumes only when asked: the answer other clients and checks know stays as it was.
    return c.json(purgeVolumes ? { deleted: row.name, purgeVolumes: true } : { deleted: row.name });
  });

  registerDomainRoutes(app, deps);
}

/** An app's domains: added, listed with their certificate state, removed. */
function registerDomainRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });
  const appParam = (v: string | undefined) => validParam(appName, v, 'app name');

  app.post('/api/apps/:name/domains', async (c) => {
    const name = appParam(c.req.param('name'));
    const { domain } = await readJson(c, addDomainBody, { domain: 'domain' });
    const added = stores.apps.addDomain(name, domain);
    log.info({ app: name, domain }, 'domain added');
    hub.pushDesiredState(added.app.server);
    const body: DomainInfo = domainInfo(added.domain);
    return c.json(body, 201);
  });

  app.get('/api/apps/:name/domains', (c) => {
    const row = stores.apps.require(appParam(c.req.param('name')));
    const body: DomainInfo[] = domainViews(stores, row);
    return c.json(body);
  });

  app.delete('/api/apps/:name/domains/:domain', (c) => {
    const name = appParam(c.req.param('name'));
    const domain = validParam(existingDomainName, c.req.param('domain'), 'domain');
    const row = stores.apps.removeDomain(name, domain);
    log.info({ app: name, domain }, 'domain removed');
    hub.pushDesiredState(row.server);
    return c.json({ deleted: domain });
  });
}
