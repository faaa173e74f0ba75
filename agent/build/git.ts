// Fetching app sources: one cached bare clone per app, fetched incrementally, checked out into a
// clean directory per deploy. Git always runs with argument arrays and `--` before URLs, with
// prompts and command-running transports disabled, so a repo URL can never become a command.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { maskUrlCredentials } from '../../shared/repo-url.js';
import { gitRemote } from './git-credentials.js';
import { branchName, commitSha, gitUrl } from '../../shared/validation.js';

export class GitError extends Error {
  override name = 'GitError';
}

export interface FetchOptions {
  /** The app's cache directory (a bare repository, created on first use). */
  cacheDir: string;
  repo: string;
  branch: string;
  /** A specific commit to deploy (full or abbreviated SHA); absent = branch head. */
  commit?: string;
  log: (line: string) => void;
  signal?: AbortSignal;
  /** SSH repositories: the app's deploy key, and the file its host key is pinned in (first use). */
  deployKey?: { keyFile: string; knownHosts: string; fingerprint: string; strict?: boolean };
}

export interface CheckoutOptions {
  cacheDir: string;
  commit: string;
  dest: string;
  signal?: AbortSignal;
}

/** Hard ceiling per git invocation so a hung remote can never wedge a deploy forever. */
const GIT_TIMEOUT_MS = 10 * 60_000;

/** Options every git invocation gets: no interactive prompts, no `ext::`/`fd::` transports. */
const GIT_CONFIG_ARGS = ['-c', 'protocol.ext.allow=never', '-c', 'protocol.fd.allow=never', '-c', 'core.hooksPath=/dev/null'];

function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GIT_TERMINAL_PROMPT: '0',
    GIT_ALLOW_PROTOCOL: 'file:git:http:https:ssh',
    // An unknown host key or a passphrase prompt would otherwise block forever with no TTY.
    GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
    GIT_ASKPASS: '/bin/false',
    LC_ALL: 'C',
    ...extra,
  };
}

const PLAIN_PATH = /^\/[A-Za-z0-9._\/-]+$/;

/** ssh with the app's key only, its host key pinned on first use in the app's own known_hosts file. */
function sshCommand(k: { keyFile: string; knownHosts: string; strict?: boolean }): string {
  // GIT_SSH_COMMAND is run by a shell: only plain paths (berth's data dir) go into it.
  if (!PLAIN_PATH.test(k.keyFile) || !PLAIN_PATH.test(k.knownHosts)) throw new GitError(`deploy keys need a data directory of letters, digits and "._/-" (${k.keyFile})`);
  return `ssh -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -i ${k.keyFile} -o StrictHostKeyChecking=${k.strict ? 'yes' : 'accept-new'} -o UserKnownHostsFile=${k.knownHosts}`;
}

/**
 * Hide credentials embedded in an http(s) repo URL (`https://user:TOKEN@host/…`, or a bare token as
 * the user name) before text reaches a deploy log or an error message.
 */
export function redactUrl(text: string, repo: string): string {
  let u: URL;
  try {
    u = new URL(repo);
  } catch {
    return text; // scp-like `user@host:path` carries no secret
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return text;
  const secrets = [u.password, !u.password && u.username.length >= 16 ? u.username : ''].filter(Boolean);
  let out = text;
  for (const s of secrets) {
    for (const form of new Set([s, decodeURIComponent(s)])) out = out.split(form).join('***');
  }
  return maskUrlCredentials(out); // and any URL's userinfo (a short token as the user name)
}

interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Receives stderr lines as they arrive (git's own progress and errors). */
  onLine?: (line: string) => void;
  /** Pipe stdout here instead of collecting it. */
  stdout?: NodeJS.WritableStream;
}

/** Feeds text chunks to `onLine` as whole lines; `flush` ends the last one. */
function lineSplitter(onLine: ((line: string) => void) | undefined): (chunk: string, flush: boolean) => void {
  let pending = '';
  return (chunk, flush) => {
    pending += chunk;
    // git rewrites progress lines with \r; treat both as line ends.
    const parts = pending.split(/\r\n|\r|\n/);
    pending = flush ? '' : (parts.pop() ?? '');
    for (const p of parts) {
      const line = p.trimEnd();
      if (line) onLine?.(line);
    }
  };
}

/** Run git with an argument array; resolves with the exit code (never rejects for a non-zero exit). */
function runGit(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    // Own process group, so an abort kills git's helpers (upload-pack, remote-https, ssh) too.
    const child = spawn('git', [...GIT_CONFIG_ARGS, ...args], {
      cwd: opts.cwd,
      env: opts.env ?? gitEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let killedBy: 'abort' | 'timeout' | null = null;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const onAbort = () => {
      killedBy = 'abort';
      killGroup();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      killedBy = 'timeout';
      killGroup();
    }, GIT_TIMEOUT_MS);
    const emit = lineSplitter(opts.onLine);
    if (opts.stdout) child.stdout.pipe(opts.stdout);
    else child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => {
      const s = d.toString('utf8');
      stderr += s;
      if (stderr.length > 64_000) stderr = stderr.slice(-32_000);
      emit(s, false);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      reject(new GitError(`could not run git: ${err.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      emit('', true);
      if (killedBy === 'abort') return reject(opts.signal?.reason ?? new GitError('git was cancelled'));
      if (killedBy === 'timeout') return reject(new GitError(`git ${args[0]} timed out after ${GIT_TIMEOUT_MS / 1000} s`));
      resolvePromise({ stdout, stderr, code });
    });
  });
}

/** The last meaningful line git printed, for error messages. */
function gitMessage(stderr: string): string {
  const lines = stderr
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter(Boolean);
  const fatal = lines.filter((l) => /^(fatal|error):/.test(l));
  return (fatal.length ? fatal : lines).slice(-2).join('; ') || 'no output';
}

function validate(opts: FetchOptions): void {
  const checks: Array<[boolean, string]> = [
    [gitUrl.safeParse(opts.repo).success, 'invalid repo URL'],
    [branchName.safeParse(opts.branch).success, `invalid branch ${JSON.stringify(opts.branch)}`],
    [opts.commit === undefined || commitSha.safeParse(opts.commit).success, `invalid commit ${JSON.stringify(opts.commit)}`],
  ];
  for (const [ok, message] of checks) if (!ok) throw new GitError(message);
}

async function ensureBareRepo(cacheDir: string, signal?: AbortSignal): Promise<void> {
  if (existsSync(join(cacheDir, 'HEAD')) && existsSync(join(cacheDir, 'objects'))) return;
  mkdirSync(cacheDir, { recursive: true });
  const r = await runGit(['init', '--bare', '--quiet', '--', cacheDir], { signal });
  if (r.code !== 0) throw new GitError(`could not create the git cache in ${cacheDir}: ${gitMessage(r.stderr)}`);
}

/** Full SHA of `rev` as a commit in the cache, or null when it is not there. */
async function resolveCommit(cacheDir: string, rev: string, signal?: AbortSignal): Promise<string | null> {
  const r = await runGit(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], { cwd: cacheDir, env: gitEnv({ GIT_DIR: cacheDir }), signal });
  const sha = r.stdout.trim();
  return r.code === 0 && /^[0-9a-f]{40}$/.test(sha) ? sha : null;
}

/** Fetch the branch (and the commit if given) into the cache; returns the full SHA to deploy. */
export async function fetchSource(opts: FetchOptions): Promise<{ commit: string }> {
  validate(opts);
  const cacheDir = resolve(opts.cacheDir);
  const shown = redactUrl(opts.repo, opts.repo);
  const log = (line: string) => opts.log(redactUrl(line, opts.repo));
  // http(s) credentials travel in git's environment, never on its command line (git-credentials.ts).
  const remote = gitRemote(opts.repo);
  const env = gitEnv({ GIT_DIR: cacheDir, ...remote.env, ...(opts.deployKey ? { GIT_SSH_COMMAND: sshCommand(opts.deployKey) } : {}) });
  await ensureBareRepo(cacheDir, opts.signal);

  // One private ref per branch keeps what was fetched reachable (so `git gc` never drops it)
  // and makes the next fetch incremental.
  const localRef = `refs/berth/${opts.branch}`;
  const fetchBranch = () =>
    runGit(['fetch', '--no-tags', '--force', '--no-write-fetch-head', '--', remote.url, `+refs/heads/${opts.branch}:${localRef}`], {
      cwd: cacheDir,
      env,
      signal: opts.signal,
      onLine: log,
    });
  let fetch = await fetchBranch();
  if (fetch.code !== 0 && /cannot lock ref|exists; cannot create/i.test(fetch.stderr)) {
    // The app switched e.g. from branch "release" to "release/v2": the old private ref is in the
    // way of the new one. Drop the cache's refs (objects stay) and fetch again.
    log('clearing stale cached refs');
    const refs = await runGit(['for-each-ref', '--format=%(refname)', 'refs/berth/'], { cwd: cacheDir, env, signal: opts.signal });
    for (const ref of refs.stdout.split('\n').filter((r) => r.startsWith('refs/berth/'))) {
      await runGit(['update-ref', '-d', ref], { cwd: cacheDir, env, signal: opts.signal });
    }
    fetch = await fetchBranch();
  }
  if (fetch.code !== 0) throw fetchError(fetch.stderr, opts);
  if (opts.commit === undefined) {
    const head = await resolveCommit(cacheDir, localRef, opts.signal);
    if (!head) throw new GitError(`branch ${opts.branch} not found in ${shown}`);
    return { commit: head };
  }
  return { commit: await fetchCommit({ ...opts, url: remote.url }, opts.commit, env, log) };
}

/** Why a fetch failed, in words that say what to do (credentials in the URL masked). */
function fetchError(stderr: string, opts: FetchOptions): GitError {
  const shown = redactUrl(opts.repo, opts.repo);
  if (/couldn't find remote ref/i.test(stderr)) return new GitError(`branch ${opts.branch} not found in ${shown}`);
  if (opts.deployKey && /Permission denied \(publickey/i.test(stderr)) {
    return new GitError(`${shown} refused the app's deploy key (${opts.deployKey.fingerprint}): add its public half (berth app show APP) to the repository's deploy keys, read access`);
  }
  if (opts.deployKey && /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(stderr)) {
    return new GitError(
      opts.deployKey.strict
        ? `the SSH host key of ${shown} is not among the keys given with --known-hosts: check the file you gave`
        : `the SSH host key of ${shown} is not the one pinned on first use (${opts.deployKey.knownHosts}): if the host really changed its key, remove the old line from that file`,
    );
  }
  return new GitError(redactUrl(`git fetch from ${opts.repo} failed: ${gitMessage(stderr)}`, opts.repo));
}

/** The full SHA of the requested `commit`, fetched by itself when the branch does not contain it. */
async function fetchCommit(opts: FetchOptions & { url: string }, commit: string, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<string> {
  const cacheDir = resolve(opts.cacheDir);
  let sha = await resolveCommit(cacheDir, commit, opts.signal);
  if (!sha && commit.length === 40) {
    // Not reachable from the branch: ask for the object itself (works when the server allows
    // fetching by SHA, as GitHub, GitLab and protocol v2 servers do).
    log(`commit ${commit} is not on ${opts.branch}; fetching it directly`);
    const direct = await runGit(['fetch', '--no-tags', '--no-write-fetch-head', '--', opts.url, `${commit}:refs/berth/commits/${commit}`], {
      cwd: cacheDir,
      env,
      signal: opts.signal,
      onLine: log,
    });
    if (direct.code === 0) sha = await resolveCommit(cacheDir, commit, opts.signal);
  }
  if (!sha) throw new GitError(`commit ${commit} not found in ${redactUrl(opts.repo, opts.repo)}`);
  return sha;
}

/**
 * Whether `commit` is `of` or an ancestor of it (`git merge-base --is-ancestor`), both full SHAs in
 * the cache; null when git cannot tell (e.g. `of` is no longer in the cache).
 */
export async function isAncestor(opts: { cacheDir: string; commit: string; of: string; signal?: AbortSignal }): Promise<boolean | null> {
  for (const sha of [opts.commit, opts.of]) if (!/^[0-9a-f]{40}$/.test(sha)) throw new GitError(`invalid commit "${sha}"`);
  const cacheDir = resolve(opts.cacheDir);
  const r = await runGit(['merge-base', '--is-ancestor', opts.commit, opts.of], { cwd: cacheDir, env: gitEnv({ GIT_DIR: cacheDir }), signal: opts.signal });
  return r.code === 0 ? true : r.code === 1 ? false : null;
}

/** Run git (argument array) in the bare cache `cacheDir`: for reads such as `log` and `diff`. */
export function gitInCache(cacheDir: string, args: string[], signal?: AbortSignal): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const dir = resolve(cacheDir);
  return runGit(args, { cwd: dir, env: gitEnv({ GIT_DIR: dir }), signal });
}

/**
 * Write the tree of `commit` into `dest` (emptied first). Uses a throwaway index and
 * `checkout-index`, so the result is exactly the committed files — no `.git`, and unlike
 * `git archive` no `export-ignore` attributes silently dropping files the Dockerfile needs.
 */
export async function checkoutTo(opts: CheckoutOptions): Promise<void> {
  if (!commitSha.safeParse(opts.commit).success) throw new GitError(`invalid commit "${opts.commit}"`);
  const cacheDir = resolve(opts.cacheDir);
  const dest = resolve(opts.dest);
  if (dest === '/' || cacheDir === dest || cacheDir.startsWith(dest + '/')) throw new GitError(`refusing to check out into ${dest}`);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const indexFile = join(cacheDir, `berth-index-${randomBytes(6).toString('hex')}`);
  const env = gitEnv({ GIT_DIR: cacheDir, GIT_WORK_TREE: dest, GIT_INDEX_FILE: indexFile });
  try {
    const read = await runGit(['read-tree', `${opts.commit}^{tree}`], { cwd: dest, env, signal: opts.signal });
    if (read.code !== 0) throw new GitError(`commit ${opts.commit} is not in the git cache: ${gitMessage(read.stderr)}`);
    const co = await runGit(['checkout-index', '--all', '--force'], { cwd: dest, env, signal: opts.signal });
    if (co.code !== 0) throw new GitError(`checkout of ${opts.commit} failed: ${gitMessage(co.stderr)}`);
  } finally {
    rmSync(indexFile, { force: true });
  }
}
