// The image of a Swarm test node: a Debian bookworm with its own Docker engine, Debian's registry
// (distribution 2.8) and htpasswd, built once per machine (~75 s, ~400 MB) and reused while the tag
// exists. Its entrypoint makes /sys and the cgroup controllers writable and the mounts shared (what
// `--privileged` would do, which fails on these machines), then runs dockerd with a second socket in
// the bind-mounted NODE_HOST_DIR so the host can talk to the node's engine.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { debianImageOnce } from './debian-image.js';

/** Bump the tag when the packages or the scripts below change: an existing tag is reused as it is. */
export const SWARM_NODE_IMAGE = 'berth-test/swarm-node:bookworm-2';

/** Where the host's per-node directory is mounted inside a node; the node's engine also listens on DIR/docker.sock. */
export const NODE_HOST_DIR = '/berth-host';
export const NODE_ENTRYPOINT = '/usr/local/bin/berth-swarm-node';
/** Starts the registry in the background when /etc/berth-registry/config.yml exists (so it comes back with the node). */
export const NODE_REGISTRY_START = '/usr/local/bin/berth-registry-start';
export const NODE_REGISTRY_DIR = '/etc/berth-registry';

const ENTRYPOINT = `#!/bin/sh
# A Docker engine in a container without --privileged (see docs/testing.md, "Cluster test bed").
set -eu
# cgroup v1 (hybrid) host: a plain remount of a controller says "busy"; a bind remount works.
mount -o remount,rw /sys
for c in /sys/fs/cgroup/*; do
  if mountpoint -q "$c"; then mount -o remount,bind,rw "$c"; fi
done
# Swarm's network namespaces and the nested containers' mounts need shared propagation.
mount --make-rshared /
rm -f /var/run/docker.pid
${NODE_REGISTRY_START}
exec dockerd --host=unix:///var/run/docker.sock --host=unix://${NODE_HOST_DIR}/docker.sock "$@"
`;

const REGISTRY_START = `#!/bin/sh
# Debian's docker-registry, configured by the test's startRegistry; a no-op until then.
[ -f ${NODE_REGISTRY_DIR}/config.yml ] || exit 0
nohup docker-registry serve ${NODE_REGISTRY_DIR}/config.yml >>/var/log/berth-registry.log 2>&1 </dev/null &
`;

function writeScript(root: string, path: string, text: string): void {
  const file = join(root, path);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
  chmodSync(file, 0o755);
}

/** The tag of the node image, built on first use (debootstrap + docker import). */
export const ensureSwarmNodeImage = debianImageOnce({
  name: SWARM_NODE_IMAGE,
  // apache2-utils: htpasswd makes the registry's bcrypt password file inside the node (nothing on the host needs it).
  // nginx + libstdc++6: berth agents run inside the nodes (test/helpers/swarm-agents.ts) on the host's Node 20 binary.
  packages: ['docker.io', 'iptables', 'ca-certificates', 'procps', 'iproute2', 'curl', 'docker-registry', 'apache2-utils', 'nginx', 'libstdc++6'],
  prepare: async (root) => {
    writeScript(root, NODE_ENTRYPOINT, ENTRYPOINT);
    writeScript(root, NODE_REGISTRY_START, REGISTRY_START);
    mkdirSync(join(root, NODE_HOST_DIR.slice(1)), { recursive: true });
  },
});
