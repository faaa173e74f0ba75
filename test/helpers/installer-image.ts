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
import { berth, berthJson } from './cli.js';
import { debianImageOnce } from './debian-image.js';
import type { DeploymentJson } from './fixtures.js';
import type { TestRepo } from './git-repo.js';
import { makeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export const INSTALLER_IMAGE = 'berth-test/installer-base:bookworm';

export const ensureInstallerImage = debianImageOnce({ name: INSTALLER_IMAGE, packages: ['curl', 'ca-certificates', 'nodejs'] });

/** The version in package.json: what `scripts/package.sh` builds without --version. */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

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
 * (host paths, read-only, at the same path — e.g. a test Git remote), and /etc/berth/agent.env
 * pre-seeded so the agent runs a private nginx on `httpPort` (nothing binds :80) with fast deploy timings.
 */
export async function startInstallerContainer(label: string, httpPort: number, mounts: string[] = []): Promise<string> {
  const image = await ensureInstallerImage();
  const name = `berth-install-${label}-${Math.random().toString(36).slice(2, 8)}`;
  await execFileP('docker', [
    'run', '-d', '--name', name, '--network', 'host', '--label', 'berth.test=install',
    '-v', '/var/run/docker.sock:/var/run/docker.sock',
    ...mounts.flatMap((m) => ['-v', `${m}:${m}:ro`]),
    image, 'sleep', 'infinity',
  ]);
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
  const { stdout } = await execFileP('sh', [join(ROOT, 'scripts/package.sh'), '--out', outDir, ...(version ? ['--version', version] : [])], {
    cwd: ROOT,
    timeout: 300_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (!/built .*berth-.*-linux-(x64|arm64)\.tar\.gz/.test(stdout)) throw new Error(`package.sh did not report a tarball:\n${stdout}`);
}

/**
 * A release `to` made from release `from` in `dir` whose agent exits as it starts, or hangs before it
 * ever connects (its --version, `berth status` and `agent join` still work): what a bad build looks
 * like to an upgrade.
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
export async function deploySampleApp(env: Record<string, string>, opts: { app: string; server: string; domain: string; repo: TestRepo; create: boolean }): Promise<DeploymentJson> {
  if (opts.create) {
    await berthJson(['app', 'create', opts.app, '--repo', opts.repo.url, '--server', opts.server], env);
    await berthJson(['domain', 'add', opts.app, opts.domain], env);
  }
  const res = await berth(['deploy', opts.app, '--wait', '--json'], env, 300_000);
  if (res.code !== 0) throw new Error(`deploy of ${opts.app} failed (${res.code}): ${res.stderr}\n${res.stdout}`);
  return JSON.parse(res.stdout) as DeploymentJson;
}
