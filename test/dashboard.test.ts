// The web dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core).
// The scenarios run against a real installation (the compiled CLI's control plane and agent,
// the Docker engine, a private nginx) with a real app from a Git repository: sign-in, cookie flags,
// CSRF and CSP, creating an app, masked env values, a deploy clicked in the page whose log streams
// in live and whose new version nginx serves, a rollback from the page, app settings and server
// removal. UI details that need an agent to say exact things (a hostile reason, hostname, log line
// or cron command, a process's runtime log being stopped) run against an in-process control plane
// with a `ws` client playing the agent. One browser for the whole file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { Hono } from 'hono';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { setSessionCookie } from '../control-plane/dashboard/guard.js';
import { SessionStore } from '../control-plane/dashboard/session.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import type { DeploymentInfo } from '../shared/api.js';
import { busyboxDockerfile, type DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { makeTmpDir } from './helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const CHROMIUM = process.env.BERTH_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const HOSTILE_HOST = '<script>window.__pwned=1</script>evil-host';
const HOSTILE_LOG = '<img src=x onerror="window.__pwned=2">build step';
const SECRET_VALUE = 'hunter2-very-secret-value';
/** A commit subject as a hostile repository could write it: markup, a terminal escape, a second line. */
const HOSTILE_SUBJECT = '<img src=x onerror="window.__pwned=3">Fix \u001b[31mlogin\r\nform';
/** What the control plane keeps of it: one line of text, control characters gone. */
const CLEAN_SUBJECT = '<img src=x onerror="window.__pwned=3">Fix [31mlogin form';
const SHA = (c: string) => c.repeat(40);

let browser: Browser;
/** Errors thrown by the dashboard's script in any page (asserted empty at the end of each part). */
const scriptErrors: string[] = [];
const shotsRoot = makeTmpDir('berth-dashboard-shots-');
const shots = process.env.BERTH_DASHBOARD_SCREENSHOTS ?? shotsRoot;

before(async () => {
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
after(async () => {
  await browser?.close();
  rmSync(shotsRoot, { recursive: true, force: true });
});

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  page.on('pageerror', (err) => scriptErrors.push(String(err)));
  return { context, page };
}

async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/ui/login`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/ui\/apps$/);
}

/** The followed deployment's box on an app page has ended (its status came live, or was rendered ended). */
async function followedEnded(page: Page, id: string): Promise<string> {
  await page.waitForFunction((d) => ['done', 'failed', 'cancelled', 'superseded'].includes(document.querySelector(`[data-deployment="${d}"]`)?.getAttribute('data-live-status') ?? ''), id, { timeout: 90_000 });
  return (await page.locator(`[data-deployment="${id}"]`).getAttribute('data-live-status')) ?? '';
}

describe('dashboard with a real control plane, agent, Docker and nginx', () => {
  const APP = 'dash-web';
  const DOMAIN = 'dash-web.dashboard.test';
  /** Per run, so no build cache from an earlier run makes a deploy finish before the page follows it. */
  const nonce = randomBytes(4).toString('hex');
  let stack: Stack;
  let repo: TestRepo;
  let context: BrowserContext;
  let page: Page;
  const commits: string[] = [];
  const url = (path: string) => stack.cpUrl + path;
  const served = async () => (await httpGet(stack.httpPort, DOMAIN)).body;
  const apiGet = async <T>(path: string): Promise<T> => (await (await fetch(url(path), { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as T;

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('dashboard');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    // The sleep after COPY keeps each build running for a moment: long enough to watch it live.
    commits.push(repo.commit({ Dockerfile: busyboxDockerfile('RUN echo building-the-image && sleep 1'), 'index.html': `v1 ${nonce}\n` }, 'first version'));
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    ({ context, page } = await newPage());
  });
  after(async () => {
    await context?.close();
    await stack?.destroy();
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

    await page.getByLabel('Admin token').fill(stack.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/ui\/apps$/);
    const [cookie, ...others] = await context.cookies();
    assert.equal(others.length, 0);
    assert.equal(cookie!.name, 'berth_session');
    assert.equal(cookie!.httpOnly, true);
    assert.equal(cookie!.sameSite, 'Strict');
    assert.equal(cookie!.secure, false, 'plain HTTP on loopback: Secure only over HTTPS');
    assert.ok(cookie!.expires > Date.now() / 1000 && cookie!.expires < Date.now() / 1000 + 13 * 3600, 'the session expires');
    assert.ok(!(await page.content()).includes(stack.adminToken), 'the token is never echoed into a page');
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
    const noCookiePage = await fetch(url('/ui/apps'));
    assert.match(await noCookiePage.text(), /<label>Admin token/, 'a request without the cookie gets the sign-in page');

    const session = (await context.cookies())[0]!;
    const cookie = `${session.name}=${session.value}`;
    const csrf = await page.locator('input[name=_csrf]').first().inputValue();
    const form = (extra: Record<string, string>) => new URLSearchParams({ name: 'evil', repo: 'https://example.com/x.git', server: stack.serverName, ...extra });
    const foreign = await fetch(url('/ui/apps'), { method: 'POST', headers: { cookie, origin: 'http://attacker.example' }, body: form({ _csrf: csrf }), redirect: 'manual' });
    assert.equal(foreign.status, 403, 'a cross-origin POST is refused even with the cookie and token');
    const tokenless = await fetch(url('/ui/apps'), { method: 'POST', headers: { cookie, origin: new URL(stack.cpUrl).origin }, body: form({}), redirect: 'manual' });
    assert.equal(tokenless.status, 403, 'a POST without the CSRF token is refused');
    const unsigned = await fetch(url('/ui/apps'), { method: 'POST', headers: { origin: new URL(stack.cpUrl).origin }, body: form({ _csrf: csrf }), redirect: 'manual' });
    assert.equal(unsigned.status, 401, 'a POST without the cookie is refused');
    assert.match(await unsigned.text(), /sign in again/);
    assert.equal((await fetch(url('/api/apps/evil'), { headers: { authorization: `Bearer ${stack.adminToken}` } })).status, 404, 'nothing was created');
  });

  it('creates an app and adds a domain from the forms; the apps list shows it as new', async () => {
    await page.goto(url('/ui/apps'));
    await page.getByLabel('Name').fill(APP);
    await page.getByLabel('Git repository URL').fill(repo.url);
    await page.getByLabel('Server').selectOption(stack.serverName);
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.waitForURL(new RegExp(`/ui/apps/${APP}\\?done=created$`));
    await page.getByLabel('Domain', { exact: true }).fill(DOMAIN);
    await page.getByRole('button', { name: 'Add domain' }).click();
    await page.waitForURL(/done=domain/);
    const app = await apiGet<{ repo: string; server: string; domains: string[] }>(`/api/apps/${APP}`);
    assert.deepEqual({ repo: app.repo, server: app.server, domains: app.domains }, { repo: repo.url, server: stack.serverName, domains: [DOMAIN] });
    await page.goto(url('/ui/apps'));
    const row = page.locator('tr', { hasText: APP });
    assert.match(await row.innerText(), new RegExp(`${stack.serverName}[\\s\\S]*${DOMAIN.replace(/\./g, '\\.')}[\\s\\S]*new`));
  });

  it('keeps env values masked in every page until revealed', async () => {
    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByLabel('Key').fill('API_SECRET');
    await page.getByLabel('Value').fill(SECRET_VALUE);
    await page.getByRole('button', { name: 'Set', exact: true }).click();
    await page.waitForURL(/done=env/);
    assert.match(await page.getByRole('status').innerText(), /next deploy/);
    const env = await apiGet<Array<{ key: string; value: string }>>(`/api/apps/${APP}/env?reveal=1`);
    assert.deepEqual(env.map((v) => [v.key, v.value]), [['API_SECRET', SECRET_VALUE]], 'stored');
    for (const path of [`/ui/apps/${APP}`, '/ui/apps', '/ui/servers', `/ui/apps/${APP}/cron`, `/ui/apps/${APP}/logs`]) {
      await page.goto(url(path));
      assert.ok(!(await page.content()).includes(SECRET_VALUE), `${path} does not carry the value`);
    }
    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByRole('link', { name: 'Reveal values' }).click();
    await page.waitForURL(/reveal=env/);
    assert.ok((await page.content()).includes(SECRET_VALUE), 'revealed on demand');
    const oldSecret = (await apiGet<{ webhookSecrets: { push: string } }>(`/api/apps/${APP}`)).webhookSecrets.push;
    assert.ok(!(await page.content()).includes(oldSecret), 'webhook secrets stay hidden until asked');
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Rotate secrets' }).click();
    await page.waitForURL(/reveal=secrets/);
    const newSecret = (await apiGet<{ webhookSecrets: { push: string } }>(`/api/apps/${APP}`)).webhookSecrets.push;
    assert.notEqual(newSecret, oldSecret);
    assert.ok((await page.content()).includes(newSecret), 'the new secret is shown right after rotating');
    await page.goto(url(`/ui/apps/${APP}`));
    assert.ok(!(await page.content()).includes(SECRET_VALUE) && !(await page.content()).includes(newSecret), 'hidden again on the next view');
  });

  it('deploys from the button: the log streams in live, "done" appears without a reload, nginx serves the app', async () => {
    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.waitForURL(/[?&]deployment=/);
    const id = new URL(page.url()).searchParams.get('deployment')!;
    await page.evaluate(() => ((window as any).__samePage = true));
    const box = page.locator(`[data-deployment="${id}"]`);
    assert.notEqual(await box.getAttribute('data-events'), null, 'the page follows the running deploy');
    const log = page.getByRole('log');
    // The first log line within a few seconds of the click (a bound for the wait, not a benchmark).
    await page.waitForFunction(() => (document.querySelector('[role="log"]')?.textContent ?? '').trim().length > 0, undefined, { timeout: 10_000 });
    await log.getByText('building-the-image').first().waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(shots, 'app-deploying.png'), fullPage: true });
    await page.waitForFunction((d) => document.querySelector(`[data-deployment="${d}"]`)?.getAttribute('data-ended') === 'true', id, { timeout: 90_000 });
    assert.equal(await box.getAttribute('data-live-status'), 'done', `deploy failed:\n${await log.innerText()}\n${stack.tail('agent.log')}`);
    assert.equal(await box.locator('[data-status]').first().innerText(), 'done');
    assert.equal(await page.locator(`[data-dep-row="${id}"] [data-status]`).innerText(), 'done', 'the history row follows too');
    assert.match(await box.locator('[data-phases]').innerText(), /building[\s\S]*done/);
    assert.equal(await page.evaluate(() => (window as any).__samePage), true, 'no reload happened');
    assert.equal(await served(), `v1 ${nonce}\n`, 'nginx serves the deployed version');
    const [latest] = await apiGet<DeploymentInfo[]>(`/api/apps/${APP}/deployments`);
    assert.deepEqual(
      { id: latest?.id, status: latest?.status, commit: latest?.commit, trigger: latest?.trigger, commitMessage: latest?.commitMessage, repoScale: latest?.repoScale },
      { id, status: 'done', commit: commits[0], trigger: 'manual', commitMessage: 'first version', repoScale: { web: 1 } },
      'the agent reports the commit subject and the repo scale',
    );
    assert.match(await log.innerText(), new RegExp(`deploying commit ${commits[0]} "first version"`));
  });

  it('deploys a new commit; the apps list shows the app serving with its commit', async () => {
    commits.push(repo.commit({ 'index.html': `v2 ${nonce}\n` }, 'second version\n\nThe body is not shown.'));
    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.waitForURL(/[?&]deployment=/);
    const id = new URL(page.url()).searchParams.get('deployment')!;
    assert.equal(await followedEnded(page, id), 'done', stack.tail('agent.log'));
    assert.equal(await served(), `v2 ${nonce}\n`);
    await page.goto(url('/ui/apps'));
    const row = page.locator('tr', { hasText: APP });
    assert.equal(await row.locator('[data-status]').innerText(), 'serving');
    assert.match(await row.innerText(), new RegExp(commits[1]!.slice(0, 7)), 'the short SHA of the live commit');
    assert.equal(await row.locator('[data-live-commit]').innerText(), `${commits[1]!.slice(0, 7)} second version`, 'and its subject line');
    await page.screenshot({ path: join(shots, 'apps.png'), fullPage: true });
    await page.goto(url(`/ui/apps/${APP}`));
    // The processes as the agent observes them (it reports every reconcile pass and change).
    const health = async () => {
      await page.reload();
      return page.locator('tr[data-process="web"]:not([data-other-release]) [data-status]').innerText();
    };
    assert.equal(await eventually(health, (h) => h === 'healthy', 30_000, 500), 'healthy', stack.tail('agent.log'));
    assert.equal(await page.locator('tr[data-process="web"]:not([data-other-release]) [data-scale-of]').innerText(), "1 the repo's scale:");
    assert.equal(await page.locator('tr[data-process="web"]:not([data-other-release]) [data-running]').innerText(), '1/1 running');
    const shown = await berth(['app', 'show', APP], stack.env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`live commit\\s+${commits[1]!.slice(0, 12)} "second version" \\(deployment ${id}\\)\\n`));
    assert.match(shown.stdout, /scale\s+the repo's \(scale: in berth\.yml\): web=1\n/);
    const listed = await berth(['deployments', APP], stack.env);
    assert.match(listed.stdout, /MESSAGE/);
    assert.match(listed.stdout, new RegExp(`${id}\\s+done\\s+${commits[1]!.slice(0, 12)}\\s+second version\\s+manual`));
  });

  it('rolls back from the page to a chosen earlier release; nginx serves the previous version', async () => {
    await page.goto(url(`/ui/apps/${APP}`));
    const select = page.getByLabel('Previous good release');
    const options = await select.locator('option').allInnerTexts();
    assert.equal(options.length, 1, 'the live release is not offered');
    assert.match(options[0]!, new RegExp(commits[0]!.slice(0, 7)));
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Rollback' }).click();
    await page.waitForURL(/done=rollback/);
    const id = new URL(page.url()).searchParams.get('deployment')!;
    assert.equal(await followedEnded(page, id), 'done', stack.tail('agent.log'));
    assert.equal(await served(), `v1 ${nonce}\n`, 'the previous version is served again');
    const [latest] = await apiGet<DeploymentInfo[]>(`/api/apps/${APP}/deployments`);
    assert.deepEqual(
      { id: latest?.id, trigger: latest?.trigger, commit: latest?.commit, commitMessage: latest?.commitMessage, repoScale: latest?.repoScale },
      { id, trigger: 'rollback', commit: commits[0], commitMessage: 'first version', repoScale: { web: 1 } },
      'a rollback reports its release commit subject (from the Git cache) and repo scale too',
    );
  });

  it('shows the servers page with the connected agent and the free disk of its data location', async () => {
    type Disk = { path: string; freeMb: number; minFreeMb: number };
    const dataDisk = async () => (await apiGet<Array<{ name: string; disk?: Disk[] }>>('/api/servers')).find((s) => s.name === stack.serverName)?.disk?.find((d) => d.path === stack.agentData);
    const before = await dataDisk();
    assert.ok(before, 'GET /api/servers has the free disk the agent reported for its data location');
    assert.equal(before.minFreeMb, 1024, 'with the agent threshold (BERTH_MIN_FREE_DISK_MB default)');
    await page.goto(url('/ui/servers'));
    // The agent reports again after every reconcile pass: the page shows the report of just before or just after.
    const after = await dataDisk();
    const row = page.locator('tr', { hasText: stack.serverName });
    assert.match(await row.innerText(), /connected/);
    assert.match(await row.innerText(), new RegExp(APP));
    const cell = row.locator('[data-disk], [data-disk-low]', { hasText: stack.agentData });
    const shownMb = Number(await cell.locator('data').getAttribute('value'));
    assert.ok([before.freeMb, after?.freeMb].includes(shownMb), `page ${shownMb} MB, API ${before.freeMb} / ${after?.freeMb} MB`);
    const text = await cell.innerText();
    const m = /(\d+(?:\.\d)?) (MB|GB) free on (\S+)/.exec(text);
    assert.ok(m, text);
    assert.equal(m[3], stack.agentData);
    const shownAsMb = Number(m[1]) * (m[2] === 'GB' ? 1024 : 1);
    assert.ok(Math.abs(shownAsMb - shownMb) <= (m[2] === 'GB' ? 52 : 0), `"${text}" says ${shownMb} MB`);
    assert.equal(/Low disk/.test(text), shownMb < 1024, 'below the threshold it says so in words');
    await page.screenshot({ path: join(shots, 'servers.png'), fullPage: true });
  });

  it('changes the repository and branch from the page; the next deploy builds from them', async () => {
    const other = new TestRepo(join(stack.root, 'repo2'), 'release');
    // The subject is the repository's text: markup and a terminal escape end up as one line of text.
    const releaseCommit = other.commit({ Dockerfile: busyboxDockerfile(), 'index.html': `v3 ${nonce}\n` }, 'from the <b>release</b> branch\u001b[2J\n\nbody');
    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByLabel('Branch').fill('a..b');
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Save settings' }).click();
    assert.match(await page.getByRole('alert').innerText(), /invalid branch/, 'a bad branch is refused with the reason');
    assert.equal((await apiGet<{ branch: string }>(`/api/apps/${APP}`)).branch, 'main', 'nothing changed');

    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByLabel('Repository').fill(other.url);
    await page.getByLabel('Branch').fill('release');
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForURL(/done=settings/);
    const shown = await apiGet<{ repo: string; branch: string; server: string }>(`/api/apps/${APP}`);
    assert.deepEqual(shown, { ...shown, repo: other.url, branch: 'release', server: stack.serverName });
    assert.equal(await served(), `v1 ${nonce}\n`, 'nothing is redeployed by a settings change');
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.waitForURL(/[?&]deployment=/);
    const id = new URL(page.url()).searchParams.get('deployment')!;
    assert.equal(await followedEnded(page, id), 'done', stack.tail('agent.log'));
    assert.equal(await served(), `v3 ${nonce}\n`);
    const [latest] = await apiGet<DeploymentInfo[]>(`/api/apps/${APP}/deployments`);
    assert.equal(latest?.commit, releaseCommit);
    const subject = 'from the <b>release</b> branch [2J';
    assert.equal(latest?.commitMessage, subject, 'control characters gone, one line');
    await page.reload();
    assert.equal(await page.locator('[data-live-commit]').innerText(), `${releaseCommit.slice(0, 7)} ${subject}`, 'shown as text');
    assert.equal(await page.locator('main b').count(), 0, 'no markup from the repository');
    const listed = await berth(['deployments', APP, '--limit', '1'], stack.env);
    assert.ok(listed.stdout.includes(subject) && !listed.stdout.includes('\u001b'), listed.stdout);
  });

  it('berth app set: clear errors for bad input, and a branch change from the CLI', async () => {
    const none = await berth(['app', 'set', APP], stack.env);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /nothing to change/);
    const badServer = await berth(['app', 'set', APP, '--server', 'nowhere'], stack.env);
    assert.notEqual(badServer.code, 0);
    assert.match(badServer.stderr, /server "nowhere" does not exist/);
    const patch = (body: unknown) => fetch(url(`/api/apps/${APP}`), { method: 'PATCH', headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const badRepo = await patch({ repo: 'ftp://example.com/x' });
    assert.equal(badRepo.status, 400);
    assert.match(((await badRepo.json()) as { error: string }).error, /invalid repo URL/);
    const unknown = await patch({ name: 'renamed' });
    assert.equal(unknown.status, 400);
    assert.match(((await unknown.json()) as { error: string }).error, /invalid request body/);
    const empty = await patch({});
    assert.equal(empty.status, 400);
    assert.match(((await empty.json()) as { error: string }).error, /nothing to change/);
    const set = await berthJson<{ branch: string; moved?: unknown }>(['app', 'set', APP, '--branch', 'main'], stack.env);
    assert.equal(set.branch, 'main');
    assert.equal((await apiGet<{ branch: string }>(`/api/apps/${APP}`)).branch, 'main');
    assert.equal(set.moved, undefined, 'no move, nothing deployed');
  });

  it('removes a server only once no app lives on it; moving the app away from the page stops it there', async () => {
    assert.equal((await fetch(url('/api/servers'), { method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'spare' }) })).status, 201);
    const refused = await berth(['server', 'rm', stack.serverName], stack.env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`still runs apps \\(${APP}\\)`));
    await page.goto(url('/ui/servers'));
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: `Remove server ${stack.serverName}` }).click();
    assert.match(await page.getByRole('alert').innerText(), /still runs apps/, 'the page says why');

    await page.goto(url(`/ui/apps/${APP}`));
    await page.getByLabel('Run on server').selectOption('spare');
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForURL(/done=moved/);
    const moved = await apiGet<{ server: string }>(`/api/apps/${APP}`);
    assert.equal(moved.server, 'spare');
    const [queued, ...earlier] = await apiGet<DeploymentJson[]>(`/api/apps/${APP}/deployments`);
    const live = earlier.find((d) => d.status === 'done');
    assert.deepEqual({ status: queued?.status, commit: queued?.commit }, { status: 'queued', commit: live?.commit }, 'the live commit waits for the new server');
    // The old server's agent removes the app: nginx there no longer serves it.
    await eventually(async () => (await httpGet(stack.httpPort, DOMAIN)).status, (st) => st === 404, 30_000);

    await page.goto(url('/ui/servers'));
    page.once('dialog', (dlg) => void dlg.accept());
    await page.getByRole('button', { name: `Remove server ${stack.serverName}` }).click();
    await page.waitForURL(/done=server-removed/);
    const servers = await apiGet<Array<{ name: string }>>('/api/servers');
    assert.deepEqual(servers.map((x) => x.name), ['spare']);
    const { credential } = JSON.parse(readFileSync(join(stack.agentData, 'agent.json'), 'utf8')) as { credential: string };
    await assert.rejects(FakeAgent.connect(stack.cpUrl, credential), (err: { status?: number }) => err.status === 401, "the removed server's credential no longer works");
    const spareRm = await fetch(url('/api/servers/spare'), { method: 'DELETE', headers: { authorization: `Bearer ${stack.adminToken}` } });
    assert.equal(spareRm.status, 409);
    assert.match(((await spareRm.json()) as { error: string }).error, new RegExp(`still runs apps \\(${APP}\\)`));
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

describe('dashboard details with a WebSocket client playing the agent', () => {
  let cp: RunningControlPlane;
  let agent: FakeAgent;
  let context: BrowserContext;
  let page: Page;
  /** The deployment the hostile-subject test made live. */
  let firstLive = '';
  const root = makeTmpDir('berth-dashboard-');
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);
  const url = (path: string) => cp.url + path;
  /** Log lines for a deployment, as the agent sends them. */
  const logLines = (id: string, from: number, texts: string[]) =>
    agent.send({ type: 'deploy_log', v: 1, deploymentId: id, lines: texts.map((text, i) => ({ seq: from + i, ts: new Date().toISOString(), stream: 'build', text })) });

  before(async () => {
    cp = await startControlPlane({ dataDir: join(root, 'data'), listen: '127.0.0.1:0', logger });
    const server = (await api('POST', '/api/servers', { name: 'alpha' })).body;
    const joined = await fetch(url('/api/agent/join'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    const { credential } = (await joined.json()) as { credential: string };
    // The agent reports a hostile hostname: the servers page must show it as text.
    agent = await FakeAgent.connect(cp.url, credential);
    agent.send({ type: 'hello', v: 1, agentVersion: '0.1.0-test', hostname: HOSTILE_HOST });
    await agent.next('welcome');
    await agent.next('desired_state');
    await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/shop.git', server: 'alpha' });
    await agent.next('desired_state');
    ({ context, page } = await newPage());
    await signIn(page, cp.url, cp.adminToken);
  });
  after(async () => {
    await context?.close();
    agent?.close();
    await cp?.close();
    rmSync(root, { recursive: true, force: true });
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
    for (let i = 0; i < 4; i++) await attempt();
    assert.ok((await attempt()) >= 900, 'the fifth wrong token in a row waits about a second');
  });

  it('shows a hostile log line as text, and a failed deploy as failed with its reason — live on the apps list too', async () => {
    await page.goto(url('/ui/apps/shop'));
    await page.getByRole('button', { name: 'Deploy' }).click();
    const first = await agent.next('deploy');
    await page.waitForURL(new RegExp(`deployment=${first.deploymentId}`));
    agent.progress(first.deploymentId, 'building', { commit: SHA('a'), commitMessage: HOSTILE_SUBJECT, repoScale: { web: 1, worker: 2 } });
    logLines(first.deploymentId, 0, [HOSTILE_LOG]);
    await page.getByRole('log').getByText('build step').waitFor({ timeout: 5000 });
    for (const s of ['starting', 'health_checking', 'switching', 'done']) agent.progress(first.deploymentId, s, { commit: SHA('a') });
    assert.equal(await followedEnded(page, first.deploymentId), 'done');
    assert.ok((await page.getByRole('log').innerText()).includes(HOSTILE_LOG), 'a hostile log line is shown as text');
    firstLive = first.deploymentId;
    const stored = (await api('GET', `/api/deployments/${first.deploymentId}`)).body;
    assert.deepEqual({ commitMessage: stored.commitMessage, repoScale: stored.repoScale }, { commitMessage: CLEAN_SUBJECT, repoScale: { web: 1, worker: 2 } }, 'kept from the building report');
    await page.reload();
    assert.equal(await page.locator('[data-live-commit]').innerText(), `${SHA('a').slice(0, 7)} ${CLEAN_SUBJECT}`, 'the live commit with its subject, as text');
    assert.equal(await page.locator(`[data-dep-row="${first.deploymentId}"] [data-commit-message]`).innerText(), CLEAN_SUBJECT);
    await page.goto(url('/ui/apps'));
    assert.equal(await page.locator('tr', { hasText: 'shop' }).locator('[data-live-commit]').innerText(), `${SHA('a').slice(0, 7)} ${CLEAN_SUBJECT}`);
    assert.equal(await page.locator('main img').count(), 0, 'no markup from the subject');
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
    await page.goto(url(`/ui/apps/shop?deployment=${order.deploymentId}`));
    const box = page.locator(`[data-deployment="${order.deploymentId}"]`);
    assert.equal(await box.locator('[data-status]').first().innerText(), 'failed');
    assert.equal(await box.locator('[data-reason]').innerText(), 'build failed: <b>exit 2</b>');
    assert.equal(await page.locator('h1 [data-status]').innerText(), 'failed', 'the app is shown failed, not serving');
    assert.equal(await page.locator('[data-dep-row] [data-status]', { hasText: 'done' }).count(), 1, 'only the first deploy is done');
    assert.equal(await page.evaluate(() => (window as any).__pwned), undefined);
  });

  it('shows processes with the scale that applies and their health from the agent report, and the servers page with a hostile hostname as text', async () => {
    // berth scale web=3: a scale deployment of the live release, which the agent makes live.
    const scaled = await api('PUT', '/api/apps/shop/scale', { web: 3 });
    assert.equal(scaled.status, 201, JSON.stringify(scaled.body));
    const order = await agent.next('deploy');
    assert.equal(order.rollbackOf, firstLive);
    for (const s of ['starting', 'health_checking', 'switching', 'done']) agent.progress(order.deploymentId, s, { commit: SHA('a'), commitMessage: 'the same commit', repoScale: { web: 1, worker: 2 } });
    const live = order.deploymentId as string;
    const web = { app: 'shop', process: 'web', deploymentId: live, state: 'running' };
    const worker = { ...web, process: 'worker' };
    const disk = [
      { path: '/var/lib/berth', freeMb: 12_595, minFreeMb: 1024 },
      { path: '/var/lib/docker', freeMb: 300, minFreeMb: 1024 },
    ];
    const old = { ...web, deploymentId: firstLive, state: 'exited' };
    agent.send({ type: 'observed_state', v: 1, specRevision: null, containers: [web, web, web, worker, { ...worker, state: 'restarting' }, old], disk });
    await agent.sync();
    await page.goto(url('/ui/apps/shop'));
    const procRow = (p: string) => page.locator(`tr[data-process="${p}"]:not([data-other-release])`);
    assert.equal(await procRow('web').locator('[data-scale-of]').innerText(), '3 set with berth scale; the repo says 1');
    assert.equal(await procRow('web').locator('[data-running]').innerText(), '3/3 running');
    assert.equal(await procRow('web').locator('[data-status]').innerText(), 'healthy');
    assert.equal(await procRow('worker').locator('[data-scale-of]').innerText(), "2 the repo's scale:");
    assert.equal(await procRow('worker').locator('[data-running]').innerText(), '1/2 running restarting');
    assert.equal(await procRow('worker').locator('[data-status]').innerText(), 'degraded');
    assert.match(await page.locator('tr[data-other-release]').innerText(), new RegExp(`web\\s+—\\s+0/1 running exited\\s+other release\\s+${firstLive}`));
    assert.match(await page.locator('[data-scale]').innerText(), /web=3\. Other processes follow the repository\. The repository says web=1, worker=2\./);
    const details = (await api('GET', '/api/apps/shop')).body;
    assert.deepEqual({ scale: details.scale, live: details.live?.id, message: details.live?.commitMessage }, { scale: { override: { web: 3 }, repo: { web: 1, worker: 2 } }, live, message: 'the same commit' });
    const cliEnv = { BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(root, 'client-config') };
    const shown = await berth(['app', 'show', 'shop'], cliEnv);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /scale\s+web=3 \(set with berth scale; other processes: the repo's\); the repo says web=1, worker=2\n/);
    assert.match(shown.stdout, new RegExp(`live commit\\s+${SHA('a').slice(0, 12)} "the same commit" \\(deployment ${live}\\)\\n`));

    // The worker's containers gone: it is down, the web process still healthy.
    agent.send({ type: 'observed_state', v: 1, specRevision: null, containers: [web, web, web], disk });
    await agent.sync();
    await page.reload();
    assert.equal(await procRow('worker').locator('[data-running]').innerText(), '0/2 running');
    assert.equal(await procRow('worker').locator('[data-status]').innerText(), 'down');
    assert.equal(await procRow('web').locator('[data-status]').innerText(), 'healthy');
    await page.goto(url('/ui/servers'));
    const row = page.locator('tr', { hasText: 'alpha' });
    assert.match(await row.innerText(), /connected/);
    assert.ok((await row.innerText()).includes(HOSTILE_HOST), 'shown literally');
    assert.equal(await row.locator('[data-disk]').innerText(), '12.3 GB free on /var/lib/berth');
    assert.equal(await row.locator('[data-disk-low]').innerText(), 'Low disk: 300 MB free on /var/lib/docker, below the 1.0 GB minimum (deploys are refused)');
    assert.equal(await page.evaluate(() => (window as any).__pwned), undefined, 'and never run');
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
    assert.deepEqual(scriptErrors, [], 'the script ran without errors on every page');
  });

  /** The newest desired state the agent got (each change pushes one); older ones are dropped. */
  async function newestDesiredState(): Promise<Record<string, unknown> | undefined> {
    await agent.sync();
    let state: Record<string, unknown> | undefined;
    for (let i = 0; i < 20; i++) {
      try {
        state = await agent.next('desired_state', 1);
      } catch {
        break;
      }
    }
    return state;
  }

  it('PATCH /api/apps: the deploy key follows the repository; a move waits for a running deploy, then deploys the live commit', async () => {
    const ssh = await api('PATCH', '/api/apps/shop', { repo: 'git@git.example.com:acme/shop.git' });
    assert.equal(ssh.status, 200, JSON.stringify(ssh.body));
    assert.match(ssh.body.deployKey ?? '', /^ssh-ed25519 /, 'an SSH repository gets a deploy key');
    assert.equal((await api('PATCH', '/api/apps/shop', { branch: 'main' })).body.deployKey, ssh.body.deployKey, 'kept while the repository stays SSH');
    const https = await api('PATCH', '/api/apps/shop', { repo: 'https://example.com/shop.git' });
    assert.equal(https.body.deployKey, undefined, 'no key for an HTTPS repository');
    const hosts = await api('PATCH', '/api/apps/shop', { knownHosts: 'git.example.com ssh-ed25519 AAAA' });
    assert.equal(hosts.status, 400);
    assert.match(hosts.body.error, /SSH repositories/);

    assert.ok(JSON.stringify(await newestDesiredState()).includes('"shop"'), 'before the move its server runs it');
    assert.equal((await api('POST', '/api/servers', { name: 'beta' })).status, 201);
    const dep = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    const refused = await api('PATCH', '/api/apps/shop', { server: 'beta' });
    assert.equal(refused.status, 409);
    assert.match(refused.body.error, new RegExp(`deployment ${dep.id} of app "shop" is still running`));
    agent.progress(dep.id, 'failed', { reason: 'stopped by the test' });
    await agent.sync();
    const moved = await api('PATCH', '/api/apps/shop', { server: 'beta' });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    assert.deepEqual(
      { server: moved.body.server, from: moved.body.moved?.from, commit: moved.body.moved?.deployment?.commit, status: moved.body.moved?.deployment?.status },
      { server: 'beta', from: 'alpha', commit: SHA('a'), status: 'queued' },
    );
    const state = await newestDesiredState();
    assert.ok(state && !JSON.stringify(state).includes('"shop"'), 'the old server is told the app is gone');
  });
});
