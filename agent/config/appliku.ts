// appliku.yml, read when there is no berth.yml so Appliku apps move over unchanged. Its keys map
// onto the same model: build_settings → build, services (with the reserved `release`) →
// processes + release, cronjobs → cron, volumes → volumes.
import { z } from 'zod';
import { buildImage, command, cronJob, distinctTargets, imagePath, parseConfig, port, processName, repoPath, scale, volumeName, volumeTarget } from './fields.js';
import { cronJobConfig, type PartialConfig } from './berth-yml.js';
import { AppConfigError } from './types.js';

const service = z.strictObject({ command, scale: scale.optional() });

export const applikuSchema = z.strictObject(
  {
    build_settings: z
      .strictObject({
        build_image: buildImage.optional(),
        build_command: command.nullish(),
        dockerfile_path: repoPath.nullish(),
        dockerfile_context_path: repoPath.nullish(),
        container_port: z.union([port, z.string().regex(/^\d{1,5}$/, 'expected a port number').transform(Number).pipe(port)]).nullish(),
        release_command: command.nullish(),
        is_static_site: z.boolean({ error: 'expected true or false' }).optional(),
        output_directory: imagePath.nullish(),
      })
      .optional(),
    services: z.record(z.union([processName, z.literal('release')]), service).optional(),
    cronjobs: z.record(processName, cronJob).optional(),
    volumes: z
      .record(
        volumeName,
        // url and environment_variable are Appliku's way to serve a volume over HTTP; accepted, not used yet.
        z.strictObject({ target: volumeTarget, url: z.string().optional(), environment_variable: z.string().optional() }),
      )
      .superRefine(distinctTargets)
      .optional(),
  },
  { error: 'expected a mapping of keys (build_settings, services, cronjobs, volumes)' },
);

export function parseAppliku(data: unknown, file = 'appliku.yml'): PartialConfig & { notes: string[] } {
  const c = parseConfig(applikuSchema, data ?? {}, file);
  const b = c.build_settings ?? {};
  const notes: string[] = [];
  const out: PartialConfig & { notes: string[] } = { notes };
  if (b.build_image) out.image = b.build_image;
  if (b.build_command) out.command = b.build_command;
  if (b.dockerfile_path) out.dockerfile = b.dockerfile_path;
  if (b.dockerfile_context_path) out.context = b.dockerfile_context_path;
  if (b.container_port != null) out.port = b.container_port;
  if (b.is_static_site) {
    if (!b.output_directory) throw new AppConfigErrorFor(file, 'build_settings.output_directory', 'is required when is_static_site is true');
    out.static = b.output_directory;
  } else if (b.output_directory) {
    notes.push(`${file}: build_settings.output_directory is ignored because is_static_site is not true`);
  }
  const services = { ...(c.services ?? {}) };
  const release = services.release;
  delete services.release;
  if (release && b.release_command) throw new AppConfigErrorFor(file, 'services.release', 'conflicts with build_settings.release_command (set one)');
  const releaseCommand = release?.command ?? b.release_command ?? undefined;
  if (releaseCommand) out.release = releaseCommand;
  if (Object.keys(services).length > 0) {
    out.processes = Object.fromEntries(Object.entries(services).map(([name, s]) => [name, { command: s.command, scale: s.scale ?? 1 }]));
  }
  if (c.cronjobs) out.cron = Object.fromEntries(Object.entries(c.cronjobs).map(([name, j]) => [name, cronJobConfig(j)]));
  if (c.volumes) out.volumes = Object.fromEntries(Object.entries(c.volumes).map(([name, v]) => [name, { target: v.target }]));
  return out;
}

/** A problem that involves two keys, which the schema cannot express. */
class AppConfigErrorFor extends AppConfigError {
  constructor(file: string, key: string, problem: string) {
    super(`${file}: key "${key}": ${problem}`);
  }
}
