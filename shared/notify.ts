// Notifications (issue 18): the event kinds, channel shapes and the API bodies shared by the control
// plane and the CLI. Field names are public (webhook receivers and scripts parse them): only add.
import { z } from 'zod';
import { appName } from './validation.js';

/** Every event berth notifies about. deploy.succeeded is off unless a channel asks for it. */
export const NOTIFY_EVENTS = [
  'deploy.failed',
  'deploy.succeeded',
  'rollback.done',
  'cert.failing',
  'cert.renewed',
  'server.offline',
  'server.online',
  'disk.low',
  'cron.failed',
  'cron.recovered',
] as const;
export type NotifyEventKind = (typeof NOTIFY_EVENTS)[number] | 'test';
export const notifyEventKind = z.enum(NOTIFY_EVENTS);
/** What a channel without --event gets. */
export const DEFAULT_EVENTS: readonly NotifyEventKind[] = NOTIFY_EVENTS.filter((e) => e !== 'deploy.succeeded');

export const CHANNEL_KINDS = ['webhook', 'slack', 'discord', 'email'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

export const channelName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,39}$/, 'channel name must be 1-40 lower-case letters, digits or "-", starting with a letter');

/** http(s) only; plain http only to a loopback receiver (the payload names apps, servers and failures). */
export const receiverUrl = z
  .string()
  .max(2048)
  .refine((s) => {
    try {
      const u = new URL(s);
      if (u.username || u.password) return false;
      if (u.protocol === 'https:') return true;
      return u.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(u.hostname);
    } catch {
      return false;
    }
  }, 'must be an https:// URL (http:// only to a loopback receiver), without user:password');

export const emailAddress = z
  .string()
  .max(254)
  .regex(/^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, 'must be an e-mail address like ops@example.com');

export const createChannelBody = z
  .object({
    name: channelName,
    kind: z.enum(CHANNEL_KINDS),
    /** A URL (webhook, slack, discord) or an e-mail address. */
    target: z.string().min(1).max(2048),
    apps: z.array(appName).max(100).default([]),
    events: z.array(notifyEventKind).max(NOTIFY_EVENTS.length).default([]),
  })
  .strict()
  .superRefine((b, ctx) => {
    const ok = b.kind === 'email' ? emailAddress.safeParse(b.target).success : receiverUrl.safeParse(b.target).success;
    if (!ok) {
      ctx.addIssue({
        code: 'custom',
        path: ['target'],
        message: b.kind === 'email' ? 'must be an e-mail address like ops@example.com' : 'must be an https:// URL (http:// only to a loopback receiver), without user:password',
      });
    }
  });

/** A channel as listings show it: the target masked (Slack/Discord URLs are credentials). */
export interface ChannelInfo {
  name: string;
  kind: ChannelKind;
  target: string;
  /** Only these apps' events ([] = every app). */
  apps: string[];
  /** The events it gets (the defaults when none were given). */
  events: NotifyEventKind[];
  createdAt: string;
}
/** POST /api/notify/channels: a webhook channel's signing secret is shown once, here. */
export interface ChannelCreated extends ChannelInfo {
  secret?: string;
}
/** One delivery attempt (`berth notify log`). */
export interface DeliveryAttempt {
  at: string;
  channel: string;
  event: NotifyEventKind;
  app: string | null;
  idempotencyKey: string;
  attempt: number;
  /** delivered | retrying (another attempt is scheduled) | failed (given up: a 4xx, or a day of retries) */
  result: 'delivered' | 'retrying' | 'failed';
  /** HTTP status or SMTP response code, when there was one. */
  code: number | null;
  error: string | null;
  nextAttemptAt: string | null;
}
/** POST /api/notify/channels/:name/test */
export interface TestResult extends DeliveryAttempt {}
