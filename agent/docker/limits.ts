// Memory and CPU caps for builds, one-off jobs and processes, so one app cannot take the whole
// server (the agent's heartbeats and the other apps keep running). Sizes are Docker's: "512m" and
// "2g" are binary units (MiB, GiB), shown as MB / GB in messages.
import type Docker from 'dockerode';
import { containerEvents, eventName, eventTime, type ContainerEvent } from './events.js';

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

/** One OOM kill in a container, as the engine saw it. */
export interface OomKill {
  /** ISO time: the container's exit, or the engine's `oom` event when the container lived on. */
  at: string;
  /** The container itself died of it; false: the kernel killed a process inside it and it ran on. */
  exited: boolean;
}

/** How long before the `die` it causes the engine's `oom` event comes, at most. */
export const OOM_TO_DIE_MS = 5000;
/** How long after the `die` the `oom` event may still come (the engine's notification can lag the exit). */
export const LATE_OOM_MS = 1000;
/** The events OomKillReader reads. */
export const OOM_KILL_EVENTS = ['oom', 'die', 'start', 'kill'];

/**
 * Reads OOM kills out of one container's `oom`, `die`, `start` and `kill` events, fed in order. The
 * engine may send several `oom` events for one kill, before or (racing the exit) just after the `die`
 * — or none at all (cgroup v1 hosts miss some notifications): a `die` with an `oom` close on either
 * side is the container killed at its cap, and so is a capped container's `die` of SIGKILL that no
 * one sent through the engine (`docker stop` past its timeout and `docker kill` send a `kill` event
 * first). An `oom` with no `die` near it is a process inside killed while the container ran on.
 */
export class OomKillReader {
  private pendingOom: string | null = null;
  private lastDie: { at: string; oom: boolean; restarted: boolean } | null = null;
  /** A `kill` came through the engine since the container (re)started. */
  private killSent = false;

  /** `capped`: the container has a memory limit (without one, the engine never sees a cgroup OOM kill). */
  constructor(private readonly capped: boolean) {}

  feed(ev: ContainerEvent): OomKill[] {
    const name = eventName(ev);
    const at = eventTime(ev);
    const t = Date.parse(at);
    if (name === 'kill') this.killSent = true;
    if (name === 'start') {
      if (this.lastDie) this.lastDie.restarted = true;
      this.killSent = false;
    }
    if (name === 'oom') return this.oom(at, t);
    if (name !== 'die') return [];
    const unsentKill = this.capped && !this.killSent && Number(ev.Actor?.Attributes?.exitCode) === SIGKILL_EXIT;
    const oom = (this.pendingOom !== null && t - Date.parse(this.pendingOom) <= OOM_TO_DIE_MS) || unsentKill;
    const earlier = oom ? [] : this.flush();
    this.pendingOom = null;
    this.killSent = false;
    this.lastDie = { at, oom, restarted: false };
    return oom ? [{ at, exited: true }] : earlier;
  }

  private oom(at: string, t: number): OomKill[] {
    const die = this.lastDie;
    const justAfterDie = !!die && t - Date.parse(die.at) <= LATE_OOM_MS;
    if (die && justAfterDie && !die.oom) {
      die.oom = true; // the notification lagged the exit
      return [{ at: die.at, exited: true }];
    }
    if (die && justAfterDie && !die.restarted) return []; // one more notification of the kill just counted
    const earlier = this.pendingOom !== null && t - Date.parse(this.pendingOom) > OOM_TO_DIE_MS ? this.flush() : [];
    this.pendingOom ??= at;
    return earlier;
  }

  /** Whether the latest `die` is known to be an OOM kill. */
  get lastDieWasOom(): boolean {
    return !!this.lastDie?.oom;
  }

  /** An `oom` with no `die` after it: a process killed inside a container that ran on. */
  flush(): OomKill[] {
    const at = this.pendingOom;
    this.pendingOom = null;
    return at === null ? [] : [{ at, exited: false }];
  }
}

/**
 * The OOM kills of a container since it was created, oldest first: from the engine's events (which
 * it keeps for a while only), and its last exit from inspect (State.OOMKilled) when the events no
 * longer show it.
 */
export async function oomKills(docker: Docker, info: Docker.ContainerInspectInfo): Promise<OomKill[]> {
  const kills: OomKill[] = [];
  if (info.HostConfig?.Memory) {
    try {
      const reader = new OomKillReader(true);
      for (const ev of await containerEvents(docker, info.Id, info.Created, OOM_KILL_EVENTS)) kills.push(...reader.feed(ev));
      kills.push(...reader.flush());
    } catch {
      // the engine cannot say: inspect below still knows the last exit
    }
  }
  const finished = info.State?.FinishedAt;
  if (info.State?.OOMKilled && finished && !finished.startsWith('0001')) {
    const at = new Date(finished).toISOString();
    if (!kills.some((k) => k.exited && Math.abs(Date.parse(k.at) - Date.parse(at)) <= LATE_OOM_MS)) kills.push({ at, exited: true });
  }
  return kills.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}
