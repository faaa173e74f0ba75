// Renewing a berth-managed cluster registry's certificate (control-plane/clusters/registry-renewal.ts)
// against a real control-plane SQLite store: what expires within 30 days is re-issued by the same
// CA for the same address, the cluster's nodes get a new desired-state revision, the rest is untouched.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createRegistryCa, issueServerCert, managedRegistry } from '../../control-plane/clusters/registry-ca.js';
import { renewRegistryCerts } from '../../control-plane/clusters/registry-renewal.js';
import { AgentHub } from '../../control-plane/hub.js';
import { openStores } from '../../control-plane/store/index.js';

const logger = pino({ level: 'silent' });
const DAY = 24 * 3600_000;

function storesWithClusters(names: string[]) {
  const stores = openStores(join(mkdtempSync(join(tmpdir(), 'berth-renewal-')), 'cp.db'));
  for (const [i, name] of names.entries()) {
    const manager = `mgr${i}`;
    stores.servers.create(manager, String(i).repeat(64), new Date(Date.now() + 60_000).toISOString());
    stores.clusters.create({ name, manager, advertise: `10.0.${i}.2`, addr_pool: '172.29.0.0/16' }, `node${i}`);
  }
  return stores;
}

describe('registry certificate renewal', () => {
  it('re-issues a certificate expiring within 30 days with the same CA and address, and bumps the nodes\' revision', async () => {
    const stores = storesWithClusters(['old', 'fresh']);
    const hub = new AgentHub({ stores, logger });
    try {
      // "old": issued 2 years minus 10 days ago (it expires in 10 days); "fresh": issued today.
      const old = await managedRegistry('old', '10.0.0.2', 5000);
      const ca = await createRegistryCa('old');
      const issued = new Date(Date.now() - (2 * 365 - 10) * DAY);
      const aging = await issueServerCert(ca, old.address, issued);
      stores.clusterRegistries.set({ ...old, caPem: ca.caPem, caKeyPem: ca.caKeyPem, certPem: aging.certPem, keyPem: aging.keyPem });
      const fresh = await managedRegistry('fresh', '10.0.1.2', 5000);
      stores.clusterRegistries.set(fresh);
      const revisionBefore = stores.servers.get('mgr0')!.spec_revision;

      assert.deepEqual(await renewRegistryCerts({ stores, hub, logger }), ['old']);

      const now = stores.clusterRegistries.get('old')!;
      assert.notEqual(now.certPem, aging.certPem, 'a new certificate');
      assert.notEqual(now.keyPem, aging.keyPem, 'with a new key');
      const cert = new X509Certificate(now.certPem!);
      assert.ok(Date.parse(cert.validTo) - Date.now() > 700 * DAY, `valid about 2 years again (to ${cert.validTo})`);
      assert.ok(cert.verify(new X509Certificate(ca.caPem).publicKey), 'signed by the cluster CA the nodes already trust');
      assert.equal(cert.subjectAltName, 'IP Address:10.0.0.2', 'for the same address');
      assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(now.keyPem!)), 'the stored key matches the certificate');
      assert.equal(now.password, old.password, 'the credentials are unchanged');
      assert.ok(stores.servers.get('mgr0')!.spec_revision > revisionBefore, 'the manager gets a new desired state');
      assert.equal(stores.clusterRegistries.get('fresh')!.certPem, fresh.certPem, 'a certificate far from its end is left alone');

      assert.deepEqual(await renewRegistryCerts({ stores, hub, logger }), [], 'nothing is due any more');
    } finally {
      await hub.close();
      stores.db.close();
    }
  });

  it('leaves an external registry alone', async () => {
    const stores = storesWithClusters(['ext']);
    const hub = new AgentHub({ stores, logger });
    try {
      stores.clusterRegistries.set({ cluster: 'ext', mode: 'external', address: 'reg.example:443', username: 'u', password: 'p', caPem: null, caKeyPem: null, certPem: null, keyPem: null, htpasswd: null });
      assert.deepEqual(await renewRegistryCerts({ stores, hub, logger }, new Date(Date.now() + 10 * 365 * DAY)), []);
    } finally {
      await hub.close();
      stores.db.close();
    }
  });
});
