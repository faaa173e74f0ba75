// Memory and CPU caps for builds, one-off jobs and processes, so one app cannot take the whole
// server (the agent's heartbeats and the other apps keep running). Sizes are Docker's: "512m" and
// "2g" are binary units (MiB, GiB), shown as MB / GB in messages.
import type Docker from 'dockerode';
import { containerEvents } from './events.js';

export interface ResourceLimits {
  /** Bytes; null = no memory cap. Swap is capped to the same (no swap on top). */
  memory: number | null;
  /** CPUs (decimals allowed); null = no CPU cap. */
  cpus: number | null;
}

const UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Docker's smallest memory limit; anything below fails at container creation. */
export const MIN_MEMORY = 6 * 1024 ** 2;
export const MAX_MEMORY = 1024 ** 4;

/** "512m", "2g", "1.5G", "768MB" → bytes; null when it is not such a size. */
export function parseMemorySize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt])i?b?$/i.exec(text.trim());
  if (!m) return null;
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  return Number.isFinite(bytes) ? bytes : null;
}

/** 536870912 → "512 MB", 1610612736 → "1.5 GB". */
export function formatMemory(bytes: number): string {
  const gb = bytes / 1024 ** 3;
  if (gb >= 1) return `${+gb.toFixed(2)} GB`;
  return `${+(bytes / 1024 ** 2).toFixed(1)} MB`;
}

export function describeLimits(l: ResourceLimits): string {
  const mem = l.memory === null ? 'no memory cap' : `memory ${formatMemory(l.memory)}`;
  const cpu = l.cpus === null ? 'no CPU cap' : `${+l.cpus.toFixed(2)} CPU${l.cpus === 1 ? '' : 's'}`;
  return `${mem}, ${cpu}`;
}

/** Docker HostConfig fields for the limits (nothing when uncapped). */
export function hostConfigLimits(l: Partial<ResourceLimits> | undefined): { Memory?: number; MemorySwap?: number; NanoCpus?: number } {
  return {
    ...(l?.memory ? { Memory: l.memory, MemorySwap: l.memory } : {}),
    ...(l?.cpus ? { NanoCpus: Math.round(l.cpus * 1e9) } : {}),
  };
}

/** A one-line reason for a container the kernel killed at its memory cap. */
export function outOfMemory(limit: number | null | undefined): string {
  return limit ? `out of memory (limit ${formatMemory(limit)})` : 'out of memory';
}

/** SIGKILL's exit status: what a process killed by the kernel's OOM killer exits with. */
const SIGKILL_EXIT = 137;

/**
 * Whether the kernel OOM-killed a process of the container. State.OOMKilled is not reliable
 * (Docker resets it on restart; on cgroup v1 hosts, or with an init process, the engine may never
 * see the OOM notification), so a capped container that died of SIGKILL which berth did not send
 * (callers only ask about exits they did not cause) counts as OOM-killed too; the engine's `oom`
 * events are asked as well.
 */
export async function wasOomKilled(docker: Docker, info: Docker.ContainerInspectInfo, exitCode: number | null): Promise<boolean> {
  if (info.State?.OOMKilled) return true;
  if (!info.HostConfig?.Memory) return false;
  if (exitCode === SIGKILL_EXIT) return true;
  try {
    return (await containerEvents(docker, info.Id, info.Created, 'oom')).length > 0;
  } catch {
    return false;
  }
}
