// dockerode for the agent without its rarely used transports and build helpers loaded at start. At
// import, docker-modem requires `ssh2` (for DOCKER_HOST=ssh://…; with its wasm crypto), dockerode
// requires gRPC + protobuf (BuildKit sessions, only for `buildImage` with `version: '2'`) and, in its
// util.js, tar-fs + @balena/dockerignore (`buildImage` from a directory). The agent talks to the local
// Unix socket, builds without BuildKit sessions and packs its own build context, so these modules are
// put in the require cache as stand-ins that load the real module on first use: nothing changes for
// someone who uses them but when they load (measured: docs/benchmarks.md, "Agent footprint" and
// "Agent memory").
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);
const NodeModule = require('node:module') as { new (id: string): NodeJS.Module };

/** Put `standIn(load)` in the require cache at `path`; `load()` swaps in and returns the real module. */
function defer(path: string, standIn: (load: () => any) => unknown): void {
  if (require.cache[path]) return; // already loaded for real: nothing to save
  let real: unknown;
  let loaded = false;
  const load = () => {
    if (!loaded) {
      delete require.cache[path];
      real = require(path);
      loaded = true;
    }
    return real;
  };
  const mod = new NodeModule(path);
  mod.filename = path;
  mod.loaded = true;
  mod.exports = standIn(load);
  require.cache[path] = mod;
}

const dockerodeDir = dirname(require.resolve('dockerode/package.json'));
const modemDir = dirname(require.resolve('docker-modem/package.json', { paths: [dockerodeDir] }));

// docker-modem reads `require('ssh2').Client` when it loads and constructs one per ssh:// connection.
defer(require.resolve('ssh2', { paths: [modemDir] }), (load) => {
  class Client {
    constructor(...args: unknown[]) {
      return new (load().Client)(...args);
    }
  }
  return new Proxy({}, { get: (_, key) => (key === 'Client' ? Client : load()[key]) });
});
// dockerode's session module is one function: `withSession(docker, auth, handler)`.
defer(require.resolve('dockerode/lib/session.js'), (load) => (...args: unknown[]) => load()(...args));
// dockerode's util.js requires tar-fs and @balena/dockerignore for `buildImage` from a directory (berth
// packs its own context: agent/build/image.ts, loaded with the deploy runner). tar-fs is an object of
// functions (`pack`, `extract`); dockerignore a factory function that also carries `default`.
defer(require.resolve('tar-fs', { paths: [dockerodeDir] }), (load) =>
  new Proxy(
    {},
    {
      get: (_, key) => load()[key],
      has: (_, key) => key in load(),
      ownKeys: () => Reflect.ownKeys(load()),
      getOwnPropertyDescriptor: (_, key) => Reflect.getOwnPropertyDescriptor(load(), key),
    },
  ),
);
defer(require.resolve('@balena/dockerignore', { paths: [dockerodeDir] }), (load) =>
  new Proxy(function dockerignore() {}, { apply: (_, self, args) => load().apply(self, args), get: (_, key) => load()[key] }),
);

const Docker = require('dockerode') as typeof import('dockerode');
export default Docker;
