// Free disk before a build: a build that fills the disk half-way breaks more than itself (the
// engine, SQLite, nginx logs). Checked where berth and Docker keep their data; below the threshold
// the deploy fails at once with a clear message instead of dying mid-build.
import type Docker from 'dockerode';
import { statfs } from 'node:fs/promises';

export class DiskSpaceError extends Error {
  override name = 'DiskSpaceError';
}

/** Free bytes for unprivileged writers at `path`, or null when it cannot be read from here. */
async function freeBytes(path: string): Promise<number | null> {
  try {
    const st = await statfs(path);
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return null;
  }
}

/** The engine's data root (e.g. /var/lib/docker), when the engine is local and answers. */
async function dockerRoot(docker: Docker): Promise<string | null> {
  try {
    const info = (await docker.info()) as { DockerRootDir?: string };
    return info.DockerRootDir || null;
  } catch {
    return null;
  }
}

/** Free space where berth (dataDir) and the local engine keep their data; a location not on this filesystem is left out. */
export async function measureFreeDisk(docker: Docker, dataDir: string): Promise<Array<{ path: string; freeMb: number }>> {
  const paths = [dataDir];
  const root = await dockerRoot(docker);
  if (root) paths.push(root);
  const measured: Array<{ path: string; freeMb: number }> = [];
  for (const path of paths) {
    const free = await freeBytes(path);
    if (free === null) continue; // a remote engine's root is not on this filesystem: nothing to measure
    measured.push({ path, freeMb: Math.floor(free / (1024 * 1024)) });
  }
  return measured;
}

/** Throws DiskSpaceError when a data location has less than `minFreeMb` free; returns what it measured. */
export async function checkFreeDisk(docker: Docker, opts: { dataDir: string; minFreeMb: number }): Promise<Array<{ path: string; freeMb: number }>> {
  if (opts.minFreeMb <= 0) return [];
  const measured = await measureFreeDisk(docker, opts.dataDir);
  for (const { path, freeMb } of measured) {
    if (freeMb < opts.minFreeMb) {
      throw new DiskSpaceError(
        `not enough free disk space: ${freeMb} MB free on ${path}, at least ${opts.minFreeMb} MB needed (BERTH_MIN_FREE_DISK_MB); free some space and deploy again`,
      );
    }
  }
  return measured;
}
