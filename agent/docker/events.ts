// The engine's event log of one container since it was created: it remembers what inspect forgets
// (the exit code before a restart, an OOM kill that State.OOMKilled missed). The engine keeps only
// its most recent events (and none across its own restart), so an answer may be incomplete.
import type Docker from 'dockerode';

export interface ContainerEvent {
  /** The event's name (die, oom, …); `status` in engines before API 1.22. */
  Action?: string;
  status?: string;
  /** Unix time in seconds, and in nanoseconds. */
  time?: number;
  timeNano?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string | undefined> };
}

export const eventName = (ev: ContainerEvent): string | undefined => ev.Action ?? ev.status;

/** The event's time, ISO 8601 (the engine's nanoseconds, beyond a double's precision anyway, rounded to milliseconds). */
export function eventTime(ev: ContainerEvent): string {
  const ms = ev.timeNano ? Math.round(ev.timeNano / 1e6) : (ev.time ?? 0) * 1000;
  return new Date(ms || Date.now()).toISOString();
}

/** The container's `event` events (e.g. die, oom; or several at once), oldest first; rejects when the engine cannot say. */
export async function containerEvents(docker: Docker, containerId: string, created: string, event: string | string[]): Promise<ContainerEvent[]> {
  const since = Math.floor((Date.parse(created) || Date.now() - 3600_000) / 1000) - 1;
  const until = Math.ceil(Date.now() / 1000) + 1;
  const stream = (await docker.getEvents({ since, until, filters: { container: [containerId], event: Array.isArray(event) ? event : [event] } })) as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ContainerEvent);
}

/** The exit code of the container's latest `die` event (null when none is found). */
export async function lastExitCode(docker: Docker, containerId: string, created: string): Promise<number | null> {
  try {
    let code: number | null = null;
    for (const ev of await containerEvents(docker, containerId, created, 'die')) {
      const c = Number(ev.Actor?.Attributes?.exitCode);
      if (Number.isInteger(c)) code = c;
    }
    return code;
  } catch {
    return null;
  }
}

/**
 * Follow the engine's events of some containers as they happen (the subscription starts now); call
 * the returned function to stop. `onEvent` never sees a malformed line; a failing subscription just ends.
 */
export async function followContainerEvents(docker: Docker, containerIds: string[], events: string[], onEvent: (ev: ContainerEvent) => void): Promise<() => void> {
  const stream = (await docker.getEvents({ filters: { container: containerIds, event: events } })) as NodeJS.ReadableStream & { destroy?: () => void };
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      let ev: ContainerEvent;
      try {
        ev = JSON.parse(line) as ContainerEvent;
      } catch {
        continue; // not an event (or an empty line)
      }
      onEvent(ev);
    }
  });
  stream.on('error', () => undefined);
  return () => stream.destroy?.();
}
