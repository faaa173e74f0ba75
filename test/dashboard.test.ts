// The web dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core)
// against a real control plane on loopback, with a `ws` client playing the agent: sign-in, cookie
// flags, CSRF and CSP, creating an app, masked env values, a deploy clicked in the page whose log
// streams in live, a failed deploy, a rollback, and hostile strings shown as text.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { Hono } from 'hono';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { setSessionCookie } from '../control-plane/dashboard/guard.js';
import { SessionStore } from '../control-plane/dashboard/session.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { makeTmpDir } from './helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const CHROMIUM = process.env.BERTH_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const HOSTILE_HOST = '<script>window.__pwned=1</script>evil-host';
const HOSTILE_LOG = '<img src=x onerror="window.__pwned=2">build step';
const SECRET_VALUE = 'hunter2-very-secret-value';
const SHA = (c: string) => c.repeat(40);

describe('dashboard in a real browser', () => {
  let cp: RunningControlPlane;
  let agent: FakeAgent;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Errors thrown by the dashboard's script in any page (asserted empty at the end). */
  const scriptErrors: string[] = [];
  const root = makeTmpDir('berth-dashboard-');
  const shots = process.env.BERTH_DASHBOARD_SCREENSHOTS ?? join(root, 'shots');
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);
  const url = (path: string) => cp.url + path;
  /** Log lines for a deployment, as the agent sends them. */
  const logLines = (id: string, from: number, texts: string[]) =>
    agent.send({ type: 'deploy_log', v: 1, deploymentId: id, lines: texts.map((text, i) => ({ seq: from + i, ts: new Date().toISOString(), stream: 'build', text })) });

  before(async () => {
    mkdirSync(shots, { recursive: true });
    cp = await startControlPlane({ dataDir: join(root, 'data'), listen: '127.0.0.1:0', logger });
    const server = (await api('POST', '/api/servers', { name: 'alpha' })).body;
    const joined = await fetch(url('/api/agent/join'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    const { credential } = (await joined.json()) as { credential: string };
    // The agent reports a hostile hostname: the servers page must show it as text.
    agent = await FakeAgent.connect(cp.url, credential);
    agent.send({ type: 'hello', v: 1, agentVersion: '0.1.0-test', hostname: HOSTILE_HOST });
    await agent.next('welcome');
    await agent.next('desired_state');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(8000);
    page.on('pageerror', (err) => scriptErrors.push(String(err)));
  });
  after(async () => {
    await browser?.close();
    agent?.close();
    await cp?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('refuses a wrong admin token with a clear message, then signs in with the right one', async () => {
    const first = await page.goto(url('/ui/apps'));
    assert.match(page.url(), /\/ui\/login$/, 'no session: the sign-in page');
    assert.equal(first?.status(), 200);
    await page.getByLabel('Admin token').fill('not-the-token');
    const [wrong] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/ui/login') && r.request().method() === 'POST'), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(wrong.status(), 401);
    assert.match(await page.getByRole('alert').innerText(), /admin token is not right/);
    assert.deepEqual(await context.cookies(), [], 'no session cookie for a wrong token');

    await page.getByLabel('Admin token').fill(cp.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/ui\/apps$/);
    const [cookie, ...others] = await context.cookies();
    assert.equal(others.length, 0);
    assert.equal(cookie!.name, 'berth_session');
    assert.equal(cookie!.httpOnly, true);
    assert.equal(cookie!.sameSite, 'Strict');
    assert.equal(cookie!.secure, false, 'plain HTTP on loopback: Secure only over HTTPS');
    assert.ok(cookie!.expires > Date.now() / 1000 && cookie!.expires < Date.now() / 1000 + 13 * 3600, 'the session expires');
    assert.ok(!(await page.content()).includes(cp.adminToken), 'the token is never echoed into a page');
  });

  it('marks the session cookie Secure when the control plane is reached over HTTPS', async () => {
    const app = new Hono();
    app.get('/ui/x', (c) => {
      setSessionCookie(c, new SessionStore().create(), 'https://cp.example.com');
      return c.text('ok');
    });
    const setCookie = (await app.request('http://127.0.0.1/ui/x')).headers.get('set-cookie') ?? '';
    assert.match(setCookie, /; Secure/);
    assert.match(setCookie, /; HttpOnly/);
    assert.match(setCookie, /; SameSite=Strict/);
  });

  it('slows down repeated wrong tokens', async () => {
    const attempt = async () => {
      const t0 = Date.now();
      const res = await fetch(url('/ui/login'), { method: 'POST', body: new URLSearchParams({ token: 'guess' }), redirect: 'manual' });
      assert.equal(res.status, 401);
      return Date.now() - t0;
    };
    for (let i = 0; i < 4; i++) await attempt(); // the browser's wrong try counted as the first
    assert.ok((await attempt()) >= 900, 'the sixth wrong token in a row waits about a second');
  });

  it('sends CSP without inline scripts and refuses requests without a session or from another origin', async () => {
    const res = await page.goto(url('/ui/apps'));
    const csp = res!.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    const scripts = await page.$$eval('script', (s) => s.map((e) => ({ src: e.getAttribute('src'), text: e.textContent ?? '' })));
    assert.ok(scripts.length > 0 && scripts.every((s) => s.src && s.text.trim() === ''), JSON.stringify(scripts));

    const missing = await page.goto(url('/ui/no-such-page'));
    assert.equal(missing?.status(), 404);
    assert.match(await page.locator('h1').innerText(), /Not found/);

    const noCookie = await fetch(url('/ui/apps'), { redirect: 'manual' });
    assert.equal(noCookie.status, 303);
    assert.equal(noCookie.headers.get('location'), '/ui/login');

    const session = (await context.cookies())[0]!;
    const cookie = `${session.name}=${session.value}`;
    const csrf = await page.locator('input[name=_csrf]').first().inputValue();
    const form = (extra: Record<string, string>) => new URLSearchParams({ name: 'evil', repo: 'https://example.com/x.git', server: 'alpha', ...extra });
    const foreign = await fetch(url('/ui/apps'), { method: 'POST', headers: { cookie, origin: 'http://attacker.example' }, body: form({ _csrf: csrf }), redirect: 'manual' });
    assert.equal(foreign.status, 403, 'a cross-origin POST is refused even with the cookie and token');
    const tokenless = await fetch(url('/ui/apps'), { method: 'POST', headers: { cookie, origin: new URL(cp.url).origin }, body: form({}), redirect: 'manual' });
    assert.equal(tokenless.status, 403, 'a POST without the CSRF token is refused');
    assert.equal((await api('GET', '/api/apps/evil')).status, 404, 'nothing was created');
  });

  it('creates an app from the form and lists it', async () => {
    await page.goto(url('/ui/apps'));
    await page.getByLabel('Name').fill('shop');
    await page.getByLabel('Git repository URL').fill('https://example.com/shop.git');
    await page.getByLabel('Server').selectOption('alpha');
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.waitForURL(/\/ui\/apps\/shop\?done=created$/);
    assert.equal((await api('GET', '/api/apps/shop')).body.repo, 'https://example.com/shop.git');
    await agent.next('desired_state');
    await page.goto(url('/ui/apps'));
    const row = page.locator('tr', { hasText: 'shop' });
    assert.match(await row.innerText(), /alpha/);
    assert.match(await row.innerText(), /new/);
  });

  it('keeps env values masked in every page until revealed', async () => {
    await page.goto(url('/ui/apps/shop'));
    await page.getByLabel('Key').fill('API_SECRET');
    await page.getByLabel('Value').fill(SECRET_VALUE);
    await page.getByRole('button', { name: 'Set' }).click();
    await page.waitForURL(/done=env/);
    assert.match(await page.getByRole('status').innerText(), /next deploy/);
    assert.equal((await api('GET', '/api/apps/shop/env?reveal=1')).body[0].value, SECRET_VALUE);
    for (const path of ['/ui/apps/shop', '/ui/apps', '/ui/servers']) {
      await page.goto(url(path));
      assert.ok(!(await page.content()).includes(SECRET_VALUE), `${path} does not carry the value`);
    }
    await page.goto(url('/ui/apps/shop'));
    await page.getByRole('link', { name: 'Reveal values' }).click();
    await page.waitForURL(/reveal=env/);
    assert.ok((await page.content()).includes(SECRET_VALUE), 'revealed on demand');
    const oldSecret = (await api('GET', '/api/apps/shop')).body.webhookSecrets.push as string;
    assert.ok(!(await page.content()).includes(oldSecret), 'webhook secrets stay hidden until asked');
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Rotate secrets' }).click();
    await page.waitForURL(/reveal=secrets/);
    const newSecret = (await api('GET', '/api/apps/shop')).body.webhookSecrets.push as string;
    assert.notEqual(newSecret, oldSecret);
    assert.ok((await page.content()).includes(newSecret), 'the new secret is shown right after rotating');
  });

  it('deploys from the button; the log streams in live and "done" appears without a reload', async () => {
    await page.goto(url('/ui/apps/shop'));
    await page.getByRole('button', { name: 'Deploy' }).click();
    const order = await agent.next('deploy');
    await page.waitForURL(new RegExp(`deployment=${order.deploymentId}`));
    await page.evaluate(() => ((window as any).__samePage = true));
    agent.progress(order.deploymentId, 'fetching');
    logLines(order.deploymentId, 0, ['Cloning https://example.com/shop.git', HOSTILE_LOG]);
    const log = page.getByRole('log');
    await log.getByText('Cloning https://example.com/shop.git').waitFor({ timeout: 5000 });
    agent.progress(order.deploymentId, 'building', { commit: SHA('a') });
    logLines(order.deploymentId, 2, ['Step 1/3 : FROM busybox']);
    await log.getByText('Step 1/3').waitFor({ timeout: 5000 });
    await page.screenshot({ path: join(shots, 'app-deploying.png'), fullPage: true });
    for (const s of ['starting', 'health_checking', 'switching', 'done']) agent.progress(order.deploymentId, s, { commit: SHA('a') });
    const box = page.locator(`[data-deployment="${order.deploymentId}"]`);
    await page.waitForFunction((id) => document.querySelector(`[data-deployment="${id}"]`)?.getAttribute('data-ended') === 'true', order.deploymentId, { timeout: 5000 });
    assert.equal(await box.getAttribute('data-live-status'), 'done');
    assert.equal(await box.locator('[data-status]').first().innerText(), 'done');
    assert.equal(await page.locator(`[data-dep-row="${order.deploymentId}"] [data-status]`).innerText(), 'done', 'the history row follows too');
    assert.match(await box.locator('[data-phases]').innerText(), /fetching[\s\S]*building[\s\S]*switching[\s\S]*done/);
    assert.equal(await page.evaluate(() => (window as any).__samePage), true, 'no reload happened');
    assert.ok((await log.innerText()).includes(HOSTILE_LOG), 'a hostile log line is shown as text');
    assert.equal(await page.evaluate(() => (window as any).__pwned), undefined);
  });

  it('shows a failed deploy as failed, with its reason, never as done — live on the apps list too', async () => {
    await page.goto(url('/ui/apps/shop'));
    await page.getByRole('button', { name: 'Deploy' }).click();
    const order = await agent.next('deploy');
    await page.waitForURL(new RegExp(`deployment=${order.deploymentId}`));
    await page.goto(url('/ui/apps'));
    const badge = page.locator('tr', { hasText: 'shop' }).locator('[data-status]');
    assert.equal(await badge.innerText(), 'deploying');
    agent.progress(order.deploymentId, 'building', { commit: SHA('b') });
    agent.progress(order.deploymentId, 'failed', { commit: SHA('b'), reason: 'build failed: <b>exit 2</b>' });
    await page.waitForFunction(() => document.querySelector('tr[data-app-row]')?.getAttribute('data-ended') === 'true', undefined, { timeout: 5000 });
    assert.equal(await badge.innerText(), 'failed', 'the list follows the deploy without a reload');
    await page.screenshot({ path: join(shots, 'apps.png'), fullPage: true });
    await page.goto(url(`/ui/apps/shop?deployment=${order.deploymentId}`));
    const box = page.locator(`[data-deployment="${order.deploymentId}"]`);
    assert.equal(await box.locator('[data-status]').first().innerText(), 'failed');
    assert.equal(await box.locator('[data-reason]').innerText(), 'build failed: <b>exit 2</b>');
    assert.equal(await page.locator('h1 [data-status]').innerText(), 'failed', 'the app is shown failed, not serving');
    assert.equal(await page.locator('[data-dep-row] [data-status]', { hasText: 'done' }).count(), 1, 'only the first deploy is done');
  });

  it('rolls back from the page to a chosen earlier release', async () => {
    // A second good release, so there is an earlier one (SHA a) to go back to.
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    for (const s of ['fetching', 'building', 'starting', 'health_checking', 'switching', 'done']) agent.progress(d.id, s, { commit: SHA('c') });
    await agent.sync();
    await page.goto(url('/ui/apps/shop'));
    const options = await page.getByLabel('Previous good release').locator('option').allInnerTexts();
    assert.equal(options.length, 1);
    assert.match(options[0]!, /aaaaaaa/);
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Rollback' }).click();
    const order = await agent.next('deploy');
    assert.equal(order.commit, SHA('a'));
    assert.ok(order.rollbackOf, 'the order names the release to bring back');
    await page.waitForURL(new RegExp(`deployment=${order.deploymentId}`));
  });

  it('shows processes from the agent report, and the servers page with a hostile hostname as text', async () => {
    const web = { app: 'shop', process: 'web', deploymentId: 'dep00000001', state: 'running' };
    agent.send({ type: 'observed_state', v: 1, specRevision: null, containers: [web, web, { ...web, process: 'worker', state: 'restarting' }] });
    await agent.sync();
    await page.goto(url('/ui/apps/shop'));
    assert.match(await page.locator('tr', { hasText: 'web' }).first().innerText(), /web\s+2\s+running/);
    assert.match(await page.locator('tr', { hasText: 'worker' }).first().innerText(), /0\/1 running/);
    await page.goto(url('/ui/servers'));
    const row = page.locator('tr', { hasText: 'alpha' });
    assert.match(await row.innerText(), /connected/);
    assert.ok((await row.innerText()).includes(HOSTILE_HOST), 'shown literally');
    assert.equal(await page.evaluate(() => (window as any).__pwned), undefined, 'and never run');
    await page.screenshot({ path: join(shots, 'servers.png'), fullPage: true });
  });

  it('follows the runtime log of a process live', async () => {
    await page.goto(url('/ui/apps/shop/logs?process=web'));
    const req = await agent.next('logs_request');
    assert.deepEqual({ app: req.app, process: req.process, follow: req.follow }, { app: 'shop', process: 'web', follow: true });
    const line = (text: string) => ({ process: 'web', replica: 1, container: 'shop-web-1', stream: 'stdout', text });
    agent.send({ type: 'logs_data', v: 1, requestId: req.requestId, lines: [line('GET / 200'), line('<script>window.__pwned=3</script>')] });
    const log = page.getByRole('log');
    await log.getByText('[web.1] GET / 200').waitFor({ timeout: 5000 });
    agent.send({ type: 'logs_data', v: 1, requestId: req.requestId, lines: [line('GET /later 200')] });
    await log.getByText('[web.1] GET /later 200').waitFor({ timeout: 5000 });
    assert.ok((await log.innerText()).includes('<script>window.__pwned=3</script>'));
    assert.equal(await page.evaluate(() => (window as any).__pwned), undefined);
    await page.goto(url('/ui/apps'));
    assert.equal((await agent.next('logs_cancel')).requestId, req.requestId, 'leaving the page stops the follow on the agent');
  });

  it('lists cron jobs with their last result, from the agent', async () => {
    const nav = page.goto(url('/ui/apps/shop/cron'));
    const req = await agent.next('cron_request');
    assert.equal(req.action, 'list');
    const lastRun = { id: 'run00000001', app: 'shop', job: 'cleanup', trigger: 'schedule', status: 'failed', scheduledAt: null, startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), exitCode: 3, reason: 'exit code 3', outputTail: [], deploymentId: null };
    agent.send({ type: 'cron_response', v: 1, requestId: req.requestId, ok: true, jobs: [{ app: 'shop', name: 'cleanup', schedule: '*/5 * * * *', command: 'rm -rf /tmp/<b>x</b>', timezone: null, timeoutS: 60, lastRun, running: null, nextRunAt: null }] });
    await nav;
    const row = page.locator('tr', { hasText: 'cleanup' });
    assert.match(await row.innerText(), /failed\s+exit 3/);
    assert.ok((await row.innerText()).includes('rm -rf /tmp/<b>x</b>'));
  });

  it('signs out: the session is gone server-side', async () => {
    const session = (await context.cookies())[0]!;
    await page.goto(url('/ui/apps'));
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/ui\/login$/);
    const replay = await fetch(url('/ui/apps'), { headers: { cookie: `${session.name}=${session.value}` }, redirect: 'manual' });
    assert.equal(replay.status, 303, 'the old cookie no longer works');
    assert.deepEqual(scriptErrors, [], 'the script ran without errors on every page');
  });
});
