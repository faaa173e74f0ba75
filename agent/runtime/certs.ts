// HTTPS for the agent: exactly one CertManager per process (acme-client's HTTP client is
// process-wide), none when HTTPS is off (BERTH_HTTPS_PORT=0: no certificates, no ACME traffic).
import type { Logger } from '../../shared/logger.js';
import { CertManager } from '../certs/index.js';
import type { Nginx } from '../nginx/index.js';
import type { CertPort } from '../reconcile/executor.js';
import type { AgentSettings } from '../settings.js';

/** The CertManager for `settings`, or null with HTTPS off. `renewed` runs after nginx took a renewal. */
export function createCertManager(settings: AgentSettings, logger: Logger, nginx: Nginx, renewed: (app: string) => void): CertManager | null {
  if (settings.httpsPort <= 0) return null;
  const certs: CertManager = new CertManager({
    dataDir: settings.dataDir,
    webroot: settings.acmeWebroot,
    acme: {
      directoryUrl: settings.acmeDirectory,
      ...(settings.acmeCa ? { caFile: settings.acmeCa } : {}),
      ...(settings.acmeEmail ? { email: settings.acmeEmail } : {}),
      skipChallengeVerification: settings.acmeSkipPrecheck,
      challengeHttpPort: settings.httpPort,
    },
    policy: { thresholdMs: Math.round(settings.certRenewDays * 86_400_000), minRenewIntervalMs: settings.certMinRenewIntervalMs },
    log: logger.child({ component: 'certs' }),
    // Same paths, new files: a reload picks the certificate up. If nginx refuses it, the
    // previous one is selected again (the store directly: this runs inside the issuance queue).
    onRenewed: async (app) => {
      try {
        await nginx.reload(`the renewed certificate of ${app}`, [app]);
      } catch (err) {
        certs.store.rollback(app);
        await nginx.reload(`the previous certificate of ${app}`, [app]).catch((again) => logger.error({ app, err: again }, 'nginx did not take the previous certificate either'));
        throw err;
      }
      renewed(app);
    },
  });
  return certs;
}

/** The reconcile loop's view of the CertManager. */
export function certPort(certs: CertManager): CertPort {
  return {
    observe: (apps) => certs.observe(apps),
    ensure: async (app, domains) => {
      const r = await certs.ensureReport(app, domains);
      return { changed: r.changed, error: r.error };
    },
    rejected: async (app, why) => {
      await certs.rejected(app, why);
    },
    remove: (app) => certs.remove(app),
  };
}
