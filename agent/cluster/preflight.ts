// Before a server joins a cluster its agent checks, with short TCP connects, that it reaches the
// manager's Swarm ports; each failure is reported by address and port (4789/udp, VXLAN, cannot be
// probed this way: the overlay check after the join covers it).
import { connect } from 'node:net';
import type { PortFailure } from '../../shared/protocol.js';

/** The manager's ports a joining node must reach over TCP: cluster management and gossip. */
export const MANAGER_TCP_PORTS = [2377, 7946] as const;

/** "host:port" or "host" (IPv6 in brackets) → host without brackets. */
export function hostOf(addr: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(addr);
  if (bracketed) return bracketed[1]!;
  const parts = addr.split(':');
  return parts.length === 2 ? parts[0]! : addr;
}

/** Connect once; resolves with the local address used, or rejects with a one-line reason. */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      const local = socket.localAddress ?? '';
      socket.destroy();
      resolve(local.replace(/^::ffff:/, ''));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(err.code ?? err.message));
    });
  });
}

/** Probe the manager's TCP ports; the local address comes from the first connect that worked. */
export async function preflight(managerAddr: string, timeoutMs: number, ports: readonly number[] = MANAGER_TCP_PORTS): Promise<{ failures: PortFailure[]; localAddr?: string }> {
  const host = hostOf(managerAddr);
  const failures: PortFailure[] = [];
  let localAddr: string | undefined;
  const results = await Promise.allSettled(ports.map((port) => tcpConnect(host, port, timeoutMs)));
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') localAddr ??= r.value;
    else failures.push({ addr: host, port: ports[i]!, proto: 'tcp', error: (r.reason as Error).message.slice(0, 500) });
  });
  return { failures, ...(localAddr ? { localAddr } : {}) };
}

/** The address this machine uses to reach `url` (the control plane): the default address to advertise. */
export async function localAddressTowards(url: string, timeoutMs = 5_000): Promise<string> {
  const u = new URL(url);
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  return tcpConnect(u.hostname.replace(/^\[|\]$/g, ''), port, timeoutMs);
}
