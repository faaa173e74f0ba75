// Reading webhook request bodies ourselves: the exact bytes (signatures cover them), a hard size
// limit, and a cap on how many bodies are read at once before anyone has been authenticated.
import type { Context } from 'hono';
import type { Logger } from '../../shared/logger.js';
import { ControlPlaneError } from '../errors.js';

export class HookError extends ControlPlaneError {
  /** Set when the rest of the request body was left unread: the connection cannot be reused. */
  closeConnection = false;
}

/**
 * An oversized body is still read (and thrown away) up to this much, so the client gets its 413
 * instead of a connection reset mid-upload; beyond it, or after DISCARD_MS, the connection is closed.
 */
const DISCARD_MAX_BYTES = 32 * 1024 * 1024;
const DISCARD_MS = 10_000;

/**
 * Reading a body ourselves: the exact bytes (signatures cover them) and a hard size limit. `log`
 * hears of a failure to cancel an oversized upload (best effort: the connection is closed anyway).
 */
export async function readRawBody(c: Context, limit: number, log?: Logger): Promise<Buffer> {
  const declared = c.req.header('content-length');
  const tooLarge = (close: boolean) => {
    const err = new HookError(413, `request body is larger than ${limit >= 1024 * 1024 ? `${limit / 1024 / 1024} MB` : `${limit / 1024} KB`}`);
    err.closeConnection = close;
    return err;
  };
  if (declared !== undefined && /^\d+$/.test(declared.trim()) && Number(declared) > DISCARD_MAX_BYTES) throw tooLarge(true);
  const stream = c.req.raw.body;
  if (!stream) return Buffer.alloc(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let discardUntil = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total <= limit) {
        chunks.push(value);
        continue;
      }
      chunks.length = 0;
      discardUntil ||= Date.now() + DISCARD_MS;
      if (total > DISCARD_MAX_BYTES || Date.now() > discardUntil) {
        void reader.cancel().catch((err: unknown) => log?.warn({ err, path: c.req.path }, 'could not cancel the rest of an oversized webhook body'));
        throw tooLarge(true);
      }
    }
  } catch (err) {
    if (err instanceof HookError) throw err;
    throw new HookError(400, 'the request body could not be read');
  }
  if (total > limit) throw tooLarge(false);
  return Buffer.concat(chunks);
}

/**
 * At most `max` bodies are read at once before their sender is authenticated (a push webhook's
 * signature covers its body, so it can only be checked after the read): slow or stalled uploads
 * cannot pile up without bound. A request beyond the cap is turned away before anything is read.
 */
export class ReadSlots {
  private active = 0;
  constructor(readonly max: number) {}

  /** A release function, or null when every slot is taken. */
  acquire(): (() => void) | null {
    if (this.active >= this.max) return null;
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }
}
