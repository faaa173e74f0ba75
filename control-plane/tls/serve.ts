// Put the control plane's request handler on the network as the transport settings say: plain
// HTTP, HTTPS from files, or HTTPS with its own ACME certificate (plus, without --acme-webroot, the
// port-80 listener for HTTP-01 challenges that redirects everything else to https).
import type { RequestListener } from 'node:http';
import { join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { ConfigError } from '../errors.js';
import { AcmeCertificate, FileCertificate } from './certificates.js';
import { ChallengeServer, redirectToHttps } from './challenges.js';
import { createFrontend, type ServerTimeouts, type UpgradeHandler } from './listener.js';
import type { TlsOptions } from './transport.js';

export interface ServeOptions {
  host: string;
  port: number;
  handler: RequestListener;
  onUpgrade: UpgradeHandler;
  tls?: TlsOptions;
  /** The control plane's data dir: an ACME certificate is kept in DATA/tls. */
  dataDir: string;
  publicUrl: () => string;
  timeouts: ServerTimeouts;
  logger: Logger;
}

export interface Serving {
  port: number;
  timeouts: ServerTimeouts;
  close(): Promise<void>;
}

export const TLS_DIR = 'tls';

export async function serve(o: ServeOptions): Promise<Serving> {
  const { tls, logger } = o;
  const frontend = createFrontend({
    handler: o.handler,
    onUpgrade: o.onUpgrade,
    timeouts: o.timeouts,
    ...(tls ? { tls: { redirect: redirectToHttps(o.publicUrl) } } : {}),
  });
  const stops: Array<() => Promise<void> | void> = [];
  const close = async () => {
    for (const stop of stops.reverse()) await stop();
  };
  try {
    if (tls?.kind === 'files') {
      const files = new FileCertificate(tls.certFile, tls.keyFile, (p) => frontend.setCertificate(p), logger.child({ component: 'tls' }));
      files.start(); // a bad pair fails the start, before anything listens
      stops.push(() => files.stop());
    }
    const port = await frontend.listen(o.port, o.host);
    stops.push(() => frontend.close());
    if (tls?.kind === 'acme') {
      let challenges: ChallengeServer | undefined;
      if (!tls.webroot) {
        challenges = new ChallengeServer(o.publicUrl, o.timeouts);
        await listenForChallenges(challenges, tls.httpPort ?? 80, o.host);
        stops.push(() => challenges!.close());
      }
      const acme = new AcmeCertificate({
        domain: tls.domain,
        acme: tls.acme,
        dir: join(o.dataDir, TLS_DIR),
        ...(tls.webroot ? { webroot: tls.webroot } : {}),
        ...(challenges ? { challenges } : {}),
        onPair: (p) => frontend.setCertificate(p),
        log: logger.child({ component: 'tls' }),
      });
      acme.start();
      stops.push(() => acme.stop());
    }
    return { port, timeouts: frontend.timeouts(), close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function listenForChallenges(server: ChallengeServer, port: number, host: string): Promise<void> {
  try {
    await server.listen(port, host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(
      `cannot listen on ${host}:${port} for ACME HTTP-01 challenges (${code}); if another web server owns port ${port}, give --acme-webroot DIR that it serves at /.well-known/acme-challenge/`,
    );
  }
}
