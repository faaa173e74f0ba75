// install.sh tests: a bare Debian 12 image (debootstrap minbase + curl, ca-certificates and the
// distribution's nodejs — 18, too old for berth, so the installer must take Node.js from the control
// plane; built once, ~40 s, reused while the tag exists), containers of it that share the host's
// network and Docker engine, release tarballs made by scripts/package.sh, and a sample app.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { berth, berthJson } from './cli.js';
import { debianImageOnce } from './debian-image.js';
import type { DeploymentJson } from './fixtures.js';
import type { TestRepo } from './git-repo.js';
import { eventually } from './http.js';
import { HttpLoad, type LoadReport } from './load.js';
import { Stack } from './stack.js';
import { cachedRelease } from './release-cache.js';
import { makeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export const INSTALLER_IMAGE = 'berth-test/installer-base:bookworm';

const INSTALLER_PACKAGES = ['curl', 'ca-certificates', 'nodejs'];
export const ensureInstallerImage = debianImageOnce({ name: INSTALLER_IMAGE, packages: INSTALLER_PACKAGES });

/** The installer image plus systemd as init (systemd, systemd-sysv, dbus): containers of it boot systemd as PID 1. */
export const SYSTEMD_INSTALLER_IMAGE = 'berth-test/installer-systemd:bookworm';
export const ensureSystemdInstallerImage = debianImageOnce({ name: SYSTEMD_INSTALLER_IMAGE, packages: [...INSTALLER_PACKAGES, 'systemd', 'systemd-sysv', 'dbus'] });

/** The version in package.json: what `scripts/package.sh` builds without --version. */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The install line `berth server add` prints, as root runs it where there is no sudo (the test
 * containers): the token stays a variable assignment for the shell in front of `sh`.
 */
export const asRoot = (installCommand: string) => installCommand.replace(' sudo --preserve-env=BERTH_JOIN_TOKEN sh ', ' sh ');

export const showRun = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** `sh -c SCRIPT` in the container (scripts are the test's own text, never built from outside input). */
export async function containerSh(container: string, script: string, timeoutMs = 300_000): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP('docker', ['exec', container, 'sh', '-c', script], { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A program with its arguments in the container, no shell in between. */
export async function containerRun(container: string, argv: string[], timeoutMs = 300_000): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP('docker', ['exec', container, ...argv], { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * A fresh container of the installer image: host network, the host's Docker socket, `mounts`
 * (host paths, read-only, at the same path — e.g. a test Git remote — or "HOST:CONTAINER"), and /etc/berth/agent.env
 * pre-seeded so the agent runs a private nginx on `httpPort` (nothing binds :80) with fast deploy timings.
 *
 * `systemd: true`: the systemd image with systemd as PID 1 (--cap-add SYS_ADMIN for its mounts, SYS_PTRACE
 * so the test can enter the mount namespace of a service running as another user (`nsenter -t PID -m`),
 * tmpfs /run and /run/lock, the cgroup tree; `--privileged` and `--cap-add SYS_RESOURCE` cannot be
 * applied on these machines: their Docker engine itself lacks CAP_SYS_RESOURCE). It is booted (`systemctl
 * is-system-running --wait`) before this returns, and the distribution's nginx.service is masked: the
 * container shares the host's network, and apt would otherwise start that nginx on the host's :80 when
 * the installer installs the package (the pid-file containers keep apt from starting it with policy-rc.d).
 */
export async function startInstallerContainer(label: string, httpPort: number, mounts: string[] = [], opts: { systemd?: boolean } = {}): Promise<string> {
  const image = opts.systemd ? await ensureSystemdInstallerImage() : await ensureInstallerImage();
  const name = `berth-install-${label}-${Math.random().toString(36).slice(2, 8)}`;
  const init = opts.systemd
    ? {
        flags: ['--cap-add', 'SYS_ADMIN', '--cap-add', 'SYS_PTRACE', '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw'],
        command: ['/lib/systemd/systemd'],
      }
    : { flags: [], command: ['sleep', 'infinity'] };
  await execFileP('docker', [
    'run', '-d', '--name', name, '--network', 'host', '--label', 'berth.test=install',
    ...init.flags,
    '-v', '/var/run/docker.sock:/var/run/docker.sock',
    ...mounts.flatMap((m) => ['-v', `${m.includes(':') ? m : `${m}:${m}`}:ro`]),
    image, ...init.command,
  ]);
  if (opts.systemd) {
    // Until systemd's private socket exists, systemctl has nothing to talk to (bounded: 30 s).
    const boot = await containerSh(
      name,
      'i=0; until [ -S /run/systemd/private ] || [ $i -ge 300 ]; do i=$((i+1)); sleep 0.1; done; systemctl mask nginx.service >/dev/null && systemctl is-system-running --wait',
      120_000,
    );
    if (boot.stdout.trim() !== 'running') {
      const failed = await containerSh(name, 'systemctl --failed --no-pager; journalctl -b --no-pager -n 40');
      throw new Error(`systemd in ${name} did not reach "running": ${showRun(boot)}\n${failed.stdout}`);
    }
  }
  const env = [
    'BERTH_DATA=/var/lib/berth',
    'BERTH_NGINX_PREFIX=/var/lib/berth-nginx',
    `BERTH_HTTP_PORT=${httpPort}`,
    'BERTH_HTTPS_PORT=0',
    'BERTH_RECONCILE_INTERVAL_MS=5000',
    'BERTH_HEALTH_STABLE_MS=500',
    'BERTH_DRAIN_MS=200',
    'BERTH_STOP_GRACE_S=1',
  ].join('\n');
  const r = await containerSh(name, `mkdir -p /etc/berth && cat > /etc/berth/agent.env <<'EOF'\n${env}\nEOF`);
  if (r.code !== 0) throw new Error(`could not seed agent.env: ${showRun(r)}`);
  return name;
}

/** Remove a test container and what its agent made on the shared engine (containers and images labelled with its server names). */
export async function removeInstallerContainer(container: string, servers: string[]): Promise<void> {
  await execFileP('docker', ['rm', '-f', container]).catch(() => undefined);
  for (const server of servers) {
    const list = async (args: string[]) =>
      (await execFileP('docker', [...args, '--filter', 'label=berth.managed=true', '--filter', `label=berth.server=${server}`]).catch(() => ({ stdout: '' }))).stdout
        .split('\n')
        .filter(Boolean);
    const ids = await list(['ps', '-aq']);
    if (ids.length) await execFileP('docker', ['rm', '-f', ...ids]).catch(() => undefined);
    // Children before parents: a few rounds, never failing the test over cleanup.
    for (let round = 0; round < 3; round++) {
      const images = [...new Set(await list(['images', '-aq']))];
      if (images.length === 0) break;
      for (const image of images) await execFileP('docker', ['rmi', '-f', image]).catch(() => undefined);
    }
  }
}

/** `scripts/package.sh --out DIR [--version V]`: the real release tarball, .sha256 and .json. */
export async function packageRelease(outDir: string, version?: string): Promise<void> {
  // Made once per content for the whole run (test/helpers/release-cache.ts): the same bytes package.sh makes.
  await cachedRelease(ROOT, outDir, version ?? PACKAGE_VERSION, async (dir) => {
    const { stdout } = await execFileP('sh', [join(ROOT, 'scripts/package.sh'), '--out', dir, ...(version ? ['--version', version] : [])], {
      cwd: ROOT,
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    if (!/built .*berth-.*-linux-(x64|arm64)\.tar\.gz/.test(stdout)) throw new Error(`package.sh did not report a tarball:\n${stdout}`);
  });
}

/**
 * A release `to` made from release `from` in `dir` whose agent exits as it starts, or hangs before it
 * ever connects (its --version, `berth status` and `agent join` still work): what a bad build looks
 * like to an upgrade. Its systemd/berth-agent.service ends with an extra comment line.
 */
export async function packageBrokenRelease(dir: string, from: string, to: string, how: 'exits' | 'hangs' = 'exits'): Promise<void> {
  const arch = process.arch;
  const work = makeTmpDir('broken-release');
  try {
    await execFileP('tar', ['-xzf', join(dir, `berth-${from}-linux-${arch}.tar.gz`), '-C', work]);
    const tree = join(work, `berth-${to}`);
    renameSync(join(work, `berth-${from}`), tree);
    for (const f of ['package.json', 'RELEASE.json']) {
      const j = JSON.parse(readFileSync(join(tree, f), 'utf8')) as { version: string };
      j.version = to;
      writeFileSync(join(tree, f), JSON.stringify(j, null, 2) + '\n');
    }
    const main = join(tree, 'dist/agent/main.js');
    const breakage =
      how === 'exits'
        ? `process.stderr.write('deliberately broken build: the agent exits as it starts\\n');\nprocess.exit(3);\n`
        : `process.stderr.write('deliberately broken build: the agent hangs as it starts\\n');\nsetInterval(() => undefined, 60_000);\nawait new Promise(() => undefined);\n`;
    writeFileSync(main, `${breakage}${readFileSync(main, 'utf8')}`);
    // Its agent unit differs too (a comment), so a rollback under systemd can be seen restoring the previous unit.
    const unit = join(tree, 'systemd/berth-agent.service');
    writeFileSync(unit, `${readFileSync(unit, 'utf8')}# deliberately broken build ${to}\n`);
    const file = `berth-${to}-linux-${arch}.tar.gz`;
    await execFileP('tar', ['-C', work, '-czf', join(dir, file), `berth-${to}`]);
    const sha = createHash('sha256').update(readFileSync(join(dir, file))).digest('hex');
    writeFileSync(join(dir, `${file}.sha256`), `${sha}  ${file}\n`);
    const info = JSON.parse(readFileSync(join(dir, `berth-${from}-linux-${arch}.json`), 'utf8')) as Record<string, string>;
    writeFileSync(join(dir, `berth-${to}-linux-${arch}.json`), JSON.stringify({ ...info, version: to, file, sha256: sha }) + '\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** busybox httpd serving the repo: `/` answers "sample N", `/up` is the health check. */
export function commitSampleApp(repo: TestRepo, n: number): string {
  return repo.commit(
    {
      Dockerfile: 'FROM berth-test/busybox:latest\nCOPY . /www\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n',
      'berth.yml': 'healthcheck: { path: /up, timeout: 30, interval: 0.2 }\n',
      'index.html': `sample ${n}\n`,
      up: 'ok\n',
    },
    `sample ${n}`,
  );
}
export const sampleVersion = (body: string) => /^sample (\d+)$/m.exec(body)?.[1] ?? null;

/** `berth app create` + `domain add` (once) and `deploy --wait` through a control plane; returns the deployment. */
export async function deploySampleApp(
  env: Record<string, string>,
  opts: { app: string; server: string; domain: string; repo: TestRepo; create: boolean; /** the remote as the agent sees it (default repo.url) */ repoUrl?: string },
): Promise<DeploymentJson> {
  if (opts.create) {
    await berthJson(['app', 'create', opts.app, '--repo', opts.repoUrl ?? opts.repo.url, '--server', opts.server], env);
    await berthJson(['domain', 'add', opts.app, opts.domain], env);
  }
  const res = await berth(['deploy', opts.app, '--wait', '--json'], env, 300_000);
  if (res.code !== 0) throw new Error(`deploy of ${opts.app} failed (${res.code}): ${res.stderr}\n${res.stdout}`);
  return JSON.parse(res.stdout) as DeploymentJson;
}

/** Bounded load on the sample app through an installed agent's nginx (loopback), started once it answers. */
export async function startSampleLoad(httpPort: number, domain: string): Promise<HttpLoad> {
  const load = new HttpLoad({
    port: httpPort,
    host: domain,
    keepAliveClients: 2,
    freshClients: 2,
    maxRequests: 200_000,
    maxDurationMs: 240_000,
    pauseMs: 5,
    version: sampleVersion,
  });
  await eventually(async () => load.answered, (n) => n >= 20, 10_000, 20);
  return load;
}

/** Keep the load on a little after the step returned (a restarted agent reconciles), then judge it: no failed request. */
export async function finishSampleLoad(t: TestContext, load: HttpLoad, what: string): Promise<LoadReport> {
  const seen = load.answered;
  await eventually(async () => load.answered, (n) => n >= seen + 100, 20_000, 20);
  const report = await load.stop();
  t.diagnostic(
    `load during ${what}: ${report.sent} requests in ${(report.durationMs / 1000).toFixed(1)} s, ${report.ok} ok, ${report.non2xx} non-2xx, ` +
      `${report.connectionErrors} connection errors, ${report.staleConnectionRetries} stale keep-alive connections re-sent`,
  );
  assert.equal(report.hitBound, false, 'the load ran until stopped (its bounds were not reached)');
  assert.deepEqual(report.failures, [], 'no failed request');
  assert.equal(report.non2xx + report.connectionErrors, 0);
  return report;
}

/**
 * Package this checkout as a release (and as `next`, and broken builds of `next` under other versions)
 * into a temp dir, and start a control plane on loopback that serves them (BERTH_RELEASE_DIR).
 */
export async function startReleaseServer(
  name: string,
  releases: { next?: string; broken?: Array<{ version: string; how: 'exits' | 'hangs' }> } = {},
): Promise<{ stack: Stack; releaseDir: string }> {
  const releaseDir = join(makeTmpDir(`${name}-test`), 'release');
  const started = Date.now();
  await packageRelease(releaseDir);
  if (releases.next) await packageRelease(releaseDir, releases.next);
  for (const b of releases.broken ?? []) await packageBrokenRelease(releaseDir, releases.next ?? PACKAGE_VERSION, b.version, b.how);
  const made = [PACKAGE_VERSION, ...(releases.next ? [releases.next] : []), ...(releases.broken ?? []).map((b) => `${b.version} (broken: ${b.how})`)];
  process.stderr.write(`# packaged ${made.join(', ')} in ${Date.now() - started} ms\n`);
  process.env.BERTH_RELEASE_DIR = releaseDir; // the control plane below inherits it
  const stack = await Stack.create(name);
  await stack.startControlPlane();
  return { stack, releaseDir };
}

/** Wait until the control plane behind `env` lists `server` as connected; resolves with the server list. */
export function serverConnected(env: Record<string, string>, server: string): Promise<Array<{ name: string; connected: boolean }>> {
  return eventually(
    () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], env),
    (list) => list.some((s) => s.name === server && s.connected),
    30_000,
  );
}

/**
 * `scripts/release-host.mjs --out DIR`: turn a release directory (packageRelease) into a static release
 * host with `releaseUrl` and the publisher's key (`signingKey`, a PEM file) baked into its install.sh.
 */
export async function buildReleaseHost(dir: string, releaseUrl: string, signingKey: string): Promise<string> {
  const { stdout } = await execFileP('node', [join(ROOT, 'scripts/release-host.mjs'), '--out', dir, '--release-url', releaseUrl, '--signing-key', signingKey], {
    cwd: ROOT,
    timeout: 120_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (!/^release host ready in /m.test(stdout)) throw new Error(`release-host.mjs did not report a release host:\n${stdout}`);
  return stdout;
}
