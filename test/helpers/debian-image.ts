// Debian bookworm images for tests without a registry: debootstrap a minbase tree with some
// packages, let the caller adjust it, `docker import` it, and reuse it while the tag exists.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureDocker, imageExists, importRootfs } from './docker.js';
import { makeTmpDir } from './tmp.js';

export const execFileP = promisify(execFile);

export interface DebianImageOptions {
  name: string;
  /** debootstrap --include list. */
  packages: string[];
  /** Runs on the bootstrapped tree before it is packed (e.g. apt-get inside a chroot). */
  prepare?: (root: string) => Promise<void>;
}

/** Build `name` once per process (and not at all while the tag exists); a failed build is retried next call. */
export function debianImageOnce(opts: DebianImageOptions): () => Promise<string> {
  let ready: Promise<string> | undefined;
  return () => {
    ready ??= buildDebianImage(opts);
    ready.catch(() => (ready = undefined));
    return ready;
  };
}

async function buildDebianImage(opts: DebianImageOptions): Promise<string> {
  const docker = await ensureDocker();
  if (await imageExists(docker, opts.name)) return opts.name;
  const mirror = process.env.BERTH_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
  const root = join(makeTmpDir('debian-root'), 'rootfs');
  try {
    await execFileP('debootstrap', ['--variant=minbase', `--include=${opts.packages.join(',')}`, 'bookworm', root, mirror], {
      timeout: 15 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    }).catch((err: Error & { stderr?: string; stdout?: string }) => {
      const tail = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-5).join('\n');
      throw new Error(`debootstrap failed (apt-get install -y debootstrap): ${err.message}\n${tail}`);
    });
    await opts.prepare?.(root);
    // Containers reach the mirror and the npm registry through a TLS-intercepting egress whose CA the host trusts.
    const hostCa = '/etc/ssl/certs/ca-certificates.crt';
    if (existsSync(hostCa) && existsSync(join(root, 'etc/ssl/certs'))) copyFileSync(hostCa, join(root, 'etc/ssl/certs/ca-certificates.crt'));
    rmSync(join(root, 'var/cache/apt/archives'), { recursive: true, force: true });
    rmSync(join(root, 'var/lib/apt/lists'), { recursive: true, force: true });
    // The system tar, not tar-fs: the tree has device nodes (dev/console, …) that tar-fs cannot pack.
    const packer = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tarErr = '';
    packer.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
    const packed = new Promise<void>((resolve, reject) =>
      packer.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar failed (${code}): ${tarErr.trim()}`)))),
    );
    await importRootfs(docker, packer.stdout, opts.name, [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'ENV LANG=C.UTF-8',
      'CMD ["/bin/bash"]',
    ]);
    await packed;
    return opts.name;
  } finally {
    rmSync(join(root, '..'), { recursive: true, force: true });
  }
}
