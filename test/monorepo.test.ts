// Monorepos, end to end: two apps built from the subdirectories of one repository (`--root-dir`);
// a push whose changed files (from the GitHub payload) touch only web/ deploys only the web app,
// while the api app answers 2xx `skipped` (no_watched_change) and creates no deployment. A push
// whose payload lists no files (Gitea, Bitbucket) goes to the agent, which compares the fetched
// commit with the live release's (git diff) and ends the deploy skipped, unbuilt, when no watched
// file changed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import type { AppDetails, DeploymentDetails, DeploymentLogs } from '../shared/api.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { delivery, hmac, post } from './helpers/push-delivery.js';
import { makeTmpDir } from './helpers/tmp.js';
import { Stack } from './helpers/stack.js';

const WEB = `web${process.pid}`;
const API = `api${process.pid}`;
const domain = (app: string) => `${app}.mono.test`;
const dockerfile = 'FROM berth-test/busybox:latest\nCOPY . /www\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n';

/** A GitHub push delivery listing the files its commit changed, signed with the app's push secret. */
function githubPush(secret: string, after: string, modified: string[]) {
  const commit = { id: after, message: 'change', timestamp: new Date().toISOString(), added: [], removed: [], modified };
  const body = Buffer.from(JSON.stringify({ ref: 'refs/heads/main', before: 'a'.repeat(40), after, commits: [commit], head_commit: commit }));
  const headers = {
    'content-type': 'application/json',
    'x-github-event': 'push',
    'x-github-delivery': randomUUID(),
    'x-hub-signature-256': `sha256=${hmac('sha256', secret, body)}`,
  };
  return { headers, body };
}

describe('monorepos: --root-dir and --watch', () => {
  let stack: Stack;
  let repo: TestRepo;
  const apps = new Map<string, AppDetails>();
  const served = async (app: string) => (await httpGet(stack.httpPort, domain(app), '/')).body;
  const deployments = (app: string) => berthJson<Array<{ id: string; status: string }>>(['deployments', app], stack.env);

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('mono');
    stack.apps.add(WEB).add(API);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ 'web/Dockerfile': dockerfile, 'web/index.html': 'web v1', 'api/Dockerfile': dockerfile, 'api/index.html': 'api v1', 'README.md': 'both\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
  });

  after(async () => {
    await stack?.destroy();
  });

  it('app create takes --root-dir and --watch, validated; app show prints them', async () => {
    for (const [app, dir, globs] of [[WEB, 'web', ['web/**']], [API, 'api/', ['api/**', 'shared/**']]] as const) {
      const created = await berthJson<AppDetails>(['app', 'create', app, '--repo', repo.url, '--server', stack.serverName, '--root-dir', dir, '--watch', ...globs], stack.env);
      assert.deepEqual([created.rootDir, created.watch], [dir.replace(/\/$/, ''), [...globs]]);
      await berthJson(['domain', 'add', app, domain(app)], stack.env);
      apps.set(app, await berthJson<AppDetails>(['app', 'show', app], stack.env));
    }
    const shown = await berth(['app', 'show', API], stack.env);
    assert.match(shown.stdout, /root directory\s+api\n/);
    assert.match(shown.stdout, /watch\s+api\/\*\* shared\/\*\*\n/);

    const bad = await berth(['app', 'create', 'escape', '--repo', repo.url, '--server', stack.serverName, '--root-dir', '../etc'], stack.env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /root directory.*must stay inside the repository/);
    const glob = await berth(['app', 'create', 'badglob', '--repo', repo.url, '--server', stack.serverName, '--watch', 'a b'], stack.env);
    assert.notEqual(glob.code, 0);
    assert.match(glob.stderr, /watch pattern.*must be a path glob/);
  });

  it('each app builds from its own subdirectory', async () => {
    for (const app of [WEB, API]) {
      const res = await berth(['deploy', app, '--wait'], stack.env);
      assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /building from the repository's subdirectory (web|api)/);
    }
    assert.equal(await served(WEB), 'web v1');
    assert.equal(await served(API), 'api v1');
  });

  it('a push touching only web/ deploys the web app; the api app answers skipped and deploys nothing', async () => {
    const sha = repo.commit({ 'web/index.html': 'web v2' });
    const apiBefore = (await deployments(API)).length;

    const api = await post(apps.get(API)!.webhooks.push!, githubPush(apps.get(API)!.webhookSecrets.push, sha, ['web/index.html']));
    assert.equal(api.status, 200, JSON.stringify(api.body));
    assert.equal(api.body.deployed, false);
    assert.equal(api.body.skipped, true);
    assert.equal(api.body.reason, 'no_watched_change');
    assert.match(api.body.message, /none matching the app's watch patterns \(api\/\*\*, shared\/\*\*\)/);

    const web = await post(apps.get(WEB)!.webhooks.push!, githubPush(apps.get(WEB)!.webhookSecrets.push, sha, ['web/index.html']));
    assert.equal(web.status, 202, JSON.stringify(web.body));
    assert.match(web.body.message, /web\/index\.html matches the watch patterns/);
    await eventually(() => served(WEB).catch(() => ''), (b) => b === 'web v2', 60_000);

    assert.equal((await deployments(API)).length, apiBefore, 'no deployment of the api app');
    assert.equal(await served(API), 'api v1');
  });

  it('a push whose payload lists no files: the agent compares with the live commit and skips, unbuilt, when no watched file changed', async () => {
    const api = apps.get(API)!;
    const apiGet = async <T>(path: string) => (await (await fetch(stack.cpUrl + path, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as T;
    const ended = (id: string) => eventually(() => apiGet<DeploymentDetails>(`/api/deployments/${id}`), (d) => ['done', 'failed', 'cancelled', 'superseded'].includes(d.status), 90_000);
    const giteaPush = async (sha: string) => {
      const res = await post(api.webhooks.push!, delivery('gitea', api.webhookSecrets.push, { ref: 'refs/heads/main', after: sha }));
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.match(res.body.message, /the payload does not list the changed files/);
      return res.body.deployment.id as string;
    };
    const liveCommit = (await apiGet<AppDetails>(`/api/apps/${API}`)).live?.commit ?? '';

    // Only the README (and, from the test before, web/) changed since the api app's live commit.
    const skipped = await ended(await giteaPush(repo.commit({ 'README.md': 'docs only\n' }, 'docs: readme')));
    assert.equal(skipped.status, 'cancelled', skipped.reason ?? '');
    assert.equal(
      skipped.reason,
      `skipped: 2 files changed since the live commit ${liveCommit.slice(0, 12)} (release ${(await apiGet<AppDetails>(`/api/apps/${API}`)).live?.id}), none matching the app's watch patterns (api/**, shared/**); nothing was built`,
    );
    assert.deepEqual(skipped.phases.map((p) => p.status), ['queued', 'fetching', 'cancelled'], 'ended at fetching, never built');
    assert.equal(skipped.commitMessage, 'docs: readme');
    assert.equal(await served(API), 'api v1');

    // A file under shared/ changed: the same kind of push deploys.
    const deployed = await ended(await giteaPush(repo.commit({ 'shared/lib.txt': 'lib\n', 'api/index.html': 'api v2' }, 'api: v2')));
    assert.equal(deployed.status, 'done', deployed.reason ?? stack.tail('agent.log'));
    const log = (await apiGet<DeploymentLogs>(`/api/deployments/${deployed.id}/logs`)).lines.map((l) => l.text).join('\n');
    assert.match(log, new RegExp(`api/index\\.html changed since the live commit ${liveCommit.slice(0, 12)} .*and matches the watch patterns`));
    assert.equal(await served(API), 'api v2');
  });
});

describe('watch patterns against git diff (a real Git repository, no Docker)', () => {
  const root = makeTmpDir('berth-mono-diff-');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('lists renames as both paths; deploys when the live commit is unknown or missing from the cache', async () => {
    const { changedBetween, skipUnlessWatchedChange } = await import('../agent/deploy/commit-info.js');
    const repo = new TestRepo(join(root, 'repo'));
    const a = repo.commit({ 'api/a.txt': 'a', 'web/w.txt': 'w' });
    const b = repo.commit({ 'api/a.txt': null, 'api/moved.txt': 'a', 'docs/x.md': 'x' });
    assert.deepEqual(await changedBetween(repo.bare, a, b), ['api/a.txt', 'api/moved.txt', 'docs/x.md']);
    assert.equal(await changedBetween(repo.bare, 'f'.repeat(40), b), null, 'a commit the cache does not have');
    const lines: string[] = [];
    const check = (live: { commit: string | null; deploymentId: string } | null, globs = ['web/**']) =>
      skipUnlessWatchedChange({ cacheDir: repo.bare, commit: b, globs, live, log: (l) => lines.push(l) });
    await assert.rejects(check({ commit: a, deploymentId: 'dep1' }), { name: 'DeploySkipped', message: /^skipped: 3 files changed since the live commit/ });
    await check({ commit: a, deploymentId: 'dep1' }, ['docs/*.md']);
    assert.match(lines.pop()!, /docs\/x\.md changed since the live commit/);
    await check(null);
    assert.match(lines.pop()!, /no live release to compare with: deploying/);
    await check({ commit: 'f'.repeat(40), deploymentId: 'dep0' });
    assert.match(lines.pop()!, /could not tell which files changed since the live commit ffffffffffff \(release dep0\): deploying/);
  });
});

describe('watch globs and changed files (no Docker)', () => {
  it('globs: * within a directory, ** across them, ? one character', async () => {
    const { firstWatched, globRegExp } = await import('../shared/monorepo.js');
    assert.ok(globRegExp('api/**').test('api/src/x.ts'));
    assert.ok(!globRegExp('api/**').test('apiary/x'));
    assert.ok(globRegExp('*.md').test('README.md') && !globRegExp('*.md').test('docs/a.md'));
    assert.ok(globRegExp('**/*.md').test('docs/a.md') && globRegExp('**/*.md').test('a.md'));
    assert.ok(globRegExp('v?.txt').test('v1.txt') && !globRegExp('v?.txt').test('v10.txt'));
    assert.ok(globRegExp('a.b').test('a.b') && !globRegExp('a.b').test('axb'), 'a dot is a dot');
    assert.equal(firstWatched(['README.md', 'web/x'], ['api/**', 'web/**']), 'web/x');
    assert.equal(firstWatched(['README.md'], ['api/**']), null);
  });

  it('changed files come from GitHub and GitLab payloads; an incomplete list means "unknown"', async () => {
    const { changedFiles } = await import('../control-plane/webhooks/watch.js');
    const h = () => 'application/json';
    const body = (o: unknown) => Buffer.from(JSON.stringify(o));
    const c = (m: string[]) => ({ added: [], removed: [], modified: m });
    assert.deepEqual(changedFiles('github', h, body({ commits: [c(['a']), c(['b', 'a'])] })), ['a', 'b']);
    assert.equal(changedFiles('github', h, body({ commits: Array.from({ length: 20 }, () => c(['a'])) })), null, 'GitHub cuts the list at 20 commits');
    assert.equal(changedFiles('gitlab', h, body({ total_commits_count: 30, commits: [c(['a'])] })), null);
    assert.equal(changedFiles('github', h, body({ commits: [{ id: 'x' }] })), null, 'a commit without file lists');
    assert.equal(changedFiles('github', h, body({ commits: [] })), null);
    assert.equal(changedFiles('bitbucket', h, body({})), null);
  });
});
