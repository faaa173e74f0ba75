// The engine's event log of one container since it was created: it remembers what inspect forgets
// (the exit code before a restart, an OOM kill that State.OOMKilled missed).
import type Docker from 'dockerode';

export interface ContainerEvent {
  Actor?: { Attributes?: Record<string, string | undefined> };
}

/** The container's `event` events (e.g. die, oom), oldest first; rejects when the engine cannot say. */
export async function containerEvents(docker: Docker, containerId: string, created: string, event: string): Promise<ContainerEvent[]> {
  const since = Math.floor((Date.parse(created) || Date.now() - 3600_000) / 1000) - 1;
  const until = Math.ceil(Date.now() / 1000) + 1;
  const stream = (await docker.getEvents({ since, until, filters: { container: [containerId], event: [event] } })) as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ContainerEvent);
}
