// The pure parts of cron: which jobs an app's live release schedules, what changes on a deploy,
// when a schedule fires next, and whether a fired slot runs or is skipped. No Docker, no timers.
import cron from 'node-cron';
import { DEFAULT_CRON_TIMEOUT_S, type CronJobConfig } from '../config/types.js';

/** A job as the scheduler keeps it: what its node-cron task depends on (the command is read at fire time). */
export interface ScheduledJob {
  app: string;
  job: string;
  schedule: string;
  /** IANA zone; null = the server's. */
  timezone: string | null;
}

export const jobKey = (app: string, job: string): string => `${app}/${job}`;

const JOB_NAME_RE = /^[a-z][a-z0-9_-]{0,29}$/;

/**
 * The cron jobs of a stored release config (AppConfig JSON from release_history). A release
 * recorded before cron existed, or an entry that does not have the expected shape, schedules nothing.
 */
export function cronJobsOf(config: unknown): Record<string, CronJobConfig> {
  const raw = (config as { cron?: unknown } | null | undefined)?.cron;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return {};
  const out: Record<string, CronJobConfig> = {};
  for (const [name, j] of Object.entries(raw as Record<string, unknown>)) {
    const job = j as Partial<CronJobConfig> | null;
    if (!JOB_NAME_RE.test(name) || !job || typeof job.schedule !== 'string' || typeof job.command !== 'string') continue;
    if (!cron.validate(job.schedule) || job.schedule.trim().split(/\s+/).length !== 5) continue;
    out[name] = {
      schedule: job.schedule,
      command: job.command,
      timezone: typeof job.timezone === 'string' ? job.timezone : null,
      timeoutS: typeof job.timeoutS === 'number' && Number.isInteger(job.timeoutS) && job.timeoutS > 0 ? job.timeoutS : DEFAULT_CRON_TIMEOUT_S,
    };
  }
  return out;
}

export interface LiveRelease {
  app: string;
  /** The release's AppConfig JSON (null: no snapshot kept). */
  config: unknown;
}

/**
 * Every job that should be scheduled: the live release's config of each app that is still in the
 * desired state (`desiredApps` null = no desired state received yet: keep what the releases say).
 */
export function desiredJobs(releases: LiveRelease[], desiredApps: ReadonlySet<string> | null): Map<string, ScheduledJob> {
  const out = new Map<string, ScheduledJob>();
  for (const r of releases) {
    if (desiredApps && !desiredApps.has(r.app)) continue;
    for (const [job, c] of Object.entries(cronJobsOf(r.config))) {
      out.set(jobKey(r.app, job), { app: r.app, job, schedule: c.schedule, timezone: c.timezone });
    }
  }
  return out;
}

export interface ScheduleDiff {
  /** New jobs, and jobs whose schedule or time zone changed (their old task is in `stop`). */
  start: ScheduledJob[];
  /** Keys of tasks to stop: jobs gone from the config (or their app gone), or rescheduled. */
  stop: string[];
  /** Unchanged: their task keeps running (a command change needs nothing: it is read at fire time). */
  keep: string[];
}

/** What a deploy (or an app's removal) changes in the scheduled tasks. */
export function diffSchedules(current: ReadonlyMap<string, ScheduledJob>, desired: ReadonlyMap<string, ScheduledJob>): ScheduleDiff {
  const diff: ScheduleDiff = { start: [], stop: [], keep: [] };
  for (const [key, cur] of current) {
    const want = desired.get(key);
    if (!want) diff.stop.push(key);
    else if (want.schedule !== cur.schedule || want.timezone !== cur.timezone) {
      diff.stop.push(key);
      diff.start.push(want);
    } else diff.keep.push(key);
  }
  for (const [key, want] of desired) if (!current.has(key)) diff.start.push(want);
  return diff;
}

/** A run of the job that is still going (in this process, or adopted from Docker after a restart). */
export interface RunInProgress {
  id: string;
  startedAt: string;
}

export type OverlapDecision = { action: 'run' } | { action: 'skip'; reason: string };

/** A slot that fires while the job's previous run is still going is skipped (and recorded as skipped). */
export function overlapDecision(inProgress: RunInProgress | undefined | null): OverlapDecision {
  if (!inProgress) return { action: 'run' };
  return { action: 'skip', reason: `the previous run (${inProgress.id}, started ${inProgress.startedAt}) was still running` };
}

/** The schedule slot a firing belongs to: its minute, as ISO (the unit a slot is unique by). */
export function slotOf(date: Date): string {
  return new Date(Math.floor(date.getTime() / 60_000) * 60_000).toISOString();
}

/** The server's own time zone (what a job without `timezone` follows). */
export function serverTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(tz, f);
  }
  return f;
}

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

function localParts(ts: number, tz: string): LocalParts {
  const parts: Record<string, number> = {};
  for (const p of formatter(tz).formatToParts(new Date(ts))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return { year: parts.year!, month: parts.month!, day: parts.day!, hour: parts.hour! % 24, minute: parts.minute! };
}

/** The UTC time of a wall-clock time in `tz` (in a DST gap: shifted like the clock is). */
function localToUtc(l: LocalParts, tz: string): number {
  const wall = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute);
  const offsetAt = (ts: number) => {
    const p = localParts(ts, tz);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - Math.floor(ts / 60_000) * 60_000;
  };
  const first = offsetAt(wall);
  let ts = wall - first;
  const second = offsetAt(ts);
  if (second !== first) ts = wall - second;
  return ts;
}

const sameWallClock = (a: LocalParts, b: LocalParts) => a.year === b.year && a.month === b.month && a.day === b.day && a.hour === b.hour && a.minute === b.minute;

/** Days searched ahead: enough for "29 Feb that is a Monday" (node-cron ANDs day-of-month and day-of-week). */
const MAX_DAYS = 366 * 30;

/**
 * When `schedule` (5 fields, read in `timezone`, null = the server's) fires next, strictly after
 * `from`. null when it never does within 30 years or the expression is invalid.
 */
export function nextRun(schedule: string, timezone: string | null, from: Date = new Date()): Date | null {
  const tz = timezone ?? serverTimeZone();
  let fields: ReturnType<typeof cron.parse>;
  try {
    if (schedule.trim().split(/\s+/).length !== 5 || !cron.validate(schedule)) return null;
    fields = cron.parse(schedule);
  } catch {
    return null;
  }
  const hours = [...fields.hour].sort((a, b) => a - b);
  const minutes = [...fields.minute].sort((a, b) => a - b);
  if (hours.length === 0 || minutes.length === 0) return null;
  // node-cron's own matcher decides every candidate (day-of-month/-week rules, L, W, #, names).
  const matcher = cron.createTask(schedule, () => undefined, { timezone: tz });
  try {
    const after = Math.floor(from.getTime() / 60_000) * 60_000; // candidates are whole minutes > from
    const start = localParts(after, tz);
    let day = Date.UTC(start.year, start.month - 1, start.day);
    for (let i = 0; i < MAX_DAYS; i++, day += 86_400_000) {
      const d = new Date(day);
      const date = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
      // One probe per day decides the day (its first candidate time), unless that wall-clock
      // time does not exist there (a DST gap): then every candidate is tried.
      const probeWall = { ...date, hour: hours[0]!, minute: minutes[0]! };
      const probe = localToUtc(probeWall, tz);
      if (sameWallClock(localParts(probe, tz), probeWall) && !matcher.match(new Date(probe))) continue;
      for (const hour of hours) {
        for (const minute of minutes) {
          const ts = localToUtc({ ...date, hour, minute }, tz);
          if (ts > after && matcher.match(new Date(ts))) return new Date(ts);
        }
      }
    }
    return null;
  } finally {
    void matcher.destroy();
  }
}
