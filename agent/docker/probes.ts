// Network probes of a web container: TCP on its own address and on the published port, HTTP GET
// on the published port. They answer (true/false, a status or an error text); they never throw.
import type Docker from 'dockerode';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

/** Resolves true when something accepts a TCP connection at host:port within timeoutMs. */
export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * The published port alone proves nothing: docker-proxy accepts connections on it even when
 * the app is not listening yet (and then closes them). So the app itself is probed on its
 * container address, and the published port is probed as the path nginx will use.
 */
export async function acceptsConnections(info: Docker.ContainerInspectInfo, hostPort: number): Promise<boolean> {
  const internal = internalAddress(info, hostPort);
  if (internal && !(await tcpProbe(internal.ip, internal.port, 1000))) return false;
  return tcpProbe('127.0.0.1', hostPort, 1000);
}

/** The container's bridge address and the container port published as hostPort (null in host networking). */
function internalAddress(info: Docker.ContainerInspectInfo, hostPort: number): { ip: string; port: number } | null {
  const ip = Object.values(info.NetworkSettings?.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress ?? '';
  if (!ip) return null;
  const bindings = (info.HostConfig?.PortBindings ?? {}) as Record<string, Array<{ HostPort?: string }> | null>;
  for (const [key, list] of Object.entries(bindings)) {
    if (list?.some((b) => Number(b.HostPort) === hostPort)) return { ip, port: Number(key.split('/')[0]) };
  }
  return null;
}

/** GET http://ADDRESS:port/path (ADDRESS: 127.0.0.1, or a cluster node's) → the status code as text, or what went wrong. */
export function httpProbe(port: number, path: string, host: string | undefined, timeoutMs: number, address = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'user-agent': 'berth-healthcheck' };
    if (host) headers.host = host;
    const req = httpRequest({ host: address, port, path, method: 'GET', agent: false, timeout: timeoutMs, headers }, (res) => {
      res.resume();
      resolve(String(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 100) / 10} s`)));
    req.on('error', (err) => resolve(err.message));
    req.end();
  });
}
