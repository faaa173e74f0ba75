// Cron jobs (`berth cron`): the control plane keeps none of it. The app's agent schedules and runs
// the jobs and records every run; these routes relay each request to it and its answer back.
//   GET  /api/apps/:name/cron                → CronJobInfo[]
//   POST /api/apps/:name/cron/:job/run       → 202 CronRunInfo (running)
//   GET  /api/apps/:name/cron/runs[?job&limit] → CronRunInfo[] (newest first)
//   GET  /api/apps/:name/cron/runs/:id       → CronRunInfo
import type { Hono } from 'hono';
import { z } from 'zod';
import { CRON_RUNS_LIMIT_DEFAULT, type CronJobInfo, type CronRunInfo } from '../../shared/api.js';
import { cronJobName, cronRunId, type CronRequest, type CronResponse } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import { BadRequestError, ConflictError, ControlPlaneError, NotFoundError } from '../errors.js';
import type { ApiDeps } from './deps.js';
import { validParam } from './http.js';

const runsQuery = z.object({
  job: cronJobName.optional(),
  limit: z.coerce.number().int('limit must be a whole number').min(1, 'limit must be at least 1').max(500, 'limit must be at most 500').default(CRON_RUNS_LIMIT_DEFAULT),
});

/** The agent answered but could not do it: the same status a local failure would have. */
function failure(msg: CronResponse): ControlPlaneError {
  const message = msg.error ?? 'the agent refused the request';
  if (msg.code === 'not_found') return new NotFoundError(message);
  if (msg.code === 'conflict') return new ConflictError(message);
  return new ControlPlaneError(409, message);
}

export function registerCronRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });

  /** Validate the app, ask its agent, and turn a refusal into the matching HTTP error. */
  async function ask(name: string | undefined, req: Omit<CronRequest, 'type' | 'v' | 'requestId' | 'app'>): Promise<CronResponse> {
    const appNameValue = validParam(appName, name, 'app name');
    const row = stores.apps.get(appNameValue);
    if (!row) throw new NotFoundError(`app "${appNameValue}" does not exist`);
    const answer = await hub.requestCron(row.server, { app: appNameValue, ...req });
    if (!answer.ok) throw failure(answer);
    return answer;
  }

  app.get('/api/apps/:name/cron', async (c) => {
    const answer = await ask(c.req.param('name'), { action: 'list' });
    const body: CronJobInfo[] = answer.jobs ?? [];
    return c.json(body);
  });

  app.get('/api/apps/:name/cron/runs', async (c) => {
    const parsed = runsQuery.safeParse(c.req.query());
    if (!parsed.success) throw new BadRequestError(`invalid runs query: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const answer = await ask(c.req.param('name'), { action: 'runs', ...(parsed.data.job ? { job: parsed.data.job } : {}), limit: parsed.data.limit });
    const body: CronRunInfo[] = answer.runs ?? [];
    return c.json(body);
  });

  app.get('/api/apps/:name/cron/runs/:id', async (c) => {
    const runId = validParam(cronRunId, c.req.param('id'), 'run id');
    const answer = await ask(c.req.param('name'), { action: 'get', runId });
    if (!answer.run) throw new NotFoundError(`no cron run "${runId}"`);
    const body: CronRunInfo = answer.run;
    return c.json(body);
  });

  app.post('/api/apps/:name/cron/:job/run', async (c) => {
    const job = validParam(cronJobName, c.req.param('job'), 'job name');
    const answer = await ask(c.req.param('name'), { action: 'run', job });
    if (!answer.run) throw new ControlPlaneError(409, `the agent did not start cron job "${job}"`);
    log.info({ app: answer.run.app, job, run: answer.run.id }, 'cron job run requested');
    const body: CronRunInfo = answer.run;
    return c.json(body, 202);
  });
}
