// Admin authentication for the API: one bearer token, compared in constant time.
import type { MiddlewareHandler } from 'hono';
import { secretEquals } from '../../shared/ids.js';
import { bearerToken } from '../bearer.js';
import { UnauthorizedError } from '../errors.js';

/** Paths under /api that authenticate differently (the agent proves itself with a join token). */
const OPEN_PATHS = new Set(['/api/agent/join']);

export function adminAuth(adminToken: string): MiddlewareHandler {
  return async (c, next) => {
    if (OPEN_PATHS.has(c.req.path)) return next();
    const token = bearerToken(c.req.header('authorization'));
    if (!token) throw new UnauthorizedError('missing admin token (Authorization: Bearer <token>)');
    if (!secretEquals(token, adminToken)) throw new UnauthorizedError('admin token is invalid');
    return next();
  };
}
