// The berth-managed cluster registry's pure parts (issue 15): the CA and server certificate the
// control plane generates (verified with node's own X.509 and a real TLS handshake), the htpasswd
// line, what each node's agent is told (registrySpecFor), the registry config, the certs.d path
// check and the host runner's files and systemctl calls. The running registry: test/cluster.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { parse } from 'yaml';
import { advertisedHost, managedRegistry, registryAddressFor, RegistryAddressError } from '../../control-plane/clusters/registry-ca.js';
import { registrySpecFor, type ClusterRegistry } from '../../control-plane/clusters/registry-store.js';
import { renderRegistryConfig, registryFiles } from '../../agent/cluster/registry/config.js';
import { caPathFor, installCa, RegistryTrustError } from '../../agent/cluster/registry/trust.js';
import { HostRunner, HOST_UNIT } from '../../agent/cluster/registry/serve.js';
import { loadSettings, SettingsError } from '../../agent/settings.js';
import { RegistryKeeper } from '../../agent/cluster/registry/index.js';
import type { ClusterSpec } from '../../shared/spec.js';
import pino from 'pino';
import type Docker from 'dockerode';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), `berth-registry-${p}-`));

/** An HTTPS server with the registry's certificate; resolves with what a client trusting only the CA sees. */
async function handshake(reg: { certPem: string; keyPem: string; caPem: string }): Promise<string> {
  const server = createServer({ cert: reg.certPem, key: reg.keyPem }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    return await new Promise<string>((resolve, reject) => {
      // The chain only (the name is checked through subjectAltName above): it listens on 127.0.0.1.
      const req = request({ host: '127.0.0.1', port, ca: reg.caPem, path: '/', checkServerIdentity: () => undefined }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
  } finally {
    server.close();
  }
}

describe('managed registry material (control plane)', () => {
  it('derives host:port from the advertised address, refusing what cannot be an image name', () => {
    assert.equal(registryAddressFor('10.0.0.2', 5000), '10.0.0.2:5000');
    assert.equal(registryAddressFor('10.0.0.2:2377', 5443), '10.0.0.2:5443');
    assert.equal(registryAddressFor('Mgr.Example.com', 5000), 'mgr.example.com:5000');
    assert.equal(advertisedHost('[fd00::1]:2377'), '[fd00::1]');
    assert.equal(advertisedHost('fd00::1'), '[fd00::1]');
    assert.throws(() => registryAddressFor('bad_host', 5000), RegistryAddressError);
    assert.throws(() => registryAddressFor('10.0.0.2', 70_000), RegistryAddressError);
  });

  it('issues a CA and a server certificate for an IP (SAN IP) that verifies and serves TLS', async () => {
    const reg = await managedRegistry('prod', '10.1.2.3:2377', 5000);
    assert.equal(reg.mode, 'managed');
    assert.equal(reg.address, '10.1.2.3:5000');
    const ca = new X509Certificate(reg.caPem!);
    const cert = new X509Certificate(reg.certPem!);
    assert.equal(ca.ca, true);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(ca), 'issued by the CA');
    assert.ok(cert.verify(ca.publicKey), 'signed by the CA key');
    assert.ok(ca.verify(ca.publicKey), 'CA self-signed');
    assert.ok(cert.checkPrivateKey(createPrivateKey(reg.keyPem!)), 'key matches');
    assert.ok(ca.checkPrivateKey(createPrivateKey(reg.caKeyPem!)), 'CA key matches');
    assert.equal(cert.subjectAltName, 'IP Address:10.1.2.3');
    assert.ok(cert.checkIP('10.1.2.3'));
    assert.equal(cert.checkIP('10.1.2.4'), undefined);
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const years = (c: X509Certificate) => (Date.parse(c.validTo) - Date.parse(c.validFrom)) / (365 * 86_400_000);
    assert.ok(years(ca) > 9.9 && years(ca) < 10.1, `CA ~10 years (${years(ca)})`);
    assert.ok(years(cert) > 1.9 && years(cert) < 2.1, `server ~2 years (${years(cert)})`);
    assert.equal(await handshake(reg as { certPem: string; keyPem: string; caPem: string }), 'ok');
    // Another cluster's CA does not vouch for it.
    const other = await managedRegistry('other', '10.1.2.3', 5000);
    assert.equal(cert.verify(new X509Certificate(other.caPem!).publicKey), false);
    await assert.rejects(handshake({ ...(reg as { certPem: string; keyPem: string }), caPem: other.caPem! }), /certificate/);
  });

  it('puts a DNS name in subjectAltName as DNS, and makes a bcrypt htpasswd line for a random password', async () => {
    const reg = await managedRegistry('prod', 'mgr.example.com', 5001);
    assert.equal(new X509Certificate(reg.certPem!).subjectAltName, 'DNS:mgr.example.com');
    assert.equal(reg.username, 'berth');
    assert.ok(reg.password.length >= 32);
    const m = /^berth:(\$2y\$10\$.{53})\n$/.exec(reg.htpasswd!);
    assert.ok(m, reg.htpasswd!);
    const hash = m[1]!.replace(/^\$2y\$/, '$2b$');
    assert.ok(bcrypt.compareSync(reg.password, hash));
    assert.equal(bcrypt.compareSync(`${reg.password}x`, hash), false);
    const again = await managedRegistry('prod', 'mgr.example.com', 5001);
    assert.notEqual(again.password, reg.password);
  });
});

describe('registrySpecFor', () => {
  const base: ClusterRegistry = {
    cluster: 'prod', mode: 'managed', address: '10.0.0.2:5443', username: 'berth', password: 'pw-secret', caPem: 'CA', caKeyPem: 'CAKEY',
    certPem: 'CERT', keyPem: 'KEY', htpasswd: 'berth:$2y$10$x\n', updatedAt: '',
  };

  it('gives a worker only the address and the CA', () => {
    assert.deepEqual(registrySpecFor(base, 'worker'), { address: '10.0.0.2:5443', caPem: 'CA' });
  });

  it('gives the manager the credentials and, for a managed registry, what to serve (port from the address)', () => {
    assert.deepEqual(registrySpecFor(base, 'manager'), {
      address: '10.0.0.2:5443', caPem: 'CA', username: 'berth', password: 'pw-secret',
      serve: { port: 5443, certPem: 'CERT', keyPem: 'KEY', htpasswd: 'berth:$2y$10$x\n' },
    });
    const spec = registrySpecFor({ ...base, mode: 'external', caPem: null, caKeyPem: null, certPem: null, keyPem: null, htpasswd: null }, 'manager');
    assert.deepEqual(spec, { address: '10.0.0.2:5443', username: 'berth', password: 'pw-secret' });
    assert.equal(JSON.stringify(registrySpecFor(base, 'worker')).includes('CAKEY'), false);
    assert.equal(JSON.stringify(registrySpecFor(base, 'manager')).includes('CAKEY'), false);
  });
});

describe('registry config (agent)', () => {
  const serve = { port: 5000, certPem: 'C', keyPem: 'K', htpasswd: 'berth:$2y$10$x' };

  it('renders filesystem storage with deletes, TLS and htpasswd at the layout paths', () => {
    const conf = parse(renderRegistryConfig({ confDir: '/etc/berth-registry', storageDir: '/var/lib/registry' }, 5443, 'prod'));
    assert.equal(conf.storage.filesystem.rootdirectory, '/var/lib/registry');
    assert.equal(conf.storage.delete.enabled, true);
    assert.equal(conf.http.addr, '0.0.0.0:5443');
    assert.deepEqual(conf.http.tls, { certificate: '/etc/berth-registry/server.crt', key: '/etc/berth-registry/server.key' });
    assert.deepEqual(conf.auth, { htpasswd: { realm: 'berth-prod', path: '/etc/berth-registry/htpasswd' } });
    assert.throws(() => renderRegistryConfig({ confDir: '/etc/x\nauth: {}', storageDir: '/v' }, 5000, 'prod'), /must be absolute/);
    assert.throws(() => renderRegistryConfig({ confDir: 'relative', storageDir: '/v' }, 5000, 'prod'), /must be absolute/);
    assert.throws(() => renderRegistryConfig({ confDir: '/c', storageDir: '/v' }, 0, 'prod'), /not a port/);
  });

  it('keeps the key private and ends htpasswd with a newline', () => {
    const files = registryFiles({ confDir: '/c', storageDir: '/v' }, serve, 'prod');
    assert.equal(files.find((f) => f.name === 'server.key')!.mode, 0o600);
    assert.equal(files.find((f) => f.name === 'htpasswd')!.content, 'berth:$2y$10$x\n');
  });
});

describe('certs.d path check', () => {
  it('builds certs.d/HOST:PORT/ca.crt and refuses anything that is not a registry address', () => {
    assert.equal(caPathFor('/etc/docker/certs.d', '10.0.0.2:5000'), '/etc/docker/certs.d/10.0.0.2:5000/ca.crt');
    assert.equal(caPathFor('/etc/docker/certs.d', '[fd00::1]:5000'), '/etc/docker/certs.d/[fd00::1]:5000/ca.crt');
    for (const bad of ['../../etc:5000', 'a/b:5000', '..:5000', '10.0.0.2', '', 'x:5000/../../y', 'UPPER:5000']) {
      assert.throws(() => caPathFor('/etc/docker/certs.d', bad), RegistryTrustError, bad);
    }
  });

  it('writes the CA world-readable, once', () => {
    const dir = tmp('certs');
    assert.equal(installCa(dir, '10.0.0.2:5000', 'PEM\n'), true);
    const file = join(dir, '10.0.0.2:5000', 'ca.crt');
    assert.equal(readFileSync(file, 'utf8'), 'PEM\n');
    assert.equal(statSync(file).mode & 0o777, 0o644);
    assert.equal(installCa(dir, '10.0.0.2:5000', 'PEM\n'), false);
    assert.equal(installCa(dir, '10.0.0.2:5000', 'PEM2\n'), true);
  });
});

describe('host runner (Debian docker-registry as berth-registry.service)', () => {
  const serve = { port: 5000, certPem: 'CERT\n', keyPem: 'KEY\n', htpasswd: 'berth:$2y$10$x\n' };

  it('writes the config for the unit, restarts it on change only, and stops it around GC', async () => {
    const dir = join(tmp('host'), 'etc-berth-registry');
    const calls: string[] = [];
    let active = true;
    const runner = new HostRunner(dir, async (file, args) => {
      calls.push([file, ...args].join(' '));
      if (args[0] === 'is-active' && !active) throw new Error('inactive');
      return { stdout: args[0] === 'is-active' ? 'active\n' : 'GC done\n' };
    });
    assert.equal(await runner.ensure('prod', serve), 'created');
    assert.deepEqual(calls, [`systemctl restart ${HOST_UNIT}`]);
    const conf = parse(readFileSync(join(dir, 'config.yml'), 'utf8'));
    assert.equal(conf.storage.filesystem.rootdirectory, '/var/lib/docker-registry');
    assert.equal(conf.http.tls.key, `${dir}/server.key`);
    assert.equal(statSync(join(dir, 'server.key')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    calls.length = 0;
    assert.equal(await runner.ensure('prod', serve), 'unchanged');
    assert.deepEqual(calls, [`systemctl is-active ${HOST_UNIT}`]);
    active = false;
    calls.length = 0;
    assert.equal(await runner.ensure('prod', serve), 'started');
    assert.deepEqual(calls, [`systemctl is-active ${HOST_UNIT}`, `systemctl start ${HOST_UNIT}`]);
    calls.length = 0;
    assert.equal(await runner.ensure('prod', { ...serve, htpasswd: 'berth:$2y$10$y\n' }), 'created');
    assert.deepEqual(calls, [`systemctl restart ${HOST_UNIT}`]);
    calls.length = 0;
    assert.equal(await runner.collectGarbage(), 'GC done\n');
    assert.deepEqual(calls, [`systemctl stop ${HOST_UNIT}`, `/usr/bin/docker-registry garbage-collect ${dir}/config.yml`, `systemctl start ${HOST_UNIT}`]);
  });
});

describe('registry settings', () => {
  it('defaults to the registry:2 container and refuses an unknown runner', () => {
    const s = loadSettings({}, {});
    assert.equal(s.registryRunner, 'container');
    assert.equal(s.registryImage, 'registry:2');
    assert.equal(s.dockerCertsDir, '/etc/docker/certs.d');
    assert.equal(loadSettings({}, { BERTH_REGISTRY_RUNNER: 'host' }).registryRunner, 'host');
    assert.throws(() => loadSettings({}, { BERTH_REGISTRY_RUNNER: 'podman' }), (e: Error) => e instanceof SettingsError && /BERTH_REGISTRY_RUNNER/.test(e.message));
  });
});

describe('RegistryKeeper (what each node does with spec.cluster)', () => {
  const serve = { port: 5000, certPem: 'C', keyPem: 'K', htpasswd: 'h' };
  const setup = () => {
    const certsDir = tmp('keeper');
    const ensured: string[] = [];
    const runner = { kind: 'container' as const, ensure: async (_c: string, s: { htpasswd: string }) => (ensured.push(s.htpasswd), 'created' as const), collectGarbage: async () => '' };
    const settings = { dataDir: tmp('keeper-data'), server: 'web1', registryRunner: 'container' as const, registryImage: 'registry:2', dockerCertsDir: certsDir };
    return { certsDir, ensured, keeper: new RegistryKeeper(settings, {} as Docker, pino({ level: 'silent' }), runner) };
  };

  it('a worker installs the CA only; the manager with serve also runs the registry, with the latest spec', async () => {
    const worker = setup();
    await worker.keeper.apply({ name: 'prod', role: 'worker', registry: { address: '10.0.0.2:5000', caPem: 'CA\n' } });
    assert.equal(readFileSync(join(worker.certsDir, '10.0.0.2:5000', 'ca.crt'), 'utf8'), 'CA\n');
    assert.deepEqual(worker.ensured, []);

    const manager = setup();
    const spec = (htpasswd: string): ClusterSpec => ({ name: 'prod', role: 'manager', registry: { address: '10.0.0.2:5000', caPem: 'CA\n', username: 'berth', password: 'p', serve: { ...serve, htpasswd } } });
    // Three specs before the queued run starts: one run, with the latest.
    await Promise.all([manager.keeper.apply(spec('h1')), manager.keeper.apply(spec('h2')), manager.keeper.apply(spec('h3'))]);
    assert.deepEqual(manager.ensured, ['h3']);
    await manager.keeper.apply(spec('h4'));
    assert.deepEqual(manager.ensured, ['h3', 'h4']);
    // No registry in the spec: nothing happens.
    await manager.keeper.apply({ name: 'prod', role: 'manager' });
    assert.deepEqual(manager.ensured, ['h3', 'h4']);
  });
});
