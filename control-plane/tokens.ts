import { newSecret } from '../shared/ids.js';

/**
 * A random secret (32 bytes, base64url) that never starts with "-" or "_": join tokens and the admin
 * token are pasted as command-line arguments (`berth agent join URL TOKEN`, `berth login URL TOKEN`),
 * where a leading "-" reads as an option. 256 random bits minus that one character's choice.
 */
export function newCliSafeSecret(): string {
  for (;;) {
    const s = newSecret();
    if (/^[A-Za-z0-9]/.test(s)) return s;
  }
}
