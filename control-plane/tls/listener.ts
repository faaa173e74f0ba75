// The control plane's listening socket. Without TLS it is a plain node:http server. With TLS, one
// port serves both: the first byte of a connection says which (0x16 starts a TLS handshake). TLS goes
// to the HTTPS server; plain HTTP is served only to loopback peers (the local agent and `berth` of an
// all-in-one machine keep using http://127.0.0.1:PORT) and is redirected to https for everyone else,
// so no token or secret ever crosses the network in clear.
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { isLoopbackHost } from './transport.js';

export interface ServerTimeouts {
  /** The request headers must arrive within this. */
  headersTimeoutMs: number;
  /** The whole request (headers and body) must arrive within this; the response is not limited. */
  requestTimeoutMs: number;
  /** How often node checks the two above (they are enforced up to this much late). */
  checkIntervalMs: number;
}

/**
 * A stalled or trickled upload is dropped within 30 s (25 s + up to one 5 s check). Only receiving the
 * request is timed: SSE and log streams, and upgraded WebSockets, live as long as they need.
 */
export const DEFAULT_SERVER_TIMEOUTS: ServerTimeouts = { headersTimeoutMs: 20_000, requestTimeoutMs: 25_000, checkIntervalMs: 5_000 };

/** A TLS handshake (or a connection's first byte) must come within this. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const TLS_HANDSHAKE_RECORD = 0x16;

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface FrontendOptions {
  handler: RequestListener;
  onUpgrade: UpgradeHandler;
  timeouts: ServerTimeouts;
  /** Set: serve HTTPS (certificate via setCertificate) and redirect non-loopback plain HTTP with `redirect`. */
  tls?: { redirect: RequestListener };
}

export interface Frontend {
  /** Listen; resolves with the actual port. */
  listen(port: number, host: string): Promise<number>;
  /** Serve this certificate from now on (new handshakes; open connections keep theirs). */
  setCertificate(pair: { cert: string; key: string }): void;
  /** The timeouts as the node server that parses requests has them. */
  timeouts(): ServerTimeouts;
  close(): Promise<void>;
}

export function httpServerOptions(t: ServerTimeouts) {
  return { headersTimeout: t.headersTimeoutMs, requestTimeout: t.requestTimeoutMs, connectionsCheckingInterval: t.checkIntervalMs };
}

/** Answer an upgrade that must not happen here with a plain error and close. */
export function refuseUpgrade(_req: IncomingMessage, socket: Duplex): void {
  socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
}

function timeoutsOf(server: HttpServer): ServerTimeouts {
  const s = server as HttpServer & { connectionsCheckingInterval: number };
  return { headersTimeoutMs: s.headersTimeout, requestTimeoutMs: s.requestTimeout, checkIntervalMs: s.connectionsCheckingInterval };
}

export function createFrontend(opts: FrontendOptions): Frontend {
  const http = createHttpServer(httpServerOptions(opts.timeouts), opts.handler);
  http.on('upgrade', opts.onUpgrade);
  if (!opts.tls) return plainFrontend(http);

  const https = createHttpsServer({ ...httpServerOptions(opts.timeouts), handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, opts.handler);
  https.on('upgrade', opts.onUpgrade);
  const redirect = createHttpServer(httpServerOptions(opts.timeouts), opts.tls.redirect);
  redirect.on('upgrade', refuseUpgrade);
  const inner = [http, https, redirect];

  const front: NetServer = createNetServer({ pauseOnConnect: true }, (socket: Socket) => {
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy());
    socket.once('error', () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] === TLS_HANDSHAKE_RECORD) {
        // The TLS socket takes over the handle and replays the buffered bytes itself; resuming the
        // raw socket here would feed them to nobody.
        https.emit('connection', socket);
        return;
      }
      (isLoopbackHost(socket.remoteAddress ?? '') ? http : redirect).emit('connection', socket);
      socket.resume();
    });
    socket.resume();
  });

  return {
    async listen(port, host) {
      await listenOn(front, port, host);
      // The inner servers never listen themselves, yet node starts their request/headers timeout
      // checks (and the connection tracking closeAllConnections uses) on 'listening'.
      for (const s of inner) s.emit('listening');
      return (front.address() as { port: number }).port;
    },
    setCertificate(pair) {
      https.setSecureContext(pair);
    },
    timeouts: () => timeoutsOf(https),
    async close() {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      for (const s of inner) {
        s.close(() => undefined);
        s.closeAllConnections();
      }
      await closed;
    },
  };
}

function plainFrontend(http: HttpServer): Frontend {
  return {
    async listen(port, host) {
      await listenOn(http, port, host);
      return (http.address() as { port: number }).port;
    },
    setCertificate() {
      throw new Error('this control plane serves plain HTTP');
    },
    timeouts: () => timeoutsOf(http),
    close: () => closeServer(http),
  };
}

export function listenOn(server: NetServer | HttpServer | HttpsServer, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function closeServer(server: HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
