// A deployment as Server-Sent Events: its state, then its stored log after `after`, then live log
// lines and phase changes until it finishes (see DEPLOYMENT_EVENT in shared/api.ts).
import type { Context } from 'hono';
import { DEPLOYMENT_EVENT, type DeploymentInfo } from '../../shared/api.js';
import { isTerminal } from '../../shared/deploy-status.js';
import type { LogLine } from '../../shared/protocol.js';
import type { DeploymentEvents } from '../events.js';
import { deploymentInfo, MAX_LOG_LINES_PER_PAGE } from '../store/deployments.js';
import type { Stores } from '../store/index.js';

/** A comment line this often keeps proxies and clients from timing out an idle stream. */
export const SSE_KEEPALIVE_MS = 15_000;

export function deploymentEventStream(c: Context, deps: { stores: Stores; events: DeploymentEvents }, id: string, after: number): Response {
  const encoder = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      let lastSeq = after;
      let keepalive: NodeJS.Timeout | undefined;
      const send = (chunk: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          close();
        }
      };
      const event = (name: string, data: unknown, eventId?: number) =>
        send(`event: ${name}\n${eventId === undefined ? '' : `id: ${eventId}\n`}data: ${JSON.stringify(data)}\n\n`);
      const log = (line: LogLine) => {
        if (line.seq <= lastSeq) return;
        lastSeq = line.seq;
        event(DEPLOYMENT_EVENT.log, line, line.seq);
      };
      const end = (d: DeploymentInfo) => {
        event(DEPLOYMENT_EVENT.end, d);
        close();
      };
      function close() {
        if (closed) return;
        closed = true;
        unsubscribe();
        clearInterval(keepalive);
        try {
          controller.close();
        } catch {
          // already closed by the client going away
        }
      }
      stop = close;

      // Subscribe before reading the record: both happen in this synchronous block, so no event
      // can fall between the stored log and the live one.
      const unsubscribe = deps.events.subscribe(id, (e) => {
        if (e.type === 'log') return log(e.line);
        event(DEPLOYMENT_EVENT.deployment, e.deployment);
        if (isTerminal(e.deployment.status)) end(e.deployment);
      });
      const row = deps.stores.deployments.get(id);
      if (!row) return end({ id, app: '', status: 'cancelled', commit: null, reason: 'the deployment no longer exists', trigger: '', createdAt: '', updatedAt: '', finishedAt: null });
      const current = deploymentInfo(row);
      event(DEPLOYMENT_EVENT.deployment, current);
      for (;;) {
        const page = deps.stores.deployments.logs(id, lastSeq).lines as LogLine[];
        for (const line of page) log(line);
        if (page.length < MAX_LOG_LINES_PER_PAGE) break;
      }
      if (isTerminal(current.status)) return end(current);
      send(': following\n\n');
      keepalive = setInterval(() => send(': keepalive\n\n'), SSE_KEEPALIVE_MS);
      keepalive.unref();
    },
    cancel() {
      stop();
    },
  });
  c.req.raw.signal.addEventListener('abort', () => stop(), { once: true });
  return new Response(body, {
    status: 200,
    headers: {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      // nginx in front of the control plane must not buffer the stream.
      'X-Accel-Buffering': 'no',
    },
  });
}
