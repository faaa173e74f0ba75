// The web dashboard, served by the control plane under /ui on its own port. Pages are rendered on
// the server; every read and change goes through the admin API in-process (see api-client.ts),
// so the dashboard adds no state besides in-memory sign-in sessions.
import type { Context, Hono } from 'hono';
import type { ApiDeps } from '../api/deps.js';
import { ASSETS } from './assets.js';
import { internalApi } from './api-client.js';
import { clearSessionCookie, formAllowed, sameOrigin, securityHeaders, sessionId, setSessionCookie } from './guard.js';
import { registerPageRoutes } from './routes.js';
import { SessionStore, SignInThrottle, type Session } from './session.js';
import { signInPage } from './pages.js';
import { html, page } from './layout.js';
import { secretEquals } from '../../shared/ids.js';
import { sleep } from '../../shared/util/index.js';

export const UI_PREFIX = '/ui';

type Env = { Variables: { session: Session; form: Record<string, string> } };

/** The client address for throttling sign-in failures (node-server puts the socket in c.env). */
function clientAddress(c: Context): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

async function readForm(c: Context): Promise<Record<string, string>> {
  const body = await c.req.parseBody().catch(() => ({}));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === 'string') out[k] = v;
  return out;
}

export function registerDashboard(app: Hono, deps: ApiDeps): void {
  const sessions = new SessionStore();
  const throttle = new SignInThrottle();
  const api = internalApi(app, deps.adminToken);
  const ui = app as unknown as Hono<Env>;

  ui.use('/', securityHeaders);
  ui.use(`${UI_PREFIX}/*`, securityHeaders);
  ui.get('/', (c) => c.redirect(`${UI_PREFIX}/apps`));
  ui.get(UI_PREFIX, (c) => c.redirect(`${UI_PREFIX}/apps`));
  for (const a of ASSETS) {
    ui.get(a.path, (c) => c.body(a.body, 200, { 'Content-Type': a.type, 'Cache-Control': 'public, max-age=31536000, immutable' }));
  }

  ui.get(`${UI_PREFIX}/login`, (c) => (sessions.get(sessionId(c)) ? c.redirect(`${UI_PREFIX}/apps`) : c.html(signInPage())));
  ui.post(`${UI_PREFIX}/login`, async (c) => {
    if (!sameOrigin(c, deps.url())) return c.text('cross-origin sign-in refused', 403);
    const client = clientAddress(c);
    const wait = throttle.delayFor(client);
    if (wait > 0) await sleep(wait);
    const { token } = await readForm(c);
    if (!token || !secretEquals(token.trim(), deps.adminToken)) {
      throttle.failed(client);
      deps.logger.warn({ component: 'dashboard', client }, 'dashboard sign-in with a wrong admin token');
      return c.html(signInPage('That admin token is not right. Check the admin-token file in the data directory.'), 401);
    }
    throttle.succeeded(client);
    setSessionCookie(c, sessions.create(), deps.url());
    return c.redirect(`${UI_PREFIX}/apps`, 303);
  });

  // Everything else needs a session; every POST also needs the same origin and the CSRF token.
  ui.use(`${UI_PREFIX}/*`, async (c, next) => {
    if (c.req.path.startsWith('/ui/static/')) return next();
    const session = sessions.get(sessionId(c));
    if (!session) {
      if (c.req.method === 'GET') return c.redirect(`${UI_PREFIX}/login`, 303);
      return c.html(signInPage('Your session has ended: sign in again.'), 401);
    }
    c.set('session', session);
    if (c.req.method === 'POST') {
      const form = await readForm(c);
      if (!formAllowed(c, session, form, deps.url())) return c.text('form refused: it did not come from this dashboard (CSRF check failed)', 403);
      c.set('form', form);
    }
    return next();
  });

  ui.post(`${UI_PREFIX}/logout`, (c) => {
    sessions.delete(c.get('session').id);
    clearSessionCookie(c);
    return c.redirect(`${UI_PREFIX}/login`, 303);
  });

  registerPageRoutes(ui, deps, api);
  // Registered last: only paths no page matched.
  ui.get(`${UI_PREFIX}/*`, (c) => c.html(page('Not found', html`<h1>Not found</h1><p><a href="${UI_PREFIX}/apps">Back to the apps</a></p>`, { csrf: c.get('session').csrf }), 404));
}
