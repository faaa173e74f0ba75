// An app's cron jobs (with their last result) and its runtime logs, following live. Both are read
// from the app's agent through the API, so they are separate pages: an offline agent never slows
// the app page down.
import type { CronJobInfo } from '../../shared/api.js';
import { html, page, postForm, statusBadge, time, type Html } from './layout.js';

export function cronPage(app: string, jobs: readonly CronJobInfo[], csrf: string, msg: { error?: string; notice?: string } = {}): Html {
  const base = `/ui/apps/${encodeURIComponent(app)}`;
  const rows = jobs.map((j) => {
    const last = j.running ?? j.lastRun;
    return html`<tr><td><code>${j.name}</code></td><td><code>${j.schedule}</code>${j.timezone ? html` <span class="muted">${j.timezone}</span>` : ''}</td><td><code>${j.command}</code></td>
<td>${last ? html`${statusBadge(last.status)} ${last.exitCode === null ? '' : html`exit ${last.exitCode}`} ${time(last.finishedAt ?? last.startedAt)}${last.reason ? html`<div class="muted">${last.reason}</div>` : ''}` : html`<span class="muted">never ran</span>`}</td>
<td>${time(j.nextRunAt)}</td>
<td>${postForm(`${base}/cron/run`, csrf, html`<input type="hidden" name="job" value="${j.name}"><button class="secondary" type="submit" aria-label="Run ${j.name} now">Run now</button>`)}</td></tr>`;
  });
  return page(
    `${app} cron`,
    html`<h1><a href="${base}">${app}</a> · cron jobs</h1>
${jobs.length === 0 ? html`<p class="muted">No cron jobs in the live release (they are declared in berth.yml).</p>` : html`<table>
<thead><tr><th scope="col">Job</th><th scope="col">Schedule</th><th scope="col">Command</th><th scope="col">Last run</th><th scope="col">Next run</th><th scope="col"></th></tr></thead>
<tbody>${rows}</tbody></table>`}`,
    { csrf, ...msg },
  );
}

export function runtimeLogsPage(app: string, proc: string | undefined, csrf: string): Html {
  const base = `/ui/apps/${encodeURIComponent(app)}`;
  const q = new URLSearchParams({ tail: '200', ...(proc ? { process: proc } : {}) });
  return page(
    `${app} logs`,
    html`<h1><a href="${base}">${app}</a> · runtime logs</h1>
<form method="get" action="${base}/logs" class="card row"><label>Process (empty: all) <input name="process" value="${proc ?? ''}" pattern="[a-z][a-z0-9_-]*"></label><button type="submit">Show</button></form>
<section class="card" data-runtime-events="${base}/logs/stream?${q.toString()}">
<p class="error" data-reason hidden></p>
<p class="muted">The last 200 lines, then new ones as they are written (JavaScript needed to follow).</p>
<pre role="log" aria-live="polite" aria-label="Runtime log"></pre>
</section>`,
    { csrf },
  );
}
