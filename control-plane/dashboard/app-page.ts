// One app: deploy / cancel / rollback, the followed deployment's phases and log (live over SSE),
// the deployment history, env vars (masked unless revealed), domains and webhooks.
import { appliedScale, type AppliedScale, type AppDetails, type DeploymentDetails, type DeploymentInfo, type DeploymentLogs, type DomainInfo, type EnvVar } from '../../shared/api.js';
import { commitCell, duration, html, page, postForm, statusBadge, time, type Html } from './layout.js';
import { summarize } from './pages.js';

export interface AppPageData {
  app: AppDetails;
  deployments: DeploymentInfo[];
  /** The deployment followed on the page (asked for, else the newest). */
  current?: { details: DeploymentDetails; logs: DeploymentLogs };
  env: EnvVar[];
  domains: DomainInfo[];
  reveal: { env: boolean; secrets: boolean };
  /** The app's containers as its agent last reported them; null while the server is offline. */
  containers: Array<{ process: string; deploymentId: string; state: string }> | null;
  /** Server names, for moving the app. */
  servers: string[];
}

const ENDED = new Set(['done', 'failed', 'cancelled', 'superseded']);

export function appPage(d: AppPageData, csrf: string, msg: { error?: string; notice?: string } = {}): Html {
  const base = `/ui/apps/${encodeURIComponent(d.app.name)}`;
  const summary = summarize(d.deployments);
  return page(
    d.app.name,
    html`<h1>${d.app.name} ${statusBadge(summary.status)}</h1>
<p class="muted">Repository <code>${d.app.repo}</code> · branch <code>${d.app.branch}</code> · server <a href="/ui/servers">${d.app.server}</a> · live commit <span data-live-commit>${commitCell(summary.live)}</span></p>
<nav class="card" aria-label="App tools"><a href="${base}/logs">Runtime logs</a> · <a href="${base}/cron">Cron jobs</a></nav>
${actions(d, base, csrf)}
${d.current ? followed(d.current) : ''}
${processesSection(d, summary.live?.id)}
${scaleForm(d, base, csrf)}
${history(d.deployments, base)}
${envSection(d, base, csrf)}
${domainsSection(d.domains, base, csrf)}
${webhooksSection(d, base, csrf)}
${settingsSection(d, base, csrf)}
${postForm(`${base}/delete`, csrf, html`<button class="danger" type="submit">Delete app</button>`, { confirm: `Delete ${d.app.name}? Its containers and routes are removed.`, cls: 'card' })}`,
    { csrf, ...msg },
  );
}

function actions(d: AppPageData, base: string, csrf: string): Html {
  const running = d.deployments.filter((x) => !ENDED.has(x.status));
  const live = d.deployments.find((x) => x.status === 'done');
  const targets = d.deployments.filter((x) => x.status === 'done' && x.id !== live?.id);
  return html`<div class="card row">
${postForm(`${base}/deploy`, csrf, html`<button type="submit">Deploy</button>`)}
${running.map((r) => postForm(`/ui/deployments/${r.id}/cancel`, csrf, html`<input type="hidden" name="app" value="${d.app.name}"><button class="secondary" type="submit">Cancel ${r.id}</button>`))}
${targets.length === 0 ? '' : postForm(
    `${base}/rollback`,
    csrf,
    html`<label>Previous good release <select name="deploymentId">${targets.map((t) => html`<option value="${t.id}">${t.id} · ${(t.commit ?? '').slice(0, 7)}${t.commitMessage ? ` ${t.commitMessage.slice(0, 60)}` : ''} · ${t.createdAt}</option>`)}</select></label>
<button class="secondary" type="submit">Rollback</button>`,
    { confirm: 'Roll back to this release?' },
  )}
</div>`;
}

function followed(cur: NonNullable<AppPageData['current']>): Html {
  const d = cur.details;
  const live = !ENDED.has(d.status);
  const lastSeq = cur.logs.lines.at(-1)?.seq ?? -1;
  const events = live ? html` data-events="/ui/deployments/${d.id}/events?after=${lastSeq}"` : '';
  return html`<section class="card" aria-labelledby="dep-h"${events} data-deployment="${d.id}" data-live-status="${d.status}">
<h2 id="dep-h">Deployment ${d.id} (${d.trigger}) ${statusBadge(d.status)}</h2>
<p class="error" data-reason ${d.reason ? '' : 'hidden'}>${d.reason ?? ''}</p>
<ol class="phases" aria-label="Phases" data-phases>${d.phases.map((p) => html`<li>${p.status}</li>`)}</ol>
<pre role="log" aria-live="polite" aria-label="Deploy log">${cur.logs.lines.map((l) => `${l.text}\n`)}</pre>
</section>`;
}

function history(deployments: readonly DeploymentInfo[], base: string): Html {
  if (deployments.length === 0) return html`<h2>Deployments</h2><p class="muted">No deployments yet.</p>`;
  return html`<h2>Deployments</h2><table>
<thead><tr><th scope="col">Id</th><th scope="col">Trigger</th><th scope="col">Commit</th><th scope="col">Status</th><th scope="col">Started</th><th scope="col">Duration</th></tr></thead>
<tbody>${deployments.slice(0, 50).map(
    (x) => html`<tr data-dep-row="${x.id}"><td><a href="${base}?deployment=${x.id}">${x.id}</a></td><td>${x.trigger}${x.rollbackOf ? html` of ${x.rollbackOf}` : ''}</td><td>${commitCell(x)}</td>
<td>${statusBadge(x.status)}${x.reason ? html`<div class="muted">${x.reason}</div>` : ''}</td><td>${time(x.createdAt)}</td><td>${duration(x.createdAt, x.finishedAt)}</td></tr>`,
  )}</tbody></table>`;
}

function envSection(d: AppPageData, base: string, csrf: string): Html {
  const rows = d.env.map(
    (v) => html`<tr><td><code>${v.key}</code></td><td><code>${v.value}</code></td><td>${time(v.updatedAt)}</td>
<td>${postForm(`${base}/env/unset`, csrf, html`<input type="hidden" name="key" value="${v.key}"><button class="secondary" type="submit" aria-label="Unset ${v.key}">Unset</button>`)}</td></tr>`,
  );
  return html`<h2>Environment variables</h2>
<p class="muted">Changes take effect on the next deploy.
${d.env.length === 0 ? '' : d.reveal.env ? html`<a href="${base}">Hide values</a>` : html`<a href="${base}?reveal=env">Reveal values</a>`}</p>
${d.env.length === 0 ? '' : html`<table><thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Updated</th><th scope="col"></th></tr></thead><tbody>${rows}</tbody></table>`}
${postForm(
  `${base}/env`,
  csrf,
  html`<div class="row"><label>Key <input name="key" required pattern="[A-Za-z_][A-Za-z0-9_]*"></label>
<label>Value <input name="value" type="password" autocomplete="off"></label><button type="submit">Set</button></div>`,
  { cls: 'card' },
)}`;
}

function domainsSection(domains: readonly DomainInfo[], base: string, csrf: string): Html {
  const rows = domains.map(
    (x) => html`<tr><td>${x.domain}${x.isDefault ? html` <span class="muted">(default)</span>` : ''}</td><td>${x.https ? 'HTTPS' : 'HTTP'}</td>
<td>${x.certState ?? '—'}${x.certLastError ? html`<div class="muted">${x.certLastError}</div>` : ''}</td><td>${time(x.certExpiresAt)}</td>
<td>${x.isDefault ? '' : postForm(`${base}/domains/remove`, csrf, html`<input type="hidden" name="domain" value="${x.domain}"><button class="secondary" type="submit">Remove</button>`, { confirm: `Remove ${x.domain}?` })}</td></tr>`,
  );
  return html`<h2>Domains</h2>
${domains.length === 0 ? '' : html`<table><thead><tr><th scope="col">Domain</th><th scope="col">Served</th><th scope="col">Certificate</th><th scope="col">Expires</th><th scope="col"></th></tr></thead><tbody>${rows}</tbody></table>`}
${postForm(`${base}/domains`, csrf, html`<div class="row"><label>Domain <input name="domain" required></label><button type="submit">Add domain</button></div>`, { cls: 'card' })}`;
}

function webhooksSection(d: AppPageData, base: string, csrf: string): Html {
  const urls = Object.entries(d.app.webhooks);
  return html`<h2>Webhooks</h2><div class="card">
${urls.map(([k, u]) => html`<p>${k}: <code>${u}</code></p>`)}
${d.reveal.secrets
    ? html`<p>Push secret: <code>${d.app.webhookSecrets.push}</code></p><p>Deploy token: <code>${d.app.webhookSecrets.deploy}</code></p><a href="${base}">Hide secrets</a>`
    : html`<a href="${base}?reveal=secrets">Reveal webhook secrets</a>`}
${postForm(`${base}/webhooks/rotate`, csrf, html`<button class="secondary" type="submit">Rotate secrets</button>`, { confirm: 'New webhook secrets: the old ones stop working at once. Continue?' })}
</div>`;
}

/**
 * Processes of the live release: the scale that applies (set with `berth scale`, or the repo's
 * `scale:`), how many of its containers the agent last saw running, and so the process's health.
 * Containers of other releases (one draining, or a deploy starting) are listed below it.
 */
function processesSection(d: AppPageData, liveId: string | undefined): Html {
  const containers = d.containers;
  const live = (containers ?? []).filter((c) => c.deploymentId === liveId);
  const scales = new Map(appliedScale(d.app.scale).map((s) => [s.process, s]));
  const names = [...new Set([...scales.keys(), ...live.map((c) => c.process)])];
  const others = groupByRelease((containers ?? []).filter((c) => c.deploymentId !== liveId));
  if (names.length === 0 && others.length === 0) {
    return html`<h2>Processes</h2><p class="muted">${containers === null ? 'Not known: the server is offline.' : 'No containers running.'}</p>`;
  }
  const rows = names.map((name) => {
    const s = scales.get(name);
    const mine = live.filter((c) => c.process === name);
    const running = mine.filter((c) => c.state === 'running').length;
    const want = s?.count ?? mine.length;
    const health = containers === null ? 'unknown' : want === 0 ? 'stopped' : running >= want ? 'healthy' : running === 0 ? 'down' : 'degraded';
    // What the others are doing (restarting, exited…): running is said by the count.
    const states = [...new Set(mine.filter((c) => c.state !== 'running').map((c) => c.state))].join(', ');
    return html`<tr data-process="${name}"><td><code>${name}</code></td><td data-scale-of>${want}${scaleSource(s)}</td>
<td data-running>${containers === null ? 'not known (server offline)' : `${running}/${want} running`}${states ? html` <span class="muted">${states}</span>` : ''}</td>
<td>${statusBadge(health)}</td><td><code>${liveId ?? '—'}</code></td></tr>`;
  });
  const otherRows = others.map(
    (g) => html`<tr data-process="${g.process}" data-other-release><td><code>${g.process}</code></td><td class="muted">—</td>
<td data-running>${g.states.filter((x) => x === 'running').length}/${g.states.length} running <span class="muted">${[...new Set(g.states.filter((x) => x !== 'running'))].join(', ')}</span></td>
<td><span class="muted">other release</span></td><td><code>${g.deploymentId}</code></td></tr>`,
  );
  return html`<h2>Processes</h2><table><thead><tr><th scope="col">Process</th><th scope="col">Scale</th><th scope="col">Containers</th><th scope="col">Health</th><th scope="col">Release</th></tr></thead><tbody>${rows}${otherRows}</tbody></table>`;
}

function scaleSource(s: AppliedScale | undefined): Html | string {
  if (!s || s.source === 'unknown') return '';
  if (s.source === 'repo') return html` <span class="muted">the repo's <code>scale:</code></span>`;
  return html` <span class="muted">set with berth scale${s.repo === null ? '' : html`; the repo says ${s.repo}`}</span>`;
}

function groupByRelease(containers: NonNullable<AppPageData['containers']>): Array<{ process: string; deploymentId: string; states: string[] }> {
  const groups = new Map<string, { process: string; deploymentId: string; states: string[] }>();
  for (const c of containers) {
    const key = `${c.process}\u0000${c.deploymentId}`;
    const g = groups.get(key) ?? { process: c.process, deploymentId: c.deploymentId, states: [] };
    g.states.push(c.state);
    groups.set(key, g);
  }
  return [...groups.values()];
}

/** Which scale applies, and `berth scale` from the page: one process at a time, or back to the repo's. */
function scaleForm(d: AppPageData, base: string, csrf: string): Html {
  const override = Object.entries(d.app.scale?.override ?? {});
  const repo = Object.entries(d.app.scale?.repo ?? {});
  const repoSays = repo.length === 0 ? '' : html` The repository says ${repo.map(([p, n], i) => html`${i > 0 ? ', ' : ''}<code>${p}=${n}</code>`)}.`;
  const applies = override.length === 0
    ? html`The repository's <code>scale:</code> applies to every process.${repoSays}`
    : html`Set here (or with <code>berth scale</code>), overriding the repository's <code>scale:</code>: ${override.map(([p, n], i) => html`${i > 0 ? ', ' : ''}<code>${p}=${n}</code>`)}. Other processes follow the repository.${repoSays}`;
  return html`<div class="card" data-scale><p>Scale: ${applies}</p>
${postForm(
  `${base}/scale`,
  csrf,
  html`<div class="row"><label>Process <input name="process" required value="web"></label>
<label>Containers <input name="count" type="number" min="0" max="32" required></label><button type="submit">Set scale</button></div>
<p class="muted">Redeploys the live release at the new count without a rebuild, through the health check; the current containers serve until the new ones are healthy.</p>`,
)}
${override.length === 0 ? '' : postForm(`${base}/scale/reset`, csrf, html`<button class="secondary" type="submit">Reset to the repository's scale</button>`, { confirm: "Go back to the repository's scale for every process?" })}
</div>`;
}

/** Repository, branch and server, changeable after creation (PATCH /api/apps/NAME). */
function settingsSection(d: AppPageData, base: string, csrf: string): Html {
  const a = d.app;
  return html`<h2>Settings</h2>
${postForm(
  `${base}/settings`,
  csrf,
  html`<div class="row"><label>Repository <input name="repo" value="${a.repo}" required></label>
<label>Branch <input name="branch" value="${a.branch}" required></label>
<label>Run on server <select name="server">${d.servers.map((s) => html`<option${s === a.server ? ' selected' : ''}>${s}</option>`)}</select></label>
<button type="submit">Save settings</button></div>
<p class="muted">Repository and branch are used from the next deploy. Another server: the app stops on ${a.server} (its volumes stay there) and its live commit is deployed on the new one.</p>`,
  { cls: 'card', confirm: 'Save these settings? Changing the server moves the app.' },
)}`;
}
