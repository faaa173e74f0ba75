// Dashboard sessions: the admin token is exchanged once for a random session id held in an
// HttpOnly, SameSite=Strict cookie. Sessions live in memory only (a restart signs everyone out:
// the dashboard keeps no state in the database). Each session carries its own CSRF token.
import { newSecret, secretEquals } from '../../shared/ids.js';

export const SESSION_COOKIE = 'berth_session';
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** A bound on memory whatever a client does: the oldest session goes first. */
const MAX_SESSIONS = 200;

export interface Session {
  id: string;
  csrf: string;
  expiresAt: number;
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  create(): Session {
    this.prune();
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const s: Session = { id: newSecret(), csrf: newSecret(), expiresAt: this.now() + SESSION_TTL_MS };
    this.sessions.set(s.id, s);
    return s;
  }

  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  delete(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private prune(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= t) this.sessions.delete(id);
  }
}

/** A form's CSRF token matches its session's (constant time). */
export function csrfValid(session: Session, token: unknown): boolean {
  return typeof token === 'string' && token.length > 0 && secretEquals(token, session.csrf);
}

/**
 * Wrong tokens are slowed down per client address: after FREE_FAILURES, each further failure
 * waits twice as long as the one before (capped), so guessing is hopeless but a typo costs nothing.
 */
const FREE_FAILURES = 3;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
const FORGET_AFTER_MS = 15 * 60 * 1000;
const MAX_TRACKED = 1000;

export class SignInThrottle {
  private readonly failures = new Map<string, { count: number; last: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** How long to hold this client's next answer. */
  delayFor(client: string): number {
    const f = this.failures.get(client);
    if (!f || this.now() - f.last > FORGET_AFTER_MS) return 0;
    const over = f.count - FREE_FAILURES;
    return over < 0 ? 0 : Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** over);
  }

  failed(client: string): void {
    const f = this.failures.get(client);
    const fresh = !f || this.now() - f.last > FORGET_AFTER_MS;
    if (this.failures.size >= MAX_TRACKED && !f) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(client, { count: fresh ? 1 : f.count + 1, last: this.now() });
  }

  succeeded(client: string): void {
    this.failures.delete(client);
  }
}
