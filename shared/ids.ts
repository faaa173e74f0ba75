import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';

/** Sortable, lower-case id: base36 time + random. Used for deployments. */
export function newId(): string {
  return Date.now().toString(36) + randomBytes(6).toString('hex');
}

export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Constant-time comparison of two secrets (via their hashes, so lengths never leak). */
export function secretEquals(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
