// A real Debian runtime for the build images (python, node, ruby) without a registry: a minimal
// bookworm with the three languages, built once and reused while the tag exists. Tests point
// BERTH_BASE_IMAGE_PYTHON/NODE/RUBY at it, so the production code path runs.
import { debianImageOnce, execFileP } from './debian-image.js';

export const RUNTIME_IMAGE = 'berth-test/runtime:bookworm';

/** The tag of a Debian bookworm image with python3/pip, node/npm and ruby/bundler (built once, ~1 min). */
export const ensureRuntimeImage = debianImageOnce({
  name: RUNTIME_IMAGE,
  packages: ['python3', 'python3-pip', 'nodejs', 'ruby', 'ruby-bundler'],
  // npm is installed afterwards with apt inside the tree: debootstrap's own resolver fails on npm's
  // dependency graph (virtual packages among the node-* libraries).
  prepare: async (root) => {
    await execFileP('chroot', [root, 'apt-get', 'install', '-y', '-q', '--no-install-recommends', 'npm'], {
      timeout: 10 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    }).catch((err: Error & { stderr?: string }) => {
      throw new Error(`installing npm into the runtime image failed: ${err.message}\n${(err.stderr ?? '').trim().split('\n').slice(-5).join('\n')}`);
    });
  },
});
