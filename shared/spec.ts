// The desired-state spec: what the control plane wants running on one server. The agent stores the
// last one it received and reconciles against it, with or without a connection.
import { z } from 'zod';
import { appName, branchName, domainName, envKey, gitUrl, serverName } from './validation.js';
import { rootDir } from './monorepo.js';

/** A process name as berth.yml spells it (they become container names and labels). */
export const scaleProcessName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,29}$/, 'process names are 1-30 lower-case letters, digits, "_" or "-", starting with a letter')
  .refine((n) => n !== 'release' && n !== 'build', 'process name is reserved (release and build are phases, not processes)');
/** The most replicas `berth scale` sets for one process (the same cap as berth.yml's `scale:`). */
export const MAX_SCALE = 32;
export const replicaCount = z
  .number({ error: 'expected a whole number of containers' })
  .int('expected a whole number of containers')
  .min(0, 'expected 0 or more containers')
  .max(MAX_SCALE, `at most ${MAX_SCALE} containers per process`);
/** `berth scale`: replicas per process that override the repo's `scale:` until reset. */
export const scaleOverride = z.record(scaleProcessName, replicaCount);
export type ScaleOverride = z.infer<typeof scaleOverride>;

export const appSpec = z.object({
  name: appName,
  repo: gitUrl,
  branch: branchName,
  domains: z.array(domainName),
  /** The app's env vars (secrets): reach the build, the release command and every process. Never logged. */
  env: z.record(envKey, z.string().max(65_536)).default({}),
  /** Monorepos: the app is built from this subdirectory of the checkout (absent = the repository root). */
  rootDir: rootDir.optional(),
  /** SSH repositories: the app's private deploy key (OpenSSH format), a secret like the env values. */
  /** The Git host's keys given with --known-hosts (absent: pinned on first use). */
  knownHosts: z.string().max(65_536).optional(),
  /** `berth scale`: replicas per process that win over the repo's `scale:` (absent: none set). */
  scale: scaleOverride.optional(),
  deployKey: z.string().max(8192).regex(/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+\/=\n]+-----END OPENSSH PRIVATE KEY-----\n$/).optional(),
  /**
   * Cluster mode (issue 15): the app runs as Swarm services of this cluster, deployed by the agent
   * that receives it (the cluster's manager; `server` of a cluster app is its manager). Absent: standalone.
   */
  cluster: serverName.optional(),
});
export type AppSpec = z.infer<typeof appSpec>;

/** host:port of a registry (IPv4, [IPv6] or a DNS name): plain characters only, it becomes an image name and a path under /etc/docker/certs.d/. */
export const registryAddress = z
  .string()
  .max(255)
  .regex(/^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:]+\]):\d{1,5}$/, 'registry address must be host:port (lower-case)');
const pem = (label: string) =>
  z
    .string()
    .max(65_536)
    .regex(new RegExp(`^-----BEGIN ${label}-----\\n[A-Za-z0-9+/=\\n]+-----END ${label}-----\\n?$`), `expected a PEM ${label}`);
export const certificatePem = pem('CERTIFICATE');
export const privateKeyPem = z.union([pem('PRIVATE KEY'), pem('EC PRIVATE KEY'), pem('RSA PRIVATE KEY')]);

/**
 * The cluster's image registry as one node's agent needs it (issue 15). Every node gets the address
 * and the CA (installed under /etc/docker/certs.d/ADDRESS/ca.crt: the engine trusts it per pull, no
 * restart); only the manager gets the credentials (push; the services' pulls are authorised through
 * Swarm with them) — and the cluster's builder, to push — and `serve` when the registry is
 * berth-managed and runs on that node.
 */
export const clusterRegistrySpec = z.object({
  address: registryAddress,
  /** Absent: the registry's certificate is publicly trusted (an external registry). */
  caPem: certificatePem.optional(),
  username: z.string().min(1).max(255).regex(/^[^\s:]+$/, 'registry username must not contain spaces or ":"').optional(),
  password: z.string().min(1).max(1024).optional(),
  /** A berth-managed registry on this node: its TLS certificate and key, and htpasswd (bcrypt) lines. */
  serve: z
    .object({ port: z.number().int().min(1).max(65_535), certPem: certificatePem, keyPem: privateKeyPem, htpasswd: z.string().min(1).max(65_536) })
    .optional(),
});
export type ClusterRegistrySpec = z.infer<typeof clusterRegistrySpec>;

/** This server's place in a cluster (issue 15); absent: standalone. */
export const clusterSpec = z.object({
  name: serverName,
  role: z.enum(['manager', 'worker']),
  /** This node builds the cluster's apps (`berth cluster builder`): it gets the registry's credentials to push. Absent: it does not. */
  builder: z.boolean().optional(),
  /** Absent until the cluster has a registry (cluster apps cannot deploy before). */
  registry: clusterRegistrySpec.optional(),
});
export type ClusterSpec = z.infer<typeof clusterSpec>;

export const serverSpec = z.object({
  server: serverName,
  /** Monotonic revision, bumped on every change, so the agent can tell new from stale. */
  revision: z.number().int().nonnegative(),
  apps: z.array(appSpec),
  /**
   * Removed apps whose volumes are to be deleted too (`berth app rm --purge-volumes`): the agent
   * removes an app's berth volumes once the app is absent from `apps` and listed here. Recorded by
   * the control plane, so a purge ordered while the agent is offline still happens. Absent from
   * control planes that predate volumes.
   */
  purgeVolumes: z.array(appName).optional(),
  /** Cluster mode (issue 15): the cluster this server is a node of. Absent: standalone only. */
  cluster: clusterSpec.optional(),
});
export type ServerSpec = z.infer<typeof serverSpec>;
