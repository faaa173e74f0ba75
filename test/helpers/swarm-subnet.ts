// Addresses for the Swarm test bed's bridge network: a /24 that no Docker network and no host route
// uses, outside Swarm's default overlay pool (10.0.0.0/8).
import { randomInt } from 'node:crypto';
import { run } from './swarm-exec.js';

interface Cidr {
  base: number;
  bits: number;
}

function parseCidr(cidr: string): Cidr | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr.trim());
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return undefined;
  const ip = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - bits);
  return { base: ip - (ip % size), bits };
}

function overlaps(a: Cidr, b: Cidr): boolean {
  const aEnd = a.base + 2 ** (32 - a.bits);
  const bEnd = b.base + 2 ** (32 - b.bits);
  return a.base < bEnd && b.base < aEnd;
}

function toDotted(ip: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(ip / 2 ** s) % 256).join('.');
}

/** The n-th address of `subnet` (1 = the gateway). */
export function hostAddress(subnet: string, n: number): string {
  const c = parseCidr(subnet);
  if (!c || c.bits > 24) throw new Error(`the swarm subnet must be an IPv4 /24 or wider, not ${subnet}`);
  return toDotted(c.base + n);
}

/** Every IPv4 subnet in use: Docker networks' IPAM configs and the host's routes. */
async function subnetsInUse(): Promise<Cidr[]> {
  const ids = (await run(['docker', 'network', 'ls', '-q'], { timeoutMs: 20_000 })).stdout.split('\n').filter(Boolean);
  const docker = ids.length
    ? (await run(['docker', 'network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', ...ids], { timeoutMs: 20_000 })).stdout
    : '';
  const routes = (await run(['ip', '-4', 'route'], { timeoutMs: 10_000 })).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
  return [...docker.split(/\s+/), ...routes].map((s) => (s.includes('/') ? parseCidr(s) : undefined)).filter((c): c is Cidr => !!c);
}

/** A random free 172.31.x.0/24 (Docker's own pools hand out 172.17–172.31 as whole /16s in order: 172.31 comes last). */
export async function chooseSubnet(): Promise<string> {
  const used = await subnetsInUse();
  for (let i = 0; i < 50; i++) {
    const candidate = `172.31.${randomInt(128, 255)}.0/24`;
    const c = parseCidr(candidate)!;
    if (!used.some((u) => overlaps(u, c))) return candidate;
  }
  throw new Error('no free 172.31.x.0/24 for the swarm test network; set BERTH_TEST_SWARM_SUBNET');
}
