// A man in the middle for installer tests: an HTTP proxy on loopback in front of a control plane that
// forwards everything (WebSocket upgrades included, so an agent can connect through it) and can
// rewrite response bodies and hold requests back — what an attacker on the network path can do.
import { request, createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TamperRules {
  /** A new body for the response to PATH (query included), or undefined to pass it on unchanged. */
  rewrite?(path: string, body: Buffer): Buffer | undefined;
  /** Called when a request arrives; the request is forwarded once the returned promise resolves. */
  hold?(path: string): Promise<void> | void;
}

export class TamperProxy {
  private constructor(
    private readonly server: Server,
    private readonly tunnels: Set<{ destroy(): void }>,
    readonly url: string,
  ) {}

  static async start(target: string, rules: TamperRules): Promise<TamperProxy> {
    const t = new URL(target);
    const tunnels = new Set<{ destroy(): void }>();
    const server = createServer((req, res) => {
      void (async () => {
        await rules.hold?.(req.url ?? '/');
        const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (upRes: IncomingMessage) => {
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          upRes.on('end', () => {
            const body = Buffer.concat(chunks);
            const out = rules.rewrite?.(req.url ?? '/', body) ?? body;
            const headers = { ...upRes.headers, 'content-length': String(out.length) };
            delete headers['transfer-encoding'];
            res.writeHead(upRes.statusCode ?? 502, headers).end(out);
          });
        });
        up.on('error', () => res.writeHead(502).end());
        req.pipe(up);
      })();
    });
    // WebSocket (the agent's connection): raw bytes both ways after replaying the request head.
    server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
      const up = connect(Number(t.port), t.hostname, () => {
        const lines = [`${req.method} ${req.url} HTTP/1.1`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        up.write(lines.join('\r\n') + '\r\n\r\n');
        if (head.length) up.write(head);
        up.pipe(socket).pipe(up);
      });
      tunnels.add(up).add(socket);
      up.on('error', () => socket.destroy());
      socket.on('error', () => up.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new TamperProxy(server, tunnels, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }

  async close(): Promise<void> {
    for (const s of this.tunnels) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The manifest text with KEY's value replaced. */
export function setManifestField(manifest: string, key: string, value: string): string {
  return manifest.replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`);
}
