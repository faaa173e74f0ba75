// The dashboard's request guards: security headers on every page, the session cookie, and the
// same-origin + CSRF-token check every form POST must pass.
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { csrfValid, SESSION_COOKIE, SESSION_TTL_MS, type Session, type SessionStore } from './session.js';

/** No inline script or style, nothing loaded from elsewhere, never framed. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  c.header('Content-Security-Policy', CSP);
  c.header('X-Frame-Options', 'DENY');
  c.header('X-Content-Type-Options', 'nosniff');
  // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on our own form POSTs.
  c.header('Referrer-Policy', 'same-origin');
  if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'no-store');
};

const isHttps = (c: Context, publicUrl: string) => new URL(c.req.url).protocol === 'https:' || publicUrl.startsWith('https:');

export function setSessionCookie(c: Context, session: Session, publicUrl: string): void {
  setCookie(c, SESSION_COOKIE, session.id, {
    httpOnly: true,
    sameSite: 'Strict',
    secure: isHttps(c, publicUrl),
    path: '/ui',
    maxAge: Math.floor(SESSION_TTL_MS / 1000),
    expires: new Date(session.expiresAt),
  });
}

export function clearSessionCookie(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/ui' });
}

export const sessionId = (c: Context): string | undefined => getCookie(c, SESSION_COOKIE);

/**
 * A POST comes from our own pages: its Origin (or, without one, Sec-Fetch-Site) says same-origin.
 * Browsers send Origin on every cross-origin POST, so a foreign page's form is refused here even
 * before its (missing) CSRF token is looked at.
 */
export function sameOrigin(c: Context, publicUrl: string): boolean {
  const origin = c.req.header('origin');
  if (origin !== undefined) {
    const own = new Set([new URL(c.req.url).origin]);
    if (publicUrl) own.add(new URL(publicUrl).origin);
    return own.has(origin);
  }
  const site = c.req.header('sec-fetch-site');
  return site === undefined || site === 'same-origin' || site === 'none';
}

/** A signed-in form POST: same origin and the session's CSRF token. */
export function formAllowed(c: Context, session: Session, form: Record<string, unknown>, publicUrl: string): boolean {
  return sameOrigin(c, publicUrl) && csrfValid(session, form._csrf);
}

export type { SessionStore };
