// What a started agent has loaded (issue 20, "Agent at 50 MB"): the subsystems an idle agent never uses
// load on first use (agent/runtime/lazy-*.ts, agent/docker/client.ts, certs' acme-client), so a real
// `berth agent` — real nginx, real Docker, its first reconcile pass done — must not have loaded them.
// The process reports its modules through a preload that only observes (test/helpers/module-trace.ts).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { startDaemon, stopDaemon, type Daemon } from './helpers/stack.js';
import { eventually } from './helpers/http.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';
import { execFileSync } from 'node:child_process';

const TRACE = fileURLToPath(new URL('./helpers/module-trace.js', import.meta.url));

/** Loaded at start only on first use: [what, a path fragment of one of its files]. */
const LAZY: Array<[string, string]> = [
  ['the deploy runner', '/dist/agent/deploy/runner.js'],
  ['the build code', '/dist/agent/build/image.js'],
  ['the app config loader', '/dist/agent/config/index.js'],
  ['cluster mode', '/dist/agent/cluster/'],
  ['yaml', '/node_modules/yaml/'],
  ['tar-fs', '/node_modules/tar-fs/'],
  ['dockerignore', '/node_modules/@balena/dockerignore/'],
  ['acme-client', '/node_modules/acme-client/'],
  ['ssh2', '/node_modules/ssh2/'],
  ['gRPC', '/node_modules/@grpc/grpc-js/'],
  ['protobufjs', '/node_modules/protobufjs/'],
];

function passes(dataDir: string): number {
  if (!existsSync(join(dataDir, 'agent.db'))) return 0;
  const db = new Database(join(dataDir, 'agent.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM reconcile_runs').get() as { n: number }).n;
  } catch {
    return 0; // the table is not there yet
  } finally {
    db.close();
  }
}

describe('agent start: rarely used subsystems are not loaded', () => {
  const root = makeTmpDir('berth-start-modules-');
  const dataDir = join(root, 'data');
  const nginxPrefix = join(root, 'nginx');
  const traceFile = join(root, 'modules.txt');
  let agent: Daemon | undefined;

  after(async () => {
    await stopDaemon(agent);
    if (existsSync(join(nginxPrefix, 'nginx.pid'))) execFileSync('nginx', ['-s', 'quit', '-p', nginxPrefix, '-c', 'nginx.conf'], { stdio: 'ignore' });
  });

  it('a started agent (HTTPS on, control plane unreachable) has loaded none of them after its first reconcile pass', { timeout: 60_000 }, async () => {
    mkdirSync(dataDir, { mode: 0o700 });
    // An enrolled agent whose control plane is down: it starts, reconciles and keeps retrying the link.
    writeFileSync(join(dataDir, 'agent.json'), JSON.stringify({ controlPlaneUrl: 'http://127.0.0.1:9', server: 'start-modules', credential: 'unused' }), { mode: 0o600 });
    const [http, https] = [await freePort(), await freePort()];
    agent = startDaemon(['agent', '--data', dataDir], {
      NODE_OPTIONS: `--import ${TRACE}`,
      BERTH_TRACE_MODULES: traceFile,
      BERTH_NGINX_PREFIX: nginxPrefix,
      BERTH_HTTP_PORT: String(http),
      BERTH_HTTPS_PORT: String(https),
      BERTH_ACME_WEBROOT: join(root, 'acme'),
      BERTH_STATIC_DIR: join(root, 'static'),
    }, join(root, 'agent.log'));
    await eventually(async () => passes(dataDir), (n) => n >= 1, 30_000).catch((err) => {
      throw new Error(`the agent did not finish a reconcile pass: ${String(err)}\n${readFileSync(join(root, 'agent.log'), 'utf8').slice(-3000)}`);
    });
    agent.proc.kill('SIGUSR2');
    const modules = await eventually(async () => (existsSync(traceFile) ? readFileSync(traceFile, 'utf8') : '') + readFileSync(`${traceFile}.esm`, 'utf8'), (s) => s.includes('/node_modules/dockerode/'), 10_000);
    // The trace saw the agent itself and what it does use: it is not an empty list that passes anything.
    for (const used of ['/dist/agent/main.js', '/dist/agent/reconcile/reconciler.js', '/node_modules/dockerode/', '/node_modules/better-sqlite3/', '/node_modules/ws/']) {
      assert.ok(modules.includes(used), `the trace does not list ${used}`);
    }
    const lines = modules.split('\n').filter((l) => !l.endsWith(' (stand-in)'));
    assert.ok(modules.includes('/node_modules/ssh2/lib/index.js (stand-in)'), 'the ssh2 stand-in is not in the require cache');
    const loaded = LAZY.filter(([, fragment]) => lines.some((l) => l.includes(fragment))).map(([what]) => what);
    assert.deepEqual(loaded, [], `loaded at start: ${loaded.join(', ')}`);
  });
});
