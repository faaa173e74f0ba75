// Cluster builds on a builder node (issue 15, `berth cluster builder`): the builder's agent fetches,
// builds and pushes, then reports the pushed image; the manager's agent is sent a continuation order
// that starts from it (releasing → … → done), as a rollback starts from a kept digest.
import { z } from 'zod';
import { commitSha, serverName } from './validation.js';

/** REGISTRY/berth/APP@sha256:… — services and the manager only ever use the pushed digest. */
export const digestImageRef = z
  .string()
  .max(600)
  .regex(/^[a-z0-9[][a-z0-9.[\]:-]*\/berth\/[a-z0-9][a-z0-9-]*@sha256:[0-9a-f]{64}$/, 'expected REGISTRY/berth/APP@sha256:DIGEST');

/** What a builder reports with the `done` of a build-only order: the image is in the cluster's registry. */
export const builtImage = z.object({
  image: digestImageRef,
  /** The app config read from the commit (the manager checks it as it checks a kept release's). */
  config: z.record(z.string(), z.unknown()),
  /** The web process's container port (the image's EXPOSE or build.port); null without a web process. */
  containerPort: z.number().int().min(1).max(65_535).nullable(),
});
export type BuiltImage = z.infer<typeof builtImage>;

/** The manager's continuation order: the build happened on `builder`; release, start and switch from its image. */
export const builtElsewhere = builtImage.extend({
  builder: serverName,
  commit: commitSha,
  /** The deploy log's next line number: the builder's lines come first in the same log. */
  logSeq: z.number().int().nonnegative(),
});
export type BuiltElsewhere = z.infer<typeof builtElsewhere>;
