// What berth tells: one event, built from facts the control plane already has, with a title and a
// text for people (Slack, Discord, e-mail) and `data` for programs (webhooks). Builders only —
// deciding *whether* something is worth telling is in watch.ts.
import { newId } from '../../shared/ids.js';
import type { NotifyEventKind } from '../../shared/notify.js';

export interface NotifyEvent {
  id: string;
  event: NotifyEventKind;
  occurredAt: string;
  server: string | null;
  app: string | null;
  title: string;
  text: string;
  /** How many more identical failures were held back by the rate limit and are summed up here. */
  repeated: number;
  data: Record<string, string | number | boolean | null>;
}

export function makeEvent(e: Omit<NotifyEvent, 'id' | 'occurredAt' | 'repeated'> & { occurredAt?: string }): NotifyEvent {
  return { id: newId(), occurredAt: e.occurredAt ?? new Date().toISOString(), repeated: 0, ...e };
}

const short = (sha: string | null) => (sha ? sha.slice(0, 12) : 'unknown commit');

export interface DeployFacts {
  id: string;
  app: string;
  server: string;
  status: 'failed' | 'done';
  /** The phase it failed in (the last one before `failed`). */
  phase: string | null;
  reason: string | null;
  commit: string | null;
  trigger: string;
  rollbackOf: string | null;
  /** The control plane's URL of the deployment's log. */
  logUrl: string;
}

export function deployEvent(d: DeployFacts): NotifyEvent {
  const base = { deploymentId: d.id, commit: d.commit, trigger: d.trigger, logUrl: d.logUrl, logCommand: `berth deployments logs ${d.id}` };
  if (d.status === 'failed') {
    return makeEvent({
      event: 'deploy.failed',
      server: d.server,
      app: d.app,
      title: `${d.app}: deploy ${d.id} failed${d.phase ? ` while ${d.phase}` : ''}`,
      text: `Deploy ${d.id} of ${d.app} (${short(d.commit)}) on ${d.server} failed${d.phase ? ` while ${d.phase}` : ''}: ${d.reason ?? 'no reason given'}. The previous release keeps serving. Log: ${d.logUrl} (or: berth deployments logs ${d.id})`,
      data: { ...base, phase: d.phase, reason: d.reason },
    });
  }
  // A scale deployment (`berth scale`) also re-activates a release, the live one: told as a deploy.
  if (d.rollbackOf && d.trigger !== 'scale') {
    return makeEvent({
      event: 'rollback.done',
      server: d.server,
      app: d.app,
      title: `${d.app}: rolled back to ${short(d.commit)}`,
      text: `Rollback ${d.id} of ${d.app} on ${d.server} is live: the release of deployment ${d.rollbackOf} (${short(d.commit)}) serves traffic again.`,
      data: { ...base, rollbackOf: d.rollbackOf },
    });
  }
  return makeEvent({
    event: 'deploy.succeeded',
    server: d.server,
    app: d.app,
    title: `${d.app}: deployed ${short(d.commit)}`,
    text: `${d.trigger === 'scale' ? 'Scale' : 'Deploy'} ${d.id} of ${d.app} (${short(d.commit)}) on ${d.server} is live.`,
    data: base,
  });
}

export interface CertFacts {
  app: string;
  server: string;
  domains: string[];
  notAfter: string | null;
  daysLeft: number | null;
  failures: number;
  lastError: string | null;
  nextAttemptAt: string | null;
}

export function certFailingEvent(c: CertFacts, urgent: boolean): NotifyEvent {
  const expiry = c.notAfter ? `the current certificate expires ${c.notAfter}${c.daysLeft !== null ? ` (${c.daysLeft} days left)` : ''}` : 'there is no certificate yet';
  return makeEvent({
    event: 'cert.failing',
    server: c.server,
    app: c.app,
    title: `${c.app}: certificate renewal failing${urgent ? ` — expires in ${c.daysLeft ?? 0} days` : ''}`,
    text: `Getting a certificate for ${c.domains.join(', ') || c.app} failed ${c.failures} time(s): ${c.lastError ?? 'no error given'}. ${expiry}.${c.nextAttemptAt ? ` Next attempt ${c.nextAttemptAt}.` : ''}`,
    data: { domains: c.domains.join(','), notAfter: c.notAfter, daysLeft: c.daysLeft, failures: c.failures, lastError: c.lastError, nextAttemptAt: c.nextAttemptAt, withinSevenDays: urgent },
  });
}

export function certRenewedEvent(c: CertFacts): NotifyEvent {
  return makeEvent({
    event: 'cert.renewed',
    server: c.server,
    app: c.app,
    title: `${c.app}: certificate renewed`,
    text: `The certificate for ${c.domains.join(', ') || c.app} was renewed after earlier failures; it is valid until ${c.notAfter ?? 'unknown'}.`,
    data: { domains: c.domains.join(','), notAfter: c.notAfter, daysLeft: c.daysLeft },
  });
}

export function serverEvent(server: string, online: boolean, lastSeenAt: string | null, offlineAfterMs: number): NotifyEvent {
  const minutes = Math.round(offlineAfterMs / 60_000);
  return online
    ? makeEvent({
        event: 'server.online',
        server,
        app: null,
        title: `server ${server} is back online`,
        text: `The agent of server ${server} is connected again.`,
        data: { lastSeenAt },
      })
    : makeEvent({
        event: 'server.offline',
        server,
        app: null,
        title: `server ${server} is offline`,
        text: `No heartbeat from the agent of server ${server} since ${lastSeenAt ?? 'it joined'} (more than ${minutes} min). Its apps keep serving if the machine is up; deploys to it wait.`,
        data: { lastSeenAt, offlineAfterMinutes: minutes },
      });
}

export function diskLowEvent(server: string, d: { path: string; freeMb: number; minFreeMb: number }): NotifyEvent {
  return makeEvent({
    event: 'disk.low',
    server,
    app: null,
    title: `server ${server}: ${d.freeMb} MB free on ${d.path}`,
    text: `Free disk on ${d.path} of server ${server} is ${d.freeMb} MB, below the agent's threshold of ${d.minFreeMb} MB (BERTH_MIN_FREE_DISK_MB): deploys to it fail until space is freed.`,
    data: { path: d.path, freeMb: d.freeMb, minFreeMb: d.minFreeMb },
  });
}

export interface CronFacts {
  server: string;
  app: string;
  job: string;
  runId: string;
  status: string;
  exitCode: number | null;
  reason: string | null;
  finishedAt: string | null;
}

export function cronEvent(c: CronFacts, recovered: boolean): NotifyEvent {
  const data = { job: c.job, runId: c.runId, status: c.status, exitCode: c.exitCode, reason: c.reason, finishedAt: c.finishedAt, logCommand: `berth cron ls ${c.app}` };
  return recovered
    ? makeEvent({ event: 'cron.recovered', server: c.server, app: c.app, title: `${c.app}: cron job ${c.job} succeeded again`, text: `Cron job ${c.job} of ${c.app} on ${c.server} succeeded again (run ${c.runId}).`, data })
    : makeEvent({
        event: 'cron.failed',
        server: c.server,
        app: c.app,
        title: `${c.app}: cron job ${c.job} failed`,
        text: `Cron job ${c.job} of ${c.app} on ${c.server} ${c.status === 'timed_out' ? 'timed out' : 'failed'}${c.exitCode !== null ? ` (exit ${c.exitCode})` : ''}: ${c.reason ?? 'no reason given'}. Later failures are not reported until it succeeds again. See: berth cron ls ${c.app}`,
        data,
      });
}

export function testEvent(channel: string): NotifyEvent {
  return makeEvent({ event: 'test', server: null, app: null, title: 'berth test notification', text: `A test of notification channel ${channel}: it works.`, data: { channel } });
}
