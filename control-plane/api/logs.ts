// GET /api/apps/:name/logs — an app's runtime output (`berth logs`), relayed live from its agent as
// Server-Sent Events: `line` events, then one `end` event (with `error` when the agent could not serve it).
import type { Hono } from 'hono';
import { z } from 'zod';
import { RUNTIME_LOG_EVENT } from '../../shared/api.js';
import { newId } from '../../shared/ids.js';
import type { RuntimeLogLine } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import { AgentUnavailableError, BadRequestError, NotFoundError } from '../errors.js';
import type { ApiDeps } from './deps.js';
import { validParam } from './http.js';
import { sseResponse } from './sse.js';

const logsQuery = z.object({
  process: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,62}$/, 'process must be a process name from the app config (e.g. web, worker)')
    .optional(),
  tail: z.coerce.number().int('tail must be a whole number').min(0, 'tail must be at least 0').max(10_000, 'tail must be at most 10000').default(100),
  follow: z.enum(['0', '1', 'true', 'false']).optional(),
});

export function registerLogRoutes(app: Hono, deps: ApiDeps): void {
  app.get('/api/apps/:name/logs', (c) => {
    const name = validParam(appName, c.req.param('name'), 'app name');
    const row = deps.stores.apps.get(name);
    if (!row) throw new NotFoundError(`app "${name}" does not exist`);
    const parsed = logsQuery.safeParse(c.req.query());
    if (!parsed.success) throw new BadRequestError(`invalid logs query: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const { process, tail } = parsed.data;
    const follow = parsed.data.follow === '1' || parsed.data.follow === 'true';

    let cancelRequest: (() => void) | null = null;
    const response = sseResponse(c, (stream) => {
      let ended = false;
      cancelRequest = deps.hub.requestLogs(
        row.server,
        { requestId: newId(), app: name, ...(process ? { process } : {}), tail, follow },
        {
          lines: (lines: RuntimeLogLine[]) => {
            for (const line of lines) stream.event(RUNTIME_LOG_EVENT.line, line);
          },
          end: (error?: string) => {
            ended = true;
            stream.event(RUNTIME_LOG_EVENT.end, error ? { error } : {});
            stream.close();
          },
        },
      );
      // Only a client that goes away early needs the agent told; an ended request is already closed.
      return () => {
        if (!ended) cancelRequest?.();
      };
    });
    if (!cancelRequest) {
      throw new AgentUnavailableError(`server "${row.server}" is offline: runtime logs are read from its agent, try again when it is connected`);
    }
    return response;
  });
}
