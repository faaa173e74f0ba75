// `berth status` while the agent is stopped: read its SQLite (read-only), its credentials file and
// the certificate files, and ask Docker what still runs — apps keep serving without the agent.
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { CertStatus } from '../certs/index.js';
import { AgentStore } from '../store/index.js';
import { gatherStatus } from './gather.js';
import type { StatusReport } from './report.js';

/** Certificates as the files say (the renewal records belong to the running agent). */
function certsFromDisk(dataDir: string, now: Date): CertStatus[] {
  const root = join(dataDir, 'certs');
  if (!existsSync(root)) return [];
  const out: CertStatus[] = [];
  for (const app of readdirSync(root)) {
    const file = join(root, app, 'fullchain.pem');
    if (!existsSync(file)) continue;
    try {
      const cert = new X509Certificate(readFileSync(file));
      const notAfter = new Date(cert.validTo);
      const names = (cert.subjectAltName ?? '').split(',').map((s) => s.trim().replace(/^DNS:/, '')).filter(Boolean);
      const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
      out.push({
        app,
        domains: names,
        certDomains: names,
        state: daysLeft < 0 ? 'expired' : 'valid',
        issuer: cert.issuer.split('\n').find((l) => l.startsWith('CN='))?.slice(3) ?? null,
        notBefore: new Date(cert.validFrom).toISOString(),
        notAfter: notAfter.toISOString(),
        daysLeft,
        lastAttemptAt: null,
        lastResult: null,
        lastError: null,
        lastSuccessAt: null,
        failures: 0,
        nextAttemptAt: null,
      } as CertStatus);
    } catch {
      // an unreadable certificate is shown as missing by omission
    }
  }
  return out;
}

export async function stoppedAgentStatus(dataDir: string, dockerSocket: string, version: string): Promise<StatusReport> {
  let creds: { controlPlaneUrl?: string; server?: string } = {};
  try {
    creds = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')) as typeof creds;
  } catch {
    // not joined yet: the report says so through its empty fields
  }
  const store = AgentStore.openReadOnly(dataDir);
  try {
    return await gatherStatus({
      store,
      docker: new Docker({ socketPath: dockerSocket }),
      agent: { running: false, version, pid: null, startedAt: null, dataDir, server: creds.server ?? '' },
      connection: null,
      controlPlaneUrl: creds.controlPlaneUrl ?? null,
      certs: certsFromDisk(dataDir, new Date()),
    });
  } finally {
    store.close();
  }
}
