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

export interface SseStream {
  /** One event; `id` lets a client resume (Last-Event-ID). */
  event(name: string, data: unknown, id?: number): void;
  /** A comment line (ignored by clients, keeps the connection warm). */
  comment(text: string): void;
  close(): void;
}

/**
 * A text/event-stream response. `open` runs synchronously while the response is built and returns
 * what to undo when the stream closes (client gone, or `close()`); a keepalive comment is sent
 * every SSE_KEEPALIVE_MS.
 */
export function sseResponse(c: Context, open: (stream: SseStream) => (() => void) | void): Response {
  const encoder = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      let cleanup: (() => void) | void;
      const send = (chunk: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          close();
        }
      };
      const keepalive = setInterval(() => send(': keepalive\n\n'), SSE_KEEPALIVE_MS);
      keepalive.unref();
      function close() {
        if (closed) return;
        closed = true;
        clearInterval(keepalive);
        cleanup?.();
        try {
          controller.close();
        } catch {
          // already closed by the client going away
        }
      }
      stop = close;
      const stream: SseStream = {
        event: (name, data, id) => send(`event: ${name}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`),
        comment: (text) => send(`: ${text}\n\n`),
        close,
      };
      cleanup = open(stream);
      // open() may have closed the stream already, before its cleanup was known.
      if (closed) cleanup?.();
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

export function deploymentEventStream(c: Context, deps: { stores: Stores; events: DeploymentEvents }, id: string, after: number): Response {
  return sseResponse(c, (stream) => {
    let lastSeq = after;
    const log = (line: LogLine) => {
      if (line.seq <= lastSeq) return;
      lastSeq = line.seq;
      stream.event(DEPLOYMENT_EVENT.log, line, line.seq);
    };
    const end = (d: DeploymentInfo) => {
      stream.event(DEPLOYMENT_EVENT.end, d);
      stream.close();
    };
    // Subscribe before reading the record: both happen in this synchronous block, so no event
    // can fall between the stored log and the live one.
    const unsubscribe = deps.events.subscribe(id, (e) => {
      if (e.type === 'log') return log(e.line);
      stream.event(DEPLOYMENT_EVENT.deployment, e.deployment);
      if (isTerminal(e.deployment.status)) end(e.deployment);
    });
    const row = deps.stores.deployments.get(id);
    if (!row) {
      end({ id, app: '', status: 'cancelled', commit: null, reason: 'the deployment no longer exists', trigger: '', createdAt: '', updatedAt: '', finishedAt: null });
      return unsubscribe;
    }
    const current = deploymentInfo(row);
    stream.event(DEPLOYMENT_EVENT.deployment, current);
    for (;;) {
      const page = deps.stores.deployments.logs(id, lastSeq).lines as LogLine[];
      for (const line of page) log(line);
      if (page.length < MAX_LOG_LINES_PER_PAGE) break;
    }
    if (isTerminal(current.status)) end(current);
    else stream.comment('following');
    return unsubscribe;
  });
}
