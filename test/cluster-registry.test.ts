// The berth-managed cluster registry (issue 15) on the real test bed: two Docker engines in
// containers with a berth agent each, a control plane on the host. `berth cluster create` makes the
// CA, certificate and credentials; the manager's agent runs the registry (container runner, the test
// image built from Debian's docker-registry); every agent installs the CA under certs.d with no daemon
// restart. Unauthenticated access is refused, a push with the credentials works, the worker pulls by
// digest, nothing secret is in the database in clear, and pruneRepository + GC shrink the storage.
// One shared bed for the file. docs/cluster.md ("Registry").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ClusterDetails, ClusterNodeInfo } from '../shared/api.js';
import { ClusterRegistryStore, type ClusterRegistry } from '../control-plane/clusters/registry-store.js';
import { SecretBox } from '../control-plane/secret-box.js';
import { DB_FILE, type Db } from '../control-plane/store/db.js';
import { ContainerRunner, pruneRepository, type RegistryAccess } from '../agent/cluster/registry/index.js';
import { eventually } from './helpers/http.js';
import { CHECK_IMAGE, cli, startSwarmWithAgents, type SwarmWithAgents } from './helpers/swarm-agents.js';
import { ensureSwarmNodeImage } from './helpers/swarm-node-image.js';
import { stepTimer } from './helpers/timings.js';

const CLUSTER = 'reg';

describe('berth-managed cluster registry', { timeout: 10 * 60_000 }, () => {
  let bed: SwarmWithAgents;
  let address = '';
  let reg: ClusterRegistry;
  const { timings, timed } = stepTimer();
  const digests: Record<string, string> = {};
  const dockerdPids: Record<string, string> = {};
  const json = async <T>(args: string[]): Promise<T> => {
    const res = await cli(bed, [...args, '--json']);
    assert.equal(res.code, 0, `berth ${args.join(' ')}: ${res.stderr}`);
    return JSON.parse(res.stdout) as T;
  };
  const exec = (server: string, argv: string[], input?: string) => bed.swarm.exec(bed.agent(server).node, argv, { timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });
  const tryExec = (server: string, argv: string[]) => bed.swarm.tryExec(bed.agent(server).node, argv, { timeoutMs: 120_000 });
  const caFile = () => `/etc/docker/certs.d/${address}/ca.crt`;
  /** /v2/ through TLS verified with the CA the node's agent installed: 401 when up with auth on. */
  const v2Status = (server: string) => tryExec(server, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', caFile(), `https://${address}/v2/`]);
  const storageKb = async () => Number((await exec('web1', ['docker', 'exec', 'berth-registry', 'du', '-sk', '/var/lib/registry'])).split(/\s/)[0]);
  const login = (server: string) => exec(server, ['docker', 'login', address, '-u', reg.username, '--password-stdin'], reg.password);
  const access = (): RegistryAccess => ({ address, caPem: reg.caPem!, username: reg.username, password: reg.password });

  /** The registry as the control plane stored it, read with the control plane's own key (the test needs the password). */
  function storedRegistry(): ClusterRegistry {
    const db = new Database(join(bed.cpData, DB_FILE), { readonly: true });
    try {
      const key = Buffer.from(readFileSync(join(bed.cpData, 'secret.key'), 'utf8').trim(), 'base64');
      return new ClusterRegistryStore(db as unknown as Db, new SecretBox(key)).get(CLUSTER)!;
    } finally {
      db.close();
    }
  }

  before(async () => {
    await timed('node image (0 when it exists)', () => ensureSwarmNodeImage());
    bed = await timed('2 nodes with enrolled agents', () => startSwarmWithAgents({ nodes: 2 }));
    for (const s of ['web1', 'web2']) dockerdPids[s] = (await exec(s, ['pidof', 'dockerd'])).trim();
  });

  after(async () => {
    for (const [k, ms] of Object.entries(timings)) process.stderr.write(`# ${k}: ${ms} ms\n`);
    await bed?.close();
  });

  it('cluster create makes a managed registry on the manager: TLS from the cluster CA, 401 without credentials', async () => {
    const created = await timed('cluster create', () => json<ClusterDetails>(['cluster', 'create', CLUSTER, '--manager', 'web1']));
    address = `${bed.agent('web1').node.ip}:5000`;
    assert.deepEqual(created.registry, { address, mode: 'managed' });
    const added = await timed('cluster add', () => json<ClusterNodeInfo>(['cluster', 'add', CLUSTER, 'web2']));
    assert.equal(added.reachability, 'reachable', JSON.stringify(added));
    const shown = await json<ClusterDetails>(['cluster', 'show', CLUSTER]);
    assert.deepEqual(shown.registry, { address, mode: 'managed' });
    reg = storedRegistry();
    assert.equal(reg.address, address);
    assert.equal(JSON.stringify(shown).includes(reg.password), false, 'no password in cluster show');

    await timed('registry up (401 over verified TLS on both nodes)', () =>
      Promise.all(['web1', 'web2'].map((s) => eventually(() => v2Status(s), (r) => r.stdout === '401', 90_000, 500))),
    ).catch((err: Error) => assert.fail(`${err.message}\n${bed.tail('web1')}`));
    for (const s of ['web1', 'web2']) assert.equal((await exec(s, ['cat', caFile()])), reg.caPem, `the CA on ${s}`);
    // The registry container: berth's labels, restart policy, the port, a labelled volume, the config read-only.
    const info = await bed.agent('web1').node.docker.getContainer('berth-registry').inspect();
    assert.equal(info.Config.Labels['berth.registry'], CLUSTER);
    assert.equal(info.HostConfig.RestartPolicy?.Name, 'unless-stopped');
    assert.deepEqual(info.HostConfig.PortBindings?.['5000/tcp'], [{ HostIp: '', HostPort: '5000' }]);
    assert.ok(info.Mounts.some((m) => m.Name === 'berth-registry-data' && m.Destination === '/var/lib/registry'), JSON.stringify(info.Mounts));
    assert.ok(info.Mounts.some((m) => m.Destination === '/etc/berth-registry' && m.RW === false), JSON.stringify(info.Mounts));
    const volume = (await bed.agent('web1').node.docker.getVolume('berth-registry-data').inspect()) as { Labels: Record<string, string> };
    assert.equal(volume.Labels['berth.registry'], CLUSTER);
    assert.equal((await exec('web1', ['stat', '-c', '%a', '/var/lib/berth/registry/server.key'])).trim(), '600');
    // A wrong password is refused too.
    const wrong = await tryExec('web1', ['sh', '-c', 'echo wrong-password | docker login "$1" -u berth --password-stdin', 'sh', address]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /unauthorized|401/i);
  });

  it('a push with the credentials works from the manager; the worker pulls by digest, never without credentials', async () => {
    await login('web1');
    const push = async (tag: string) => {
      await exec('web1', ['docker', 'push', `${address}/demo:${tag}`]);
      const ref = (await exec('web1', ['docker', 'image', 'inspect', '--format', '{{join .RepoDigests "\\n"}}', `${address}/demo:${tag}`])).split('\n').find((d) => d.startsWith(`${address}/demo@sha256:`));
      assert.ok(ref, `digest of demo:${tag}`);
      digests[tag] = ref.trim().split('@')[1]!;
    };
    await timed('push v1 and v2 (4 MB of its own)', async () => {
      await exec('web1', ['docker', 'tag', CHECK_IMAGE, `${address}/demo:v1`]);
      await push('v1');
      await exec('web1', ['docker', 'build', '-q', '-t', `${address}/demo:v2`, '-'], `FROM ${CHECK_IMAGE}\nRUN dd if=/dev/urandom of=/blob bs=1024 count=4096\n`);
      await push('v2');
    });
    assert.notEqual(digests.v1, digests.v2);

    const unauth = await tryExec('web2', ['docker', 'pull', `${address}/demo@${digests.v1}`]);
    assert.notEqual(unauth.code, 0, 'an unauthenticated pull is refused');
    assert.match(unauth.stderr, /no basic auth credentials|unauthorized/i);
    await login('web2');
    await timed('worker pulls by digest', () => exec('web2', ['docker', 'pull', `${address}/demo@${digests.v2}`]));
    // Trusted through certs.d, read per pull: neither engine was restarted.
    for (const s of ['web1', 'web2']) assert.equal((await exec(s, ['pidof', 'dockerd'])).trim(), dockerdPids[s], `dockerd on ${s} was not restarted`);
  });

  it('the database and the logs hold no registry password or private key in clear', () => {
    const files = [DB_FILE, `${DB_FILE}-wal`].map((f) => join(bed.cpData, f)).filter(existsSync);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    const body = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'))[1]!;
    // The public CA is stored in clear: the search itself finds what is there.
    assert.ok(bytes.includes(body(reg.caPem!)), 'the CA certificate is found in the database files');
    assert.equal(bytes.includes(reg.password), false, 'registry password in clear');
    assert.equal(bytes.includes(body(reg.keyPem!)), false, 'TLS key in clear');
    assert.equal(bytes.includes(body(reg.caKeyPem!)), false, 'CA key in clear');
    const logs = [bed.cpLog, ...bed.agents.map((a) => a.logFile)].map((f) => readFileSync(f, 'utf8')).join('\n');
    assert.ok(logs.includes('cluster registry running'), 'the logs searched are the ones the agents write');
    for (const secret of [reg.password, body(reg.keyPem!), body(reg.caKeyPem!)]) assert.equal(logs.includes(secret), false, 'a registry secret in a log');
  });

  it('pruneRepository deletes the manifests not kept and garbage collection shrinks the storage', async () => {
    const before = await storageKb();
    const runner = new ContainerRunner({ docker: bed.agent('web1').node.docker, hostConfDir: '/var/lib/berth/registry', image: '', server: 'web1' });
    const report = await timed('prune + GC', () => pruneRepository(access(), 'demo', [digests.v1!], runner));
    assert.deepEqual(report.deleted, [digests.v2]);
    assert.deepEqual(report.kept, [digests.v1]);
    const afterKb = await storageKb();
    assert.ok(afterKb < before - 3_000, `storage ${before} KB → ${afterKb} KB (the 4 MB layer reclaimed)`);
    await eventually(() => v2Status('web1'), (r) => r.stdout === '401', 60_000, 500);
    // The kept digest still pulls on the worker, the deleted one is gone.
    await exec('web2', ['docker', 'image', 'rm', '-f', `${address}/demo@${digests.v2}`]).catch(() => undefined);
    await exec('web2', ['docker', 'pull', `${address}/demo@${digests.v1}`]);
    const gone = await tryExec('web2', ['docker', 'pull', `${address}/demo@${digests.v2}`]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /manifest unknown|not found/i);
    // Nothing left to delete: no GC, no interruption.
    assert.deepEqual(await pruneRepository(access(), 'demo', [digests.v1!], runner), { deleted: [], kept: [digests.v1] });
  });
});
