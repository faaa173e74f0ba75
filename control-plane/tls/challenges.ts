// HTTP-01 for the control plane's own certificate without another web server: a small listener on
// port 80 (--acme-http-port) that answers /.well-known/acme-challenge/TOKEN from memory and
// redirects every other request to the https:// public URL.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { ChallengeResponder } from '../../shared/acme.js';
import { closeServer, httpServerOptions, listenOn, refuseUpgrade, type ServerTimeouts } from './listener.js';

const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;

/** 308 to the same path on the https public URL (its origin only: the Host header is never used). */
export function redirectToHttps(publicUrl: () => string): RequestListener {
  return (req, res) => {
    let origin: string;
    try {
      origin = new URL(publicUrl()).origin;
    } catch {
      res.writeHead(503, { connection: 'close' }).end('starting\n'); // the public URL is known once listening
      return;
    }
    const path = (req.url ?? '/').startsWith('/') ? req.url! : '/';
    res.writeHead(308, { location: origin + path, 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    res.end(`this control plane is served over HTTPS: ${origin}\n`);
  };
}

export class ChallengeServer implements ChallengeResponder {
  private readonly tokens = new Map<string, string>();
  private readonly server: Server;

  constructor(publicUrl: () => string, timeouts: ServerTimeouts) {
    const redirect = redirectToHttps(publicUrl);
    this.server = createServer(httpServerOptions(timeouts), (req, res) => {
      const m = CHALLENGE_PATH.exec((req.url ?? '').split('?')[0]!);
      if (!m) return redirect(req, res);
      const keyAuthorization = this.tokens.get(m[1]!);
      res.writeHead(keyAuthorization ? 200 : 404, { 'content-type': 'text/plain' });
      res.end(keyAuthorization ?? 'no such challenge\n');
    });
    this.server.on('upgrade', refuseUpgrade);
  }

  put(token: string, keyAuthorization: string): void {
    this.tokens.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.tokens.delete(token);
  }

  listen(port: number, host: string): Promise<void> {
    return listenOn(this.server, port, host);
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}
