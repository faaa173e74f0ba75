// The page frame and small shared pieces. Every value goes through hono/html's `html`, which
// escapes it: names, hostnames, log lines and reasons come from agents and repositories.
import { html as rawHtml } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { SCRIPT_ASSET, STYLE_ASSET } from './assets.js';

export type Html = HtmlEscapedString;
/** hono/html's `html` is synchronous when nothing interpolated is a Promise, as here. */
export const html = rawHtml as (strings: TemplateStringsArray, ...values: unknown[]) => Html;

export interface PageOptions {
  /** The session's CSRF token: present on signed-in pages (the header's sign-out form). */
  csrf?: string;
  error?: string;
  notice?: string;
}

export function page(title: string, body: Html, opts: PageOptions = {}): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · berth</title>
<link rel="stylesheet" href="${STYLE_ASSET.path}">
<script src="${SCRIPT_ASSET.path}" defer></script>
</head>
<body>
<header>
<a class="brand" href="/ui/apps">berth</a>
${opts.csrf === undefined ? '' : html`<nav aria-label="Main"><a href="/ui/apps">Apps</a> · <a href="/ui/servers">Servers</a></nav>
<form method="post" action="/ui/logout">${csrfField(opts.csrf)}<button class="secondary" type="submit">Sign out</button></form>`}
</header>
<main>
${opts.error ? html`<p class="error" role="alert">${opts.error}</p>` : ''}
${opts.notice ? html`<p class="notice" role="status">${opts.notice}</p>` : ''}
${body}
</main>
</body>
</html>`;
}

export const csrfField = (token: string): Html => html`<input type="hidden" name="_csrf" value="${token}">`;

/** A POST form with the CSRF token; `confirm` asks first (with JavaScript). */
export function postForm(action: string, csrf: string, inner: Html, opts: { confirm?: string; cls?: string } = {}): Html {
  return html`<form method="post" action="${action}" class="${opts.cls ?? 'inline'}"${opts.confirm ? html` data-confirm="${opts.confirm}"` : ''}>${csrfField(csrf)}${inner}</form>`;
}

/** An ISO time, shown compactly in UTC, machine-readable in `datetime`. */
export function time(iso: string | null | undefined): Html {
  if (!iso) return html`<span class="muted">—</span>`;
  const shown = iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
  return html`<time datetime="${iso}">${shown}</time>`;
}

export const shortSha = (sha: string | null | undefined): Html => (sha ? html`<code title="${sha}">${sha.slice(0, 7)}</code>` : html`<span class="muted">—</span>`);

/** A deployment's commit: the short SHA and, when the agent reported it, the subject line (escaped like everything here). */
export function commitCell(d: { commit: string | null; commitMessage?: string | null } | undefined): Html {
  if (!d?.commit) return shortSha(null);
  return d.commitMessage ? html`${shortSha(d.commit)} <span class="commit-msg" data-commit-message>${d.commitMessage}</span>` : shortSha(d.commit);
}

export const statusBadge = (status: string): Html => html`<span class="status s-${status}" data-status>${status}</span>`;

/** "1m 23s" between two ISO times. */
export function duration(from: string, to: string | null): string {
  if (!to) return '';
  const s = Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}
