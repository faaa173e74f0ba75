// A registry image for the cluster test bed, where Docker Hub (registry:2) is unreachable: Debian's
// docker-registry binary (distribution 2.8, from the swarm node image) with the glibc it links
// against, on the test busybox (sh, du for the tests). Laid out like registry:2 — the binary is
// /bin/registry and `serve CONFIG` / `garbage-collect CONFIG` are its arguments — so the agent's
// container runner uses it exactly as it uses the real image. Built once, reused while the tag exists.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBusyboxImage, ensureDocker, imageExists } from './docker.js';
import { runOk } from './swarm-exec.js';
import { ensureSwarmNodeImage } from './swarm-node-image.js';
import { makeTmpDir } from './tmp.js';

export const REGISTRY_TEST_IMAGE = 'berth-test/registry:2.8';

const FILES: Array<[string, string]> = [
  ['/usr/bin/docker-registry', 'bin/registry'],
  ['/lib/x86_64-linux-gnu/libc.so.6', 'lib/x86_64-linux-gnu/libc.so.6'],
  ['/lib64/ld-linux-x86-64.so.2', 'lib64/ld-linux-x86-64.so.2'],
];

let ready: Promise<string> | undefined;

/** The tag of the test registry image (built on first use, ~5 s once the node image exists). */
export function ensureRegistryImage(): Promise<string> {
  ready ??= build();
  ready.catch(() => (ready = undefined));
  return ready;
}

async function build(): Promise<string> {
  if (await imageExists(await ensureDocker(), REGISTRY_TEST_IMAGE)) return REGISTRY_TEST_IMAGE;
  const [nodeImage, busybox] = await Promise.all([ensureSwarmNodeImage(), ensureBusyboxImage()]);
  const dir = makeTmpDir('registry-image');
  const cid = (await runOk(['docker', 'create', nodeImage, 'true'], { timeoutMs: 60_000 })).trim();
  try {
    for (const [from, to] of FILES) {
      mkdirSync(join(dir, to, '..'), { recursive: true });
      await runOk(['docker', 'cp', '-L', `${cid}:${from}`, join(dir, to)], { timeoutMs: 60_000 });
    }
    writeFileSync(
      join(dir, 'Dockerfile'),
      [`FROM ${busybox}`, 'COPY bin/registry /bin/registry', 'COPY lib /lib', 'COPY lib64 /lib64', 'VOLUME /var/lib/registry', 'EXPOSE 5000',
        'ENTRYPOINT ["/bin/registry"]', 'CMD ["serve", "/etc/docker/registry/config.yml"]', ''].join('\n'),
    );
    await runOk(['docker', 'build', '-q', '-t', REGISTRY_TEST_IMAGE, dir], { timeoutMs: 180_000 });
    return REGISTRY_TEST_IMAGE;
  } finally {
    await runOk(['docker', 'rm', '-f', cid], { timeoutMs: 60_000 }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
