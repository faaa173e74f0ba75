// Facts the control plane turns into notifications (issue 18), sent with each observed_state: free
// disk against the agent's threshold, and each cron job's last finished run (so it can tell a job's
// first failure and its recovery, whichever pass it sees them in, even after a disconnect).
import type Docker from 'dockerode';
import type { CronLastRun, DiskFree } from '../../shared/protocol.js';
import { cronJobsOf } from '../cron/schedule.js';
import { measureFreeDisk } from '../deploy/disk.js';
import type { AgentStore } from '../store/index.js';

export async function diskFacts(docker: Docker, dataDir: string, minFreeMb: number): Promise<DiskFree[]> {
  if (minFreeMb <= 0) return [];
  return (await measureFreeDisk(docker, dataDir)).map((d) => ({ ...d, minFreeMb }));
}

export function cronFacts(store: AgentStore): CronLastRun[] {
  const out: CronLastRun[] = [];
  for (const release of store.releases.all()) {
    for (const job of Object.keys(cronJobsOf(store.liveSnapshot(release)?.config))) {
      const last = store.cronRuns.list(release.app, { job, limit: 10 }).find((r) => r.status === 'succeeded' || r.status === 'failed' || r.status === 'timed_out');
      if (!last) continue;
      out.push({ app: release.app, job, runId: last.id, status: last.status as CronLastRun['status'], exitCode: last.exitCode, reason: last.reason, finishedAt: last.finishedAt });
    }
  }
  return out.slice(0, 5000);
}

/** Both, never failing the report they ride on. */
export async function notifyFacts(docker: Docker, store: AgentStore, dataDir: string, minFreeMb: number): Promise<{ disk?: DiskFree[]; cron?: CronLastRun[] }> {
  const out: { disk?: DiskFree[]; cron?: CronLastRun[] } = {};
  try {
    out.disk = await diskFacts(docker, dataDir, minFreeMb);
  } catch {
    // not measurable now: the next pass tries again
  }
  try {
    out.cron = cronFacts(store);
  } catch {
    // a store without cron tables (older database)
  }
  return out;
}
