// A bare Debian 12 for install.sh tests: debootstrap minbase + curl, ca-certificates and the
// distribution's nodejs (18: too old for berth, so the installer must take Node.js from the control
// plane). Built once (~40 s), `docker import`ed, reused while the tag exists.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureDocker } from './docker.js';
import { makeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);

export const INSTALLER_IMAGE = 'berth-test/installer-base:bookworm';
const PACKAGES = 'curl,ca-certificates,nodejs';

let ready: Promise<string> | undefined;

export function ensureInstallerImage(name = INSTALLER_IMAGE): Promise<string> {
  ready ??= build(name);
  ready.catch(() => (ready = undefined));
  return ready;
}

async function build(name: string): Promise<string> {
  const docker = await ensureDocker();
  try {
    await docker.getImage(name).inspect();
    return name;
  } catch {
    // build it below
  }
  const mirror = process.env.BERTH_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
  const root = join(makeTmpDir('installer-root'), 'rootfs');
  try {
    await execFileP('debootstrap', ['--variant=minbase', `--include=${PACKAGES}`, 'bookworm', root, mirror], {
      timeout: 15 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    }).catch((err: Error & { stderr?: string; stdout?: string }) => {
      const tail = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-5).join('\n');
      throw new Error(`debootstrap failed (apt-get install -y debootstrap): ${err.message}\n${tail}`);
    });
    // Containers reach the mirror through a TLS-intercepting egress whose CA the host trusts.
    const hostCa = '/etc/ssl/certs/ca-certificates.crt';
    if (existsSync(hostCa) && existsSync(join(root, 'etc/ssl/certs'))) copyFileSync(hostCa, join(root, 'etc/ssl/certs/ca-certificates.crt'));
    rmSync(join(root, 'var/cache/apt/archives'), { recursive: true, force: true });
    rmSync(join(root, 'var/lib/apt/lists'), { recursive: true, force: true });
    const [repo, tag] = [name.slice(0, name.lastIndexOf(':')), name.slice(name.lastIndexOf(':') + 1)];
    const packer = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tarErr = '';
    packer.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
    const packed = new Promise<void>((resolve, reject) =>
      packer.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar failed (${code}): ${tarErr.trim()}`)))),
    );
    const stream = await docker.importImage(packer.stdout, {
      repo,
      tag,
      changes: ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'ENV LANG=C.UTF-8', 'CMD ["/bin/bash"]', 'LABEL berth.test=base'],
    } as object);
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null, out: Array<{ error?: string }>) => {
        const failed = out?.find((e) => e.error);
        if (err || failed) reject(err ?? new Error(failed?.error));
        else resolve();
      }),
    );
    await packed;
    await docker.getImage(name).inspect();
    return name;
  } finally {
    rmSync(join(root, '..'), { recursive: true, force: true });
  }
}
