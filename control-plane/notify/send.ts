// One delivery attempt to one channel. The outcome says whether to try again: a network error, a
// 5xx or a 429 is worth retrying; any other 4xx (or an SMTP 5xx) means the receiver refuses this
// message, and it would refuse it again.
import { readFileSync } from 'node:fs';
import type * as Nodemailer from 'nodemailer';
import type { Logger } from '../../shared/logger.js';
import { BERTH_VERSION } from '../../shared/version.js';
import type { NotifyEvent } from './event.js';
import { discordBody, emailMessage, slackBody, webhookPayload } from './format.js';
import { DELIVERY_HEADER, EVENT_HEADER, signature, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './sign.js';
import type { Channel } from './store.js';
import { oneLine } from '../../shared/util/index.js';

export interface Outcome {
  ok: boolean;
  retry: boolean;
  code: number | null;
  error: string | null;
  /** A 429's Retry-After, in ms. */
  retryAfterMs?: number;
}

export interface SmtpSettings {
  host: string;
  port: number;
  /** starttls: plain connection upgraded with STARTTLS (required); tls: TLS from the start; none: loopback only. */
  security: 'starttls' | 'tls' | 'none';
  from: string;
  user?: string;
  password?: string;
  /** A CA file to trust (a private mail relay's CA). */
  caFile?: string;
}

export const SEND_TIMEOUT_MS = 10_000;

/** Send one notification. `log` hears of best-effort clean-ups that failed (the outcome is what counts). */
export async function deliver(channel: Channel, e: NotifyEvent, key: string, smtp: SmtpSettings | null, log?: Logger): Promise<Outcome> {
  if (channel.kind === 'email') return sendEmail(channel, e, key, smtp);
  let body: string;
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': `berth/${BERTH_VERSION}` };
  if (channel.kind === 'webhook') {
    body = JSON.stringify(webhookPayload(e, key));
    const ts = Math.floor(Date.now() / 1000);
    headers[TIMESTAMP_HEADER] = String(ts);
    headers[SIGNATURE_HEADER] = signature(channel.secret ?? '', ts, body);
    headers[DELIVERY_HEADER] = key;
    headers[EVENT_HEADER] = e.event;
  } else {
    body = JSON.stringify(channel.kind === 'slack' ? slackBody(e, key) : discordBody(e, key));
  }
  return post(channel.target, headers, body, log);
}

async function post(url: string, headers: Record<string, string>, body: string, log?: Logger): Promise<Outcome> {
  let res: Response;
  try {
    // No redirects: a receiver that moved must be re-added, not followed to wherever it points.
    res = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(SEND_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { ok: false, retry: true, code: null, error: `cannot reach the receiver: ${cause?.code ?? cause?.message ?? (err as Error).message}` };
  }
  // The answer's body is not needed: discarded so the connection can be reused.
  await res.body?.cancel().catch((err: unknown) => log?.warn({ err, host: new URL(url).host }, 'could not discard the body of a notification receiver\'s answer'));
  if (res.status >= 200 && res.status < 300) return { ok: true, retry: false, code: res.status, error: null };
  const error = `the receiver answered HTTP ${res.status}`;
  if (res.status === 429) {
    const after = Number(res.headers.get('retry-after'));
    return { ok: false, retry: true, code: 429, error, ...(Number.isFinite(after) && after > 0 ? { retryAfterMs: after * 1000 } : {}) };
  }
  return { ok: false, retry: !(res.status >= 300 && res.status < 500), code: res.status, error };
}

// Loaded on the first email: an idle control plane does not carry nodemailer (~3 MB RSS).
let nodemailerModule: Promise<typeof Nodemailer> | null = null;
const loadNodemailer = async (): Promise<typeof Nodemailer> => {
  const m = (await (nodemailerModule ??= import('nodemailer'))) as typeof Nodemailer & { default?: typeof Nodemailer };
  return m.default ?? m;
};

async function sendEmail(channel: Channel, e: NotifyEvent, key: string, smtp: SmtpSettings | null): Promise<Outcome> {
  if (!smtp) return { ok: false, retry: true, code: null, error: 'no SMTP server is configured (BERTH_SMTP_HOST)' };
  const transport = (await loadNodemailer()).createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.security === 'tls',
    requireTLS: smtp.security === 'starttls',
    ignoreTLS: smtp.security === 'none',
    ...(smtp.user ? { auth: { user: smtp.user, pass: smtp.password ?? '' } } : {}),
    tls: { servername: smtp.host, ...(smtp.caFile ? { ca: readFileSync(smtp.caFile) } : {}) },
    connectionTimeout: SEND_TIMEOUT_MS,
    greetingTimeout: SEND_TIMEOUT_MS,
    socketTimeout: SEND_TIMEOUT_MS,
  });
  const { subject, text } = emailMessage(e, key);
  try {
    await transport.sendMail({ from: smtp.from, to: channel.target, subject, text, headers: { 'X-Berth-Delivery': key, 'X-Berth-Event': e.event } });
    return { ok: true, retry: false, code: 250, error: null };
  } catch (err) {
    const code = (err as { responseCode?: number }).responseCode ?? null;
    // 5xx: the server refuses this message for good (unknown recipient, policy); 4xx and network errors pass.
    return { ok: false, retry: !(code !== null && code >= 500), code, error: `SMTP: ${oneLine(err)}` };
  } finally {
    transport.close();
  }
}
