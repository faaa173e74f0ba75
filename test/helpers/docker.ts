// Test access to the real Docker engine: start dockerd when it is not running, and make a tiny
// busybox base image locally (no registry is reachable on the test bed, so nothing can be pulled).
import { execFile, spawn } from 'node:child_process';
import { openSync, mkdirSync, symlinkSync, copyFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import tar from 'tar-fs';
import { makeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);

async function dockerAnswers(): Promise<boolean> {
  try {
    await execFileP('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

let dockerReady: Promise<Docker> | undefined;

/** A dockerode client for the local engine; starts `dockerd` (detached, logging to a file) when `docker info` fails. */
export function ensureDocker(): Promise<Docker> {
  dockerReady ??= (async () => {
    const socketPath = process.env.BERTH_DOCKER_SOCKET ?? '/var/run/docker.sock';
    if (!(await dockerAnswers())) {
      const logPath = process.env.BERTH_TEST_DOCKERD_LOG ?? '/var/log/dockerd.log';
      const out = openSync(logPath, 'a');
      // Detached and unref'd: the engine must outlive this test process (other tests reuse it).
      const child = spawn('dockerd', [], { detached: true, stdio: ['ignore', out, out] });
      let spawnError: Error | undefined;
      child.on('error', (err) => (spawnError = err));
      child.unref();
      const deadline = Date.now() + 30_000;
      while (!(await dockerAnswers())) {
        if (spawnError) throw new Error(`could not start dockerd: ${spawnError.message} (apt-get install -y docker.io)`);
        if (Date.now() > deadline) throw new Error(`dockerd did not answer within 30 s (see ${logPath})`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    return new Docker({ socketPath });
  })();
  dockerReady.catch(() => (dockerReady = undefined));
  return dockerReady;
}

export async function imageExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch {
    return false;
  }
}

/**
 * `docker import` a root filesystem tar stream as `name` (labelled berth.test=base, so no berth
 * cleanup ever matches it) and check the image exists afterwards.
 */
export async function importRootfs(docker: Docker, rootfsTar: NodeJS.ReadableStream, name: string, changes: string[]): Promise<void> {
  const [repo, tag] = splitName(name);
  const stream = await docker.importImage(rootfsTar, { repo, tag, changes: [...changes, 'LABEL berth.test=base'] } as object);
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, out: Array<{ error?: string }>) => {
      const failed = out?.find((e) => e.error);
      if (err || failed) reject(err ?? new Error(failed?.error));
      else resolve();
    }),
  );
  if (!(await imageExists(docker, name))) throw new Error(`docker import did not create ${name}`);
}

/**
 * A minimal image with busybox-static as /bin/busybox and a symlink for every applet (sh, httpd,
 * false, sleep, …). Built once with `docker import`, reused while it exists.
 */
export async function ensureBusyboxImage(name = 'berth-test/busybox:latest'): Promise<string> {
  const docker = await ensureDocker();
  if (await imageExists(docker, name)) return name;
  const root = makeTmpDir('busybox-root');
  try {
    const bin = join(root, 'bin');
    mkdirSync(bin);
    for (const d of ['tmp', 'etc', 'www', 'root']) mkdirSync(join(root, d));
    chmodSync(join(root, 'tmp'), 0o1777);
    copyFileSync('/bin/busybox', join(bin, 'busybox'));
    chmodSync(join(bin, 'busybox'), 0o755);
    const { stdout } = await execFileP('/bin/busybox', ['--list']);
    for (const applet of stdout.split('\n').map((s) => s.trim())) {
      if (applet && applet !== 'busybox' && /^[A-Za-z0-9_.[-]+$/.test(applet)) symlinkSync('busybox', join(bin, applet));
    }
    await importRootfs(docker, tar.pack(root) as unknown as NodeJS.ReadableStream, name, ['ENV PATH=/bin', 'CMD ["sh"]']);
    return name;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function splitName(name: string): [string, string] {
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  return colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, 'latest'];
}
