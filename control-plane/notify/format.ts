// The bodies each kind of channel gets for one event. The generic webhook gets the whole event as
// JSON; Slack and Discord their incoming-webhook shapes (text escaped so a reason quoting a repo can
// never mention @channel/@everyone or inject links); e-mail a plain-text message.
import type { NotifyEvent } from './event.js';

export const PAYLOAD_VERSION = 1;

export interface WebhookPayload extends NotifyEvent {
  version: number;
  /** Identical on every retry of this delivery: receivers drop what they already have. */
  idempotencyKey: string;
}

export function webhookPayload(e: NotifyEvent, key: string): WebhookPayload {
  return { version: PAYLOAD_VERSION, ...e, idempotencyKey: key };
}

function title(e: NotifyEvent): string {
  return e.repeated > 0 ? `${e.title} (and ${e.repeated} more time${e.repeated === 1 ? '' : 's'} since the last message)` : e.title;
}

function details(e: NotifyEvent): string[] {
  return Object.entries(e.data)
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${k}: ${String(v)}`);
}

/** Slack mrkdwn: &, < and > are the only control characters (links, @mentions are written <…>). */
const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function slackBody(e: NotifyEvent, key: string): Record<string, unknown> {
  const head = slackEscape(title(e));
  return {
    text: head,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${head}*\n${slackEscape(e.text)}` } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: slackEscape(`berth · ${e.event} · ${e.occurredAt} · ${key}`) }] },
    ],
  };
}

const COLORS: Partial<Record<NotifyEvent['event'], number>> = {
  'deploy.failed': 0xd7263d,
  'cert.failing': 0xd7263d,
  'server.offline': 0xd7263d,
  'disk.low': 0xf49d37,
  'cron.failed': 0xf49d37,
};

export function discordBody(e: NotifyEvent, key: string): Record<string, unknown> {
  return {
    username: 'berth',
    // Text from repos and agents must not ping anyone.
    allowed_mentions: { parse: [] },
    embeds: [
      {
        title: title(e).slice(0, 256),
        description: e.text.slice(0, 4000),
        color: COLORS[e.event] ?? 0x2e86ab,
        timestamp: e.occurredAt,
        footer: { text: `berth · ${e.event} · ${key}`.slice(0, 2048) },
      },
    ],
  };
}

export function emailMessage(e: NotifyEvent, key: string): { subject: string; text: string } {
  const lines = [e.text, '', ...details(e), '', `event: ${e.event}`, `at: ${e.occurredAt}`, `idempotency key: ${key}`];
  if (e.repeated > 0) lines.unshift(`(${e.repeated} more identical message(s) were held back by the rate limit)`, '');
  // Header injection: no line breaks in a subject.
  return { subject: `[berth] ${title(e)}`.replace(/[\r\n]+/g, ' ').slice(0, 200), text: lines.join('\n') };
}
