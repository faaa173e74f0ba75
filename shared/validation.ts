// Validation of every name and URL that crosses an edge (CLI, HTTP API, WebSocket, webhooks).
// These values end up in Docker object names, Nginx config files and git argument lists, so the
// rules are strict allow-lists rather than attempts to escape hostile input.
import { domainToASCII, domainToUnicode } from 'node:url';
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

/** Host name of the agent's own nginx server block that proves which config generation nginx runs. */
export const GENERATION_HOST = 'berth-generation.invalid';

/**
 * Names the agent uses for itself: an app claiming one would take over (or break) the agent's own
 * server block, so they are refused where a domain enters (`berth domain add`, base domains) and
 * again by the agent before it writes a config. One list for both sides.
 */
export const RESERVED_HOSTS: ReadonlySet<string> = new Set([GENERATION_HOST]);

/**
 * Special-use TLDs (RFC 6761) refused for app domains: `.invalid` never resolves, so a name there
 * can only be an internal one (berth's own live there).
 */
const RESERVED_TLDS: ReadonlySet<string> = new Set(['invalid']);

/**
 * Domain names: RFC 1123 host names, lower-cased, IDNs as punycode. The value is written into
 * nginx `server_name`, so anything outside [a-z0-9.-] is refused rather than escaped.
 */
export const domainName = z.string().transform((raw, ctx) => {
  const r = normalizeDomain(raw);
  if (r.ok) return r.domain;
  ctx.addIssue({ code: 'custom', message: r.error });
  return z.NEVER;
});

/**
 * A domain to look up or remove: the same syntax as `domainName` but reserved names pass, so a name
 * stored before they were refused can still be removed (`berth domain rm`).
 */
export const existingDomainName = z.string().transform((raw, ctx) => {
  const r = normalizeDomain(raw, { allowReserved: true });
  if (r.ok) return r.domain;
  ctx.addIssue({ code: 'custom', message: r.error });
  return z.NEVER;
});

/**
 * Normalize one domain: lower-case; an international name becomes punycode (node:url
 * domainToASCII). Refused: whitespace/control characters (never trimmed away: "a.com\n" is an
 * error, not "a.com"), anything but a-z 0-9 "-" ".", empty labels, labels over 63 and names over
 * 253 characters, IP addresses, names the agent reserves and the ".invalid" TLD, wildcards (they need DNS-01, which berth does not do), and
 * look-alikes: characters IDNA silently maps to others (full-width letters, zero-width joiners),
 * labels that mix scripts (Latin "a" next to Cyrillic "р"), and labels written entirely in
 * letters that mimic Latin ones ("аррӏе").
 */
export function normalizeDomain(raw: unknown, opts: { allowReserved?: boolean } = {}): { ok: true; domain: string } | { ok: false; error: string } {
  const no = (error: string) => ({ ok: false as const, error });
  if (typeof raw !== 'string') return no('domain must be a string');
  if (raw.length === 0) return no('domain is empty');
  if (raw.length > 1000) return no('domain is longer than 253 characters');
  if (/[\s\x00-\x1f\x7f-\x9f\u2028\u2029]/.test(raw)) return no('domain must not contain whitespace or control characters');
  if (raw.startsWith('*.')) {
    return no('wildcard domains need DNS-01 validation, which is not configured on this installation: add each host name instead');
  }
  const lower = raw.toLowerCase();
  let ascii: string;
  if (/^[\x21-\x7e]*$/.test(lower)) {
    ascii = lower;
    if (!/^[a-z0-9.-]+$/.test(ascii)) return no('domain may only contain a-z, 0-9, "-" and "." (international names are converted to punycode)');
  } else {
    // Printable ASCII other than the allowed characters is refused before IDNA can map it away.
    if (/[\x21-\x2c\x2f\x3a-\x60\x7b-\x7e]/.test(lower)) return no('domain may only contain letters, digits, "-" and "."');
    const nfc = lower.normalize('NFC');
    ascii = domainToASCII(nfc);
    if (!ascii) return no('domain is not a valid international domain name');
    // IDNA maps some characters to others (full-width "ｅ" → "e", drops zero-width joiners): a
    // name that does not survive the round trip does not look like what it resolves to.
    if (domainToUnicode(ascii) !== nfc) return no('domain contains characters that stand in for others (full-width or invisible characters): type the name plainly');
  }
  if (ascii.length > 253) return no('domain is longer than 253 characters');
  const labels = ascii.split('.');
  if (labels.length < 2) return no('domain must have at least two labels (e.g. app.example.com)');
  for (const label of labels) {
    if (label.length === 0) return no('domain has an empty label ("..", or a leading/trailing ".")');
    if (label.length > 63) return no('domain has a label longer than 63 characters');
    if (label.startsWith('-') || label.endsWith('-')) return no('domain labels must not start or end with "-"');
    if (label.startsWith('xn--')) {
      const uni = domainToUnicode(label);
      if (!uni || uni === label || /^[\x00-\x7f]*$/.test(uni) || domainToASCII(uni) !== label) return no(`domain label "${label}" is not valid punycode`);
      const lookalike = lookalikeReason(uni);
      if (lookalike) return no(`domain label "${uni}" (${label}) ${lookalike}`);
    }
  }
  const tld = labels[labels.length - 1]!;
  if (/^[0-9]+$/.test(tld)) return no('domain must not be an IP address');
  if (opts.allowReserved) return { ok: true, domain: ascii };
  if (RESERVED_HOSTS.has(ascii)) return no(`domain ${ascii} is reserved: the berth agent uses it for its own nginx server block`);
  if (RESERVED_TLDS.has(tld)) return no(`domain ${ascii} is under ".${tld}", a special-use name that never resolves (RFC 6761) and that berth reserves for internal names`);
  return { ok: true, domain: ascii };
}

const SCRIPTS = ['Latin', 'Cyrillic', 'Greek', 'Armenian', 'Georgian', 'Hebrew', 'Arabic', 'Han', 'Hiragana', 'Katakana', 'Hangul', 'Bopomofo', 'Thai', 'Devanagari', 'Cherokee'] as const;
const SCRIPT_RE = Object.fromEntries(SCRIPTS.map((s) => [s, new RegExp(`\\p{Script=${s}}`, 'u')])) as Record<(typeof SCRIPTS)[number], RegExp>;
// Script mixes that are normal in one name (UTS #39 "highly restrictive"): CJK with Latin.
const ALLOWED_MIXES: ReadonlyArray<ReadonlySet<string>> = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];
// Letters of other scripts (and a few Latin ones) that render like a-z: a label made only of them
// impersonates an ASCII name.
const LATIN_LOOKALIKES = new Set([...'аеорсухѕіјһӏԁԛԝүьɑɡıȷɩοαινυκρχꭵ']);

function lookalikeReason(label: string): string | null {
  const scripts = new Set<string>();
  let letters = 0;
  let mimics = 0;
  for (const ch of label) {
    if (/[0-9-]/.test(ch)) continue;
    letters++;
    if (LATIN_LOOKALIKES.has(ch)) mimics++;
    const script = SCRIPTS.find((s) => SCRIPT_RE[s].test(ch));
    if (!script) return `contains the character "${ch}" (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}), which is not allowed in a domain name`;
    scripts.add(script);
  }
  if (scripts.size > 1 && !ALLOWED_MIXES.some((mix) => [...scripts].every((s) => mix.has(s)))) {
    return `mixes ${[...scripts].join(' and ')} letters, which is how look-alike domains are made`;
  }
  if (letters > 0 && mimics === letters) return 'is made only of letters that look like Latin ones (a look-alike of an ASCII name)';
  return null;
}

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
