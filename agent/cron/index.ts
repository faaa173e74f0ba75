// `berth cron` requests from the control plane, answered from the scheduler (one response each).
import { PROTOCOL_VERSION, type CronJobInfo, type CronRequest, type CronResponse, type CronRunInfo } from '../../shared/protocol.js';
import { oneLine } from '../../shared/util/index.js';
import { CronError, type CronScheduler } from './scheduler.js';

export { CronError, CronScheduler } from './scheduler.js';
export { cronContainerName } from './run-job.js';
export type { CronDeps } from './scheduler.js';

/** The control plane refuses frames over 1 MB: answers stay well below, trimming output tails if needed. */
const MAX_ANSWER_CHARS = 800_000;

function fits(msg: CronResponse): boolean {
  return JSON.stringify(msg).length <= MAX_ANSWER_CHARS;
}

function trimRuns<T extends CronRunInfo | null>(run: T, lines: number): T {
  return run ? { ...run, outputTail: lines === 0 ? [] : run.outputTail.slice(-lines) } : run;
}

function bounded(msg: CronResponse): CronResponse {
  for (const lines of [10, 3, 0]) {
    if (fits(msg)) return msg;
    msg = {
      ...msg,
      ...(msg.jobs ? { jobs: msg.jobs.map((j): CronJobInfo => ({ ...j, lastRun: trimRuns(j.lastRun, lines), running: trimRuns(j.running, lines) })) } : {}),
      ...(msg.runs ? { runs: msg.runs.map((r) => trimRuns(r, lines)) } : {}),
      ...(msg.run ? { run: trimRuns(msg.run, lines) } : {}),
    };
  }
  return msg;
}

export function answerCron(scheduler: CronScheduler, req: CronRequest): CronResponse {
  const base = { type: 'cron_response' as const, v: PROTOCOL_VERSION as typeof PROTOCOL_VERSION, requestId: req.requestId };
  try {
    switch (req.action) {
      case 'list':
        return bounded({ ...base, ok: true, jobs: scheduler.list(req.app).slice(0, 500) });
      case 'run':
        if (!req.job) throw new CronError('not_found', 'which job? (no job name given)');
        return bounded({ ...base, ok: true, run: scheduler.runNow(req.app, req.job) });
      case 'get':
        if (!req.runId) throw new CronError('not_found', 'which run? (no run id given)');
        return bounded({ ...base, ok: true, run: scheduler.get(req.app, req.runId) });
      case 'runs':
        return bounded({ ...base, ok: true, runs: scheduler.runs(req.app, { ...(req.job ? { job: req.job } : {}), limit: req.limit ?? 20 }) });
    }
  } catch (err) {
    if (err instanceof CronError) return { ...base, ok: false, code: err.code, error: err.message.slice(0, 1000) };
    return { ...base, ok: false, code: 'failed', error: `the agent could not answer: ${oneLine(err)}`.slice(0, 1000) };
  }
}
