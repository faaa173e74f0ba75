// The generic webhook's signature: HMAC-SHA256 with the channel's secret over "TIMESTAMP.BODY",
// sent as `X-Berth-Signature: v1=HEX` with `X-Berth-Timestamp: UNIX_SECONDS`. Signing the timestamp
// lets a receiver reject an old request replayed later (docs/notifications.md has the recipe).
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-berth-signature';
export const TIMESTAMP_HEADER = 'x-berth-timestamp';
export const DELIVERY_HEADER = 'x-berth-delivery';
export const EVENT_HEADER = 'x-berth-event';
/** What the docs recommend receivers accept: requests at most this old (or this far in the future). */
export const REPLAY_WINDOW_S = 300;

export function signature(secret: string, timestamp: number, body: string): string {
  return 'v1=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/** The receiver's side, as documented: signature valid and timestamp within the window. */
export function verifySignature(secret: string, headers: { timestamp: string | undefined; signature: string | undefined }, body: string, nowS = Math.floor(Date.now() / 1000)): boolean {
  const ts = Number(headers.timestamp);
  if (!Number.isInteger(ts) || Math.abs(nowS - ts) > REPLAY_WINDOW_S || !headers.signature) return false;
  const want = Buffer.from(signature(secret, ts, body));
  const got = Buffer.from(headers.signature);
  return want.length === got.length && timingSafeEqual(want, got);
}
