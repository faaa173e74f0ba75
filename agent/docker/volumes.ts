// Persistent volumes: named Docker volumes, one per (app, volume name), labelled berth.* like
// everything berth creates. They outlive deploys, rollbacks and agent restarts; only an explicit
// purge removes them.
import type Docker from 'dockerode';
import { LABEL } from './labels.js';
import { dockerMessageOf as messageOf, dockerStatusOf as statusOf } from './errors.js';

export class VolumeError extends Error {
  override name = 'VolumeError';
}

/** The volume's name from the config: berth.volume on the Docker volume. */
export const VOLUME_LABEL = 'berth.volume';

export type VolumeConfig = Record<string, { target: string }>;

/**
 * berth-APP_NAME. App names never contain "_", so the first "_" splits app from volume name
 * unambiguously (app "a-b" + volume "c" and app "a" + volume "b-c" stay different volumes).
 */
export function volumeDockerName(app: string, name: string): string {
  return `berth-${app}_${name}`;
}

/** The labels of one of the app's volumes (also in docker-compose.yml: compose-file.ts). */
export function volumeLabels(app: string, name: string, server?: string): Record<string, string> {
  return { [LABEL.managed]: 'true', [LABEL.app]: app, [VOLUME_LABEL]: name, ...(server ? { [LABEL.server]: server } : {}) };
}

/** Docker mounts for a container of the app: every volume at its target, read-write. */
export function volumeMounts(app: string, volumes: VolumeConfig | undefined): Docker.MountSettings[] {
  return Object.entries(volumes ?? {}).map(([name, v]) => ({ Type: 'volume', Source: volumeDockerName(app, name), Target: v.target }));
}

/**
 * Create the app's volumes that do not exist yet (existing ones keep their data). A volume of the
 * same name that berth did not create is never adopted: it would mount someone else's data.
 */
export async function ensureVolumes(docker: Docker, app: string, volumes: VolumeConfig | undefined, server?: string): Promise<void> {
  for (const name of Object.keys(volumes ?? {})) {
    const dockerName = volumeDockerName(app, name);
    let existing: { Labels?: Record<string, string> | null } | null = null;
    try {
      existing = (await docker.getVolume(dockerName).inspect()) as { Labels?: Record<string, string> | null };
    } catch (err) {
      if (statusOf(err) !== 404) throw new VolumeError(`could not inspect volume ${dockerName}: ${messageOf(err)}`);
    }
    if (existing) {
      const labels = existing.Labels ?? {};
      if (labels[LABEL.managed] !== 'true' || labels[LABEL.app] !== app) throw new VolumeError(`a Docker volume named ${dockerName} already exists and is not berth's (rename the volume in the app config, or remove it)`);
      // Agents sharing one Docker engine never share data: another server's app of the same name has its own.
      if (server && labels[LABEL.server] !== undefined && labels[LABEL.server] !== server) {
        throw new VolumeError(`the Docker volume ${dockerName} belongs to server ${labels[LABEL.server]}, not ${server} (rename the volume in the app config)`);
      }
      continue;
    }
    try {
      await docker.createVolume({
        Name: dockerName,
        Labels: volumeLabels(app, name, server),
      });
    } catch (err) {
      throw new VolumeError(`could not create volume ${dockerName}: ${messageOf(err)}`);
    }
  }
}

export interface BerthVolume {
  /** Docker's name (berth-APP_NAME). */
  dockerName: string;
  app: string;
  /** The name in the app config. */
  name: string;
}

/** berth's volumes (all apps, or one), optionally only the given server's. */
export async function listBerthVolumes(docker: Docker, filter: { app?: string; server?: string } = {}): Promise<BerthVolume[]> {
  const labels = [`${LABEL.managed}=true`, ...(filter.app ? [`${LABEL.app}=${filter.app}`] : []), ...(filter.server ? [`${LABEL.server}=${filter.server}`] : [])];
  let res: { Volumes?: Array<{ Name: string; Labels?: Record<string, string> | null }> | null };
  try {
    res = (await docker.listVolumes({ filters: JSON.stringify({ label: labels }) })) as typeof res;
  } catch (err) {
    throw new VolumeError(`could not list volumes: ${messageOf(err)}`);
  }
  return (res.Volumes ?? [])
    .filter((v) => v.Labels?.[LABEL.managed] === 'true' && v.Labels?.[LABEL.app])
    .map((v) => ({ dockerName: v.Name, app: v.Labels![LABEL.app]!, name: v.Labels![VOLUME_LABEL] ?? v.Name }));
}

/** Remove one of berth's volumes (already gone is fine). Fails while a container still uses it. */
export async function removeVolume(docker: Docker, dockerName: string): Promise<void> {
  try {
    await docker.getVolume(dockerName).remove();
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw new VolumeError(`could not remove volume ${dockerName}: ${messageOf(err)}`);
  }
}
