// Running the berth-managed registry on the cluster's manager, two ways (BERTH_REGISTRY_RUNNER):
//  - container (default): a Docker container `berth-registry` from BERTH_REGISTRY_IMAGE (registry:2),
//    labelled berth.registry=CLUSTER, its data in a labelled named volume, its config dir bind-mounted
//    read-only, restart unless-stopped; recreated when the hash of its files and image changes.
//  - host: Debian's `docker-registry` package as the systemd unit berth-registry.service
//    (systemd/berth-registry.service), its config under /etc/berth-registry, restarted on change.
// Garbage collection stops the registry, runs `registry garbage-collect` and starts it again: the
// distribution docs require no pushes during GC, and stopping it is the only way that is certain.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { ensureDir, sleep, writeFileAtomic } from '../../../shared/util/index.js';
import { dockerMessageOf, dockerStatusOf } from '../../docker/errors.js';
import { LABEL } from '../../docker/labels.js';
import { demuxLines } from '../../docker/log-demux.js';
import { ensureImage } from '../overlay.js';
import { filesHash, registryFiles, type RegistryFile, type RegistryLayout, type ServeSpec } from './config.js';

const execFileP = promisify(execFile);

export const REGISTRY_CONTAINER = 'berth-registry';
export const REGISTRY_VOLUME = 'berth-registry-data';
export const REGISTRY_LABEL = 'berth.registry';
export const REGISTRY_HASH_LABEL = 'berth.registry-config';
/** Inside the container: where the config dir is mounted and the volume holds the images. */
export const CONTAINER_LAYOUT: RegistryLayout = { confDir: '/etc/berth-registry', storageDir: '/var/lib/registry' };
/** The host runner: the unit's config path and Debian's storage directory. */
export const HOST_LAYOUT: RegistryLayout = { confDir: '/etc/berth-registry', storageDir: '/var/lib/docker-registry' };
export const HOST_UNIT = 'berth-registry.service';
/** How long a new registry container must stay up before it counts as running. */
const STAY_UP_MS = 1_500;

export class RegistryRunError extends Error {
  override name = 'RegistryRunError';
}

export type EnsureResult = 'created' | 'started' | 'unchanged';

export interface RegistryRunner {
  readonly kind: 'container' | 'host';
  /** Write the files and make sure the registry runs them. */
  ensure(cluster: string, serve: ServeSpec): Promise<EnsureResult>;
  /** Stop, `registry garbage-collect`, start; resolves with GC's output. */
  collectGarbage(): Promise<string>;
}

/** Write each file atomically when its content or mode differs; true when any changed. */
export function writeRegistryFiles(dir: string, files: RegistryFile[]): boolean {
  ensureDir(dir, 0o700);
  let changed = false;
  for (const f of files) {
    const path = join(dir, f.name);
    if (existsSync(path) && readFileSync(path, 'utf8') === f.content) continue;
    writeFileAtomic(path, f.content, f.mode);
    changed = true;
  }
  return changed;
}

interface ContainerRunnerOptions {
  docker: Docker;
  /** The config dir on this machine (bind-mounted read-only into the container). */
  hostConfDir: string;
  image: string;
  server: string;
}

export class ContainerRunner implements RegistryRunner {
  readonly kind = 'container' as const;
  constructor(private readonly o: ContainerRunnerOptions) {}

  async ensure(cluster: string, serve: ServeSpec): Promise<EnsureResult> {
    const files = registryFiles(CONTAINER_LAYOUT, serve, cluster);
    writeRegistryFiles(this.o.hostConfDir, files);
    const hash = filesHash(files, [this.o.image, String(serve.port)]);
    const existing = await this.inspect();
    if (existing && existing.Config.Labels?.[REGISTRY_HASH_LABEL] === hash) {
      if (existing.State.Running) return 'unchanged';
      await this.o.docker.getContainer(existing.Id).start();
      return 'started';
    }
    if (existing) await this.o.docker.getContainer(existing.Id).remove({ force: true });
    await ensureImage(this.o.docker, this.o.image, 'the registry image');
    await this.ensureVolume(cluster);
    const port = `${serve.port}/tcp`;
    const container = await this.o.docker.createContainer({
      name: REGISTRY_CONTAINER,
      Image: this.o.image,
      // registry:2's entrypoint and a plain `registry` binary both take `serve CONFIG`.
      Cmd: ['serve', `${CONTAINER_LAYOUT.confDir}/config.yml`],
      Labels: { [REGISTRY_LABEL]: cluster, [REGISTRY_HASH_LABEL]: hash, [LABEL.server]: this.o.server },
      ExposedPorts: { [port]: {} },
      HostConfig: {
        PortBindings: { [port]: [{ HostPort: String(serve.port) }] },
        RestartPolicy: { Name: 'unless-stopped' },
        Binds: [`${this.o.hostConfDir}:${CONTAINER_LAYOUT.confDir}:ro`],
        Mounts: [{ Type: 'volume', Source: REGISTRY_VOLUME, Target: CONTAINER_LAYOUT.storageDir }],
        LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
      },
    });
    await container.start();
    await this.checkStaysUp(container);
    return 'created';
  }

  /** A registry that exits at once (a config it refuses) is reported with its last lines, not as running. */
  private async checkStaysUp(container: Docker.Container): Promise<void> {
    await sleep(STAY_UP_MS);
    const info = await container.inspect();
    if (info.State.Running && !info.State.Restarting && info.RestartCount === 0) return;
    const raw = await container.logs({ stdout: true, stderr: true, tail: 5 }).catch(() => Buffer.alloc(0));
    const tail = demuxLines(raw).map((l) => l.text).filter((l) => l.trim()).slice(-3).join(' | ');
    throw new RegistryRunError(`${REGISTRY_CONTAINER} does not stay up (${info.State.Status}, exit ${info.State.ExitCode}): ${tail || 'no output'}`);
  }

  /** Ours (labelled berth.registry), or undefined; a foreign container of that name is refused, never touched. */
  async inspect(): Promise<Docker.ContainerInspectInfo | undefined> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.o.docker.getContainer(REGISTRY_CONTAINER).inspect();
    } catch (err) {
      if (dockerStatusOf(err) === 404) return undefined;
      throw new RegistryRunError(`could not inspect ${REGISTRY_CONTAINER}: ${dockerMessageOf(err)}`);
    }
    if (info.Config.Labels?.[REGISTRY_LABEL] === undefined) throw new RegistryRunError(`a container named ${REGISTRY_CONTAINER} exists and is not berth's: remove or rename it`);
    return info;
  }

  private async ensureVolume(cluster: string): Promise<void> {
    try {
      const v = (await this.o.docker.getVolume(REGISTRY_VOLUME).inspect()) as { Labels?: Record<string, string> | null };
      if (v.Labels?.[REGISTRY_LABEL] === undefined) throw new RegistryRunError(`a Docker volume named ${REGISTRY_VOLUME} exists and is not berth's: remove or rename it`);
      return;
    } catch (err) {
      if (err instanceof RegistryRunError) throw err;
      if (dockerStatusOf(err) !== 404) throw new RegistryRunError(`could not inspect volume ${REGISTRY_VOLUME}: ${dockerMessageOf(err)}`);
    }
    await this.o.docker.createVolume({ Name: REGISTRY_VOLUME, Labels: { [REGISTRY_LABEL]: cluster, [LABEL.server]: this.o.server } });
  }

  async collectGarbage(): Promise<string> {
    const info = await this.inspect();
    if (!info) throw new RegistryRunError(`${REGISTRY_CONTAINER} does not exist on this server`);
    const { docker } = this.o;
    await docker.getContainer(info.Id).stop({ t: 10 }).catch((err: unknown) => {
      if (dockerStatusOf(err) !== 304) throw err;
    });
    try {
      const gc = await docker.createContainer({
        Image: info.Config.Image,
        Cmd: ['garbage-collect', `${CONTAINER_LAYOUT.confDir}/config.yml`],
        Labels: { [REGISTRY_LABEL]: info.Config.Labels[REGISTRY_LABEL]!, [LABEL.server]: this.o.server },
        HostConfig: { Binds: info.HostConfig.Binds ?? [], Mounts: [{ Type: 'volume', Source: REGISTRY_VOLUME, Target: CONTAINER_LAYOUT.storageDir }] },
      });
      try {
        await gc.start();
        const { StatusCode } = (await gc.wait()) as { StatusCode: number };
        const logs = demuxLines(await gc.logs({ stdout: true, stderr: true }))
          .map((l) => l.text)
          .join('\n');
        if (StatusCode !== 0) throw new RegistryRunError(`registry garbage-collect exited ${StatusCode}: ${logs.trim().split('\n').slice(-3).join(' | ')}`);
        return logs;
      } finally {
        await gc.remove({ force: true }).catch(() => undefined);
      }
    } finally {
      await docker.getContainer(info.Id).start().catch((err: unknown) => {
        if (dockerStatusOf(err) !== 304) throw err;
      });
    }
  }
}

/** Runs a program with an argument array (never a shell). */
export type Exec = (file: string, args: string[]) => Promise<{ stdout: string }>;
const realExec: Exec = (file, args) => execFileP(file, args, { timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 });

export class HostRunner implements RegistryRunner {
  readonly kind = 'host' as const;
  constructor(
    private readonly confDir = HOST_LAYOUT.confDir,
    private readonly exec: Exec = realExec,
  ) {}

  async ensure(cluster: string, serve: ServeSpec): Promise<EnsureResult> {
    const changed = writeRegistryFiles(this.confDir, registryFiles({ ...HOST_LAYOUT, confDir: this.confDir }, serve, cluster));
    if (changed) {
      await this.exec('systemctl', ['restart', HOST_UNIT]);
      return 'created';
    }
    const active = await this.exec('systemctl', ['is-active', HOST_UNIT]).then(
      (r) => r.stdout.trim() === 'active',
      () => false,
    );
    if (active) return 'unchanged';
    await this.exec('systemctl', ['start', HOST_UNIT]);
    return 'started';
  }

  async collectGarbage(): Promise<string> {
    await this.exec('systemctl', ['stop', HOST_UNIT]);
    try {
      return (await this.exec('/usr/bin/docker-registry', ['garbage-collect', join(this.confDir, 'config.yml')])).stdout;
    } finally {
      await this.exec('systemctl', ['start', HOST_UNIT]);
    }
  }
}
