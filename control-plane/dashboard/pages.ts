// Sign-in, the apps list and the servers list.
import type { AppInfo, DeploymentInfo, ServerCreated, ServerInfo } from '../../shared/api.js';
import { commitCell, html, page, postForm, statusBadge, time, type Html } from './layout.js';

export function signInPage(error?: string): Html {
  return page(
    'Sign in',
    html`<h1>Sign in</h1>
<form method="post" action="/ui/login" class="card">
<label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<p class="muted">The token is in the control plane's data directory (admin-token), or printed by <code>berth-control-plane</code> on first start.</p>
<button type="submit">Sign in</button>
</form>`,
    { error },
  );
}

/** What the apps list says about an app, from its deployments (newest first). */
export interface AppSummary {
  status: 'serving' | 'deploying' | 'failed' | 'new';
  /** The release that is live (the newest that went `done`). */
  live?: DeploymentInfo;
  last?: DeploymentInfo;
  /** The newest deployment still running, followed live on the apps list. */
  running?: DeploymentInfo;
}

const DONE = new Set(['done']);
const ENDED = new Set(['done', 'failed', 'cancelled', 'superseded']);

export function summarize(deployments: readonly DeploymentInfo[]): AppSummary {
  const live = deployments.find((d) => DONE.has(d.status));
  const last = deployments[0];
  const running = deployments.find((d) => !ENDED.has(d.status));
  const lastEnded = deployments.find((d) => d.status === 'done' || d.status === 'failed');
  const status = running ? 'deploying' : lastEnded?.status === 'failed' ? 'failed' : live ? 'serving' : 'new';
  return { status, live, last, running };
}

export function appsPage(apps: ReadonlyArray<{ app: AppInfo; summary: AppSummary }>, servers: readonly ServerInfo[], csrf: string, msg: { error?: string; notice?: string } = {}): Html {
  const rows = apps.map(
    ({ app, summary }) => html`<tr${summary.running ? html` data-app-row data-deployment="${summary.running.id}" data-events="/ui/deployments/${summary.running.id}/events?after=999999999999999"` : ''}>
<td><a href="/ui/apps/${encodeURIComponent(app.name)}">${app.name}</a></td>
<td>${app.server}</td>
<td>${[...app.domains, ...(app.defaultDomain ? [app.defaultDomain] : [])].map((d) => html`<div>${d}</div>`)}</td>
<td>${statusBadge(summary.status)}</td>
<td data-live-commit>${commitCell(summary.live)}</td>
<td>${time(summary.last?.finishedAt ?? summary.last?.createdAt)}</td>
</tr>`,
  );
  return page(
    'Apps',
    html`<h1>Apps</h1>
${apps.length === 0 ? html`<p class="muted">No apps yet.</p>` : html`<table>
<thead><tr><th scope="col">App</th><th scope="col">Server</th><th scope="col">Domains</th><th scope="col">Status</th><th scope="col">Live commit</th><th scope="col">Last deploy</th></tr></thead>
<tbody>${rows}</tbody></table>`}
<h2>Create an app</h2>
${postForm(
  '/ui/apps',
  csrf,
  html`<div class="row">
<label>Name <input name="name" required pattern="[a-z0-9][a-z0-9-]*" maxlength="63"></label>
<label>Git repository URL <input name="repo" required></label>
<label>Branch <input name="branch" value="main"></label>
<label>Server <select name="server" required>${servers.map((s) => html`<option>${s.name}</option>`)}</select></label>
<button type="submit">Create app</button></div>`,
  { cls: 'card' },
)}`,
    { csrf, ...msg },
  );
}

/** "12.3 GB" / "512 MB". */
export function formatMb(mb: number): string {
  return mb < 1024 ? `${mb} MB` : `${(mb / 1024).toFixed(1)} GB`;
}

/** Free disk per data location; one below the agent's threshold says so in words, not colour only. */
function diskCell(s: ServerInfo): Html | string {
  if (!s.disk) return html`<span class="muted">${s.connected ? 'not reported' : 'not known (offline)'}</span>`;
  if (s.disk.length === 0) return html`<span class="muted">not measured (BERTH_MIN_FREE_DISK_MB=0)</span>`;
  return html`${s.disk.map((d) => {
    const free = html`<data value="${d.freeMb}">${formatMb(d.freeMb)}</data> free on <code>${d.path}</code>`;
    return d.minFreeMb > 0 && d.freeMb < d.minFreeMb
      ? html`<div class="low" data-disk-low><strong>Low disk:</strong> ${free}, below the ${formatMb(d.minFreeMb)} minimum (deploys are refused)</div>`
      : html`<div data-disk>${free}</div>`;
  })}`;
}

export function serversPage(servers: readonly ServerInfo[], apps: readonly AppInfo[], csrf: string, msg: { error?: string; notice?: string; created?: ServerCreated } = {}): Html {
  const rows = servers.map(
    (s) => html`<tr>
<td>${s.name}</td>
<td>${statusBadge(s.connected ? 'connected' : s.joinedAt ? 'offline' : 'not joined')}</td>
<td>${time(s.lastSeenAt)}</td>
<td>${s.agentVersion ?? '—'}</td>
<td>${s.hostname ?? '—'}</td>
<td>${s.baseDomain ?? '—'}</td>
<td>${diskCell(s)}</td>
<td>${apps.filter((a) => a.server === s.name).map((a) => html`<div><a href="/ui/apps/${encodeURIComponent(a.name)}">${a.name}</a></div>`)}</td>
<td>${postForm('/ui/servers/remove', csrf, html`<input type="hidden" name="name" value="${s.name}"><button class="secondary" type="submit" aria-label="Remove server ${s.name}">Remove</button>`, { confirm: `Remove server ${s.name}? Its agent is disconnected for good.` })}</td>
</tr>`,
  );
  const created = msg.created
    ? html`<div class="card" role="status"><p>Server <strong>${msg.created.name}</strong> added. Run this on it within 24 hours (shown once):</p>
<pre><code>${msg.created.installCommand}</code></pre></div>`
    : '';
  return page(
    'Servers',
    html`<h1>Servers</h1>${created}
${servers.length === 0 ? html`<p class="muted">No servers yet.</p>` : html`<table>
<thead><tr><th scope="col">Server</th><th scope="col">Connection</th><th scope="col">Last heartbeat</th><th scope="col">Agent</th><th scope="col">Hostname</th><th scope="col">Base domain</th><th scope="col">Disk free</th><th scope="col">Apps</th><th scope="col"></th></tr></thead>
<tbody>${rows}</tbody></table>`}
<h2>Add a server</h2>
${postForm(
  '/ui/servers',
  csrf,
  html`<div class="row"><label>Name <input name="name" required maxlength="63"></label>
<label>Base domain (optional) <input name="baseDomain"></label>
<button type="submit">Add server</button></div>
<p class="muted">Shows the one-line install command to run on the new server.</p>`,
  { cls: 'card' },
)}`,
    { csrf, error: msg.error, notice: msg.notice },
  );
}
