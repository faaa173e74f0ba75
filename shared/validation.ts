// Validation of every name and URL that crosses an edge (CLI, HTTP API, WebSocket, webhooks).
// These values end up in Docker object names, Nginx config files and git argument lists, so the
// rules are strict allow-lists rather than attempts to escape hostile input.
import { z } from 'zod';

/** App names are DNS labels: they become container names, nginx file names and default hostnames. */
export const appName = z
  .string()
  .min(1, 'app name is empty')
  .max(40, 'app name is longer than 40 characters')
  .regex(
    /^[a-z](?:[a-z0-9-]*[a-z0-9])?$/,
    'app name must be lower-case letters, digits and "-", start with a letter and not end with "-"',
  );

/** Server names follow the same DNS-label rule, slightly longer. */
export const serverName = z
  .string()
  .min(1, 'server name is empty')
  .max(63, 'server name is longer than 63 characters')
  .regex(
    /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/,
    'server name must be lower-case letters, digits and "-", and not start or end with "-"',
  );

/** Env keys: POSIX-style identifiers (what a shell and Docker both accept). */
export const envKey = z
  .string()
  .max(128, 'env key is longer than 128 characters')
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'env key must be letters, digits and "_", not starting with a digit');

/** Git branch names: a conservative subset of git-check-ref-format that can never read as an option. */
export const branchName = z
  .string()
  .min(1, 'branch is empty')
  .max(200, 'branch name is too long')
  .regex(/^[A-Za-z0-9._\/-]+$/, 'branch may only contain letters, digits, ".", "_", "/" and "-"')
  .refine((b) => !b.startsWith('-'), 'branch must not start with "-"')
  .refine((b) => !b.startsWith('/') && !b.endsWith('/') && !b.endsWith('.'), 'branch must not start or end with "/" or end with "."')
  .refine((b) => !b.includes('..') && !b.includes('//') && !b.includes('/.') && !b.endsWith('.lock'), 'branch is not a valid git ref name');

/** A full or abbreviated commit SHA (hex only, so it can never be an option or a ref expression). */
export const commitSha = z
  .string()
  .regex(/^[0-9a-f]{7,40}$/, 'commit must be 7 to 40 lower-case hex characters');

const ALLOWED_GIT_SCHEMES = new Set(['https:', 'http:', 'ssh:', 'git:', 'file:']);

/**
 * Git repository URLs. Git interprets a leading "-" as an option and "ext::" / "fd::" as transports
 * that run commands, so only plain URLs with known schemes and scp-like `user@host:path` are accepted.
 */
export const gitUrl = z
  .string()
  .min(1, 'repo URL is empty')
  .max(2048, 'repo URL is too long')
  .superRefine((raw, ctx) => {
    const fail = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (/[\s\x00-\x1f\x7f]/.test(raw)) return fail('repo URL must not contain whitespace or control characters');
    if (raw.startsWith('-')) return fail('repo URL must not start with "-" (git would read it as an option)');
    if (/^[a-z][a-z0-9+.-]*::/i.test(raw)) return fail('repo URL uses a git remote-helper transport ("X::"), which is not allowed');
    const scpLike = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)[A-Za-z0-9._~\/-]+$/;
    if (scpLike.test(raw)) return;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return fail('repo URL must be an https://, http://, ssh://, git://, file:// or user@host:path URL');
    }
    if (!ALLOWED_GIT_SCHEMES.has(url.protocol)) return fail(`repo URL scheme "${url.protocol.replace(':', '')}" is not allowed`);
    if (url.protocol !== 'file:' && !url.hostname) return fail('repo URL has no host');
    if (url.hostname.startsWith('-')) return fail('repo URL host must not start with "-"');
    if (url.protocol === 'file:' && !url.pathname.startsWith('/')) return fail('file:// repo URL must be an absolute path');
  });

/**
 * Domain names: RFC 1123 host names, lower-cased, IDNs as punycode. The value is written into
 * nginx `server_name`, so anything outside [a-z0-9.-] is refused rather than escaped.
 */
export const domainName = z
  .string()
  .transform((d) => d.trim().toLowerCase())
  .pipe(
    z
      .string()
      .min(1, 'domain is empty')
      .max(253, 'domain is longer than 253 characters')
      .superRefine((d, ctx) => {
        const fail = (message: string) => ctx.addIssue({ code: 'custom', message });
        if (!/^[a-z0-9.-]+$/.test(d)) return fail('domain may only contain a-z, 0-9, "-" and "." (use punycode for international names)');
        const labels = d.split('.');
        if (labels.length < 2) return fail('domain must have at least two labels (e.g. app.example.com)');
        for (const label of labels) {
          if (label.length === 0) return fail('domain has an empty label ("..", or a leading/trailing ".")');
          if (label.length > 63) return fail('domain has a label longer than 63 characters');
          if (label.startsWith('-') || label.endsWith('-')) return fail('domain labels must not start or end with "-"');
        }
        if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return fail('domain must not be an IP address');
      }),
  );

/** Validate with a schema and throw a one-line error naming the field. */
export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ValidationError(`invalid ${what}: ${issue?.message ?? 'invalid value'}`);
  }
  return result.data;
}

export class ValidationError extends Error {
  override name = 'ValidationError';
}
