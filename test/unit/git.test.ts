// agent/build/git.ts against real repositories: a bare "origin" in a temp dir served as file://.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fetchSource, checkoutTo, GitError, redactUrl } from '../../agent/build/git.js';
import { makeTmpDir } from '../helpers/tmp.js';
import { createServer, type AddressInfo } from 'node:net';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@example.com',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@example.com',
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

describe('git: fetchSource / checkoutTo', () => {
  let root: string;
  let origin: string;
  let work: string;
  let url: string;
  const commits: string[] = [];

  function commit(file: string, content: string, message: string): string {
    writeFileSync(join(work, file), content);
    git(work, 'add', '-A');
    git(work, 'commit', '-q', '-m', message);
    git(work, 'push', '-q', 'origin', 'HEAD');
    const sha = git(work, 'rev-parse', 'HEAD');
    commits.push(sha);
    return sha;
  }

  before(() => {
    root = makeTmpDir('git');
    origin = join(root, 'origin.git');
    work = join(root, 'work');
    git(root, 'init', '-q', '--bare', '-b', 'main', origin);
    git(root, 'clone', '-q', origin, work);
    git(work, 'checkout', '-q', '-b', 'main');
    mkdirSync(join(work, 'sub'));
    writeFileSync(join(work, 'sub', 'run.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(join(work, 'sub', 'run.sh'), 0o755);
    commit('app.txt', 'v1\n', 'first');
    commit('app.txt', 'v2\n', 'second');
    url = `file://${origin}`;
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it('fetches the branch head into a new bare cache', async () => {
    const cacheDir = join(root, 'cache-head');
    const lines: string[] = [];
    const { commit: sha } = await fetchSource({ cacheDir, repo: url, branch: 'main', log: (l) => lines.push(l) });
    assert.equal(sha, commits[1]);
    assert.ok(existsSync(join(cacheDir, 'HEAD')), 'cache is a bare repo');
    assert.equal(git(cacheDir, 'rev-parse', 'refs/berth/main'), commits[1]);
    // git's own output (the ref update summary) reaches the deploy log.
    assert.ok(lines.some((l) => l.includes('main') && l.includes('refs/berth/main')), lines.join('\n'));
  });

  it('resolves an abbreviated commit to the full SHA', async () => {
    const cacheDir = join(root, 'cache-abbrev');
    const first = commits[0]!;
    const { commit: sha } = await fetchSource({ cacheDir, repo: url, branch: 'main', commit: first.slice(0, 8), log: () => {} });
    assert.equal(sha, first);
  });

  it('fetches incrementally into the same cache', async () => {
    const cacheDir = join(root, 'cache-incr');
    const a = await fetchSource({ cacheDir, repo: url, branch: 'main', log: () => {} });
    const headInode = statSync(join(cacheDir, 'HEAD')).ino;
    const newer = commit('app.txt', 'v3\n', 'third');
    const b = await fetchSource({ cacheDir, repo: url, branch: 'main', log: () => {} });
    assert.notEqual(a.commit, b.commit);
    assert.equal(b.commit, newer);
    assert.equal(statSync(join(cacheDir, 'HEAD')).ino, headInode, 'cache was reused, not re-created');
    // The earlier commit is still in the cache: only the new objects were transferred.
    assert.equal(git(cacheDir, 'cat-file', '-t', a.commit), 'commit');
  });

  it('fetches a full SHA that is not on the branch directly', async () => {
    git(work, 'checkout', '-q', '-b', 'side');
    writeFileSync(join(work, 'side.txt'), 'side\n');
    git(work, 'add', '-A');
    git(work, 'commit', '-q', '-m', 'side');
    git(work, 'push', '-q', 'origin', 'side');
    const side = git(work, 'rev-parse', 'HEAD');
    git(work, 'checkout', '-q', 'main');
    const cacheDir = join(root, 'cache-side');
    const { commit: sha } = await fetchSource({ cacheDir, repo: url, branch: 'main', commit: side, log: () => {} });
    assert.equal(sha, side);
  });

  it('copes with a branch that clashes with a previously cached one ("x" then "x/y")', async () => {
    git(work, 'push', '-q', 'origin', 'HEAD:refs/heads/rel');
    const cacheDir = join(root, 'cache-clash');
    await fetchSource({ cacheDir, repo: url, branch: 'rel', log: () => {} });
    git(work, 'push', '-q', 'origin', ':refs/heads/rel');
    git(work, 'push', '-q', 'origin', 'HEAD:refs/heads/rel/v2');
    const lines: string[] = [];
    const { commit: sha } = await fetchSource({ cacheDir, repo: url, branch: 'rel/v2', log: (l) => lines.push(l) });
    assert.equal(sha, git(work, 'rev-parse', 'HEAD'));
    assert.ok(lines.includes('clearing stale cached refs'), lines.join('\n'));
  });

  it('reports an unknown branch clearly', async () => {
    await assert.rejects(
      fetchSource({ cacheDir: join(root, 'cache-nobranch'), repo: url, branch: 'nope', log: () => {} }),
      (err: unknown) => err instanceof GitError && /branch nope not found in file:\/\//.test(err.message),
    );
  });

  it('reports an unknown commit clearly (abbreviated and full)', async () => {
    const cacheDir = join(root, 'cache-nocommit');
    for (const c of ['deadbee', 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef']) {
      await assert.rejects(
        fetchSource({ cacheDir, repo: url, branch: 'main', commit: c, log: () => {} }),
        (err: unknown) => err instanceof GitError && err.message === `commit ${c} not found in ${url}`,
      );
    }
  });

  it('reports a missing repository as a GitError', async () => {
    await assert.rejects(
      fetchSource({ cacheDir: join(root, 'cache-norepo'), repo: `file://${root}/missing.git`, branch: 'main', log: () => {} }),
      (err: unknown) => err instanceof GitError && /git fetch from .* failed/.test(err.message),
    );
  });

  it('refuses hostile URLs and option-like input without running anything', async () => {
    const marker = join(root, 'pwned');
    const bad = [
      { repo: `--upload-pack=touch ${marker}`, branch: 'main' },
      { repo: `ext::sh -c touch% ${marker}`, branch: 'main' },
      { repo: url, branch: '--upload-pack=x' },
      { repo: url, branch: 'main', commit: 'HEAD~1' },
    ];
    for (const b of bad) {
      await assert.rejects(fetchSource({ cacheDir: join(root, 'cache-bad'), log: () => {}, ...b }), GitError);
    }
    assert.equal(existsSync(marker), false);
    assert.equal(existsSync(join(root, 'cache-bad')), false, 'nothing was created');
  });

  it('checks out a clean tree with no .git', async () => {
    const cacheDir = join(root, 'cache-checkout');
    const { commit: sha } = await fetchSource({ cacheDir, repo: url, branch: 'main', commit: commits[0]!, log: () => {} });
    const dest = join(root, 'build');
    mkdirSync(dest);
    writeFileSync(join(dest, 'stale.txt'), 'left over from a previous build');
    await checkoutTo({ cacheDir, commit: sha, dest });
    assert.equal(readFileSync(join(dest, 'app.txt'), 'utf8'), 'v1\n');
    assert.equal(existsSync(join(dest, '.git')), false);
    assert.equal(existsSync(join(dest, 'stale.txt')), false, 'dest was emptied');
    assert.ok(statSync(join(dest, 'sub', 'run.sh')).mode & 0o100, 'executable bit kept');
    // A second checkout of another commit replaces the tree.
    await checkoutTo({ cacheDir, commit: commits[1]!, dest });
    assert.equal(readFileSync(join(dest, 'app.txt'), 'utf8'), 'v2\n');
  });

  it('honours an abort signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('cancelled by test'));
    await assert.rejects(
      fetchSource({ cacheDir: join(root, 'cache-abort'), repo: url, branch: 'main', log: () => {}, signal: ac.signal }),
      /cancelled by test/,
    );
    // Mid-flight: a git:// remote that accepts and then never answers; the abort must kill git.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const ac2 = new AbortController();
    const started = Date.now();
    setTimeout(() => ac2.abort(new Error('cancelled mid-fetch')), 300);
    try {
      await assert.rejects(
        fetchSource({ cacheDir: join(root, 'cache-hang'), repo: `git://127.0.0.1:${port}/x.git`, branch: 'main', log: () => {}, signal: ac2.signal }),
        /cancelled mid-fetch/,
      );
      assert.ok(Date.now() - started < 5000);
    } finally {
      silent.close();
    }
  });

  it('redacts credentials in URLs', () => {
    const repo = 'https://user:s3cr3t@example.com/a.git';
    assert.equal(redactUrl(`fatal: could not read ${repo}`, repo), 'fatal: could not read https://user:***@example.com/a.git');
    const tokenRepo = 'https://ghp_abcdefghijklmnop1234@example.com/a.git';
    assert.ok(!redactUrl(tokenRepo, tokenRepo).includes('ghp_'));
  });
});
