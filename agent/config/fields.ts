// Field schemas shared by berth.yml and appliku.yml, and the translation of zod issues into
// one-line errors that name the file, the key and what was expected.
import { z } from 'zod';
import cron from 'node-cron';
import { posix } from 'node:path';
import { AppConfigError, type BuildImage } from './types.js';
import { formatMemory, MAX_MEMORY, MIN_MEMORY, parseMemorySize } from '../docker/limits.js';

/** A shell command from the config: run with `sh -c` inside the app's own container, never on the host. */
export const command = z
  .string({ error: 'expected a command (a string)' })
  .trim()
  .min(1, 'expected a non-empty command')
  .max(8192, 'command is longer than 8192 characters')
  .refine((c) => !c.includes('\0'), 'command must not contain a NUL byte');

/** Process names become container names and labels. */
export const processName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,29}$/, 'process names are 1-30 lower-case letters, digits, "_" or "-", starting with a letter')
  .refine((n) => n !== 'release' && n !== 'build', 'process name is reserved (release and build are phases, not processes)');

export const scale = z.number({ error: 'expected a whole number of containers' }).int('expected a whole number').min(0, 'expected 0 or more').max(32, 'at most 32 containers per process');

/** A memory cap like "512m" or "2g" (Docker's binary units) → bytes. */
export const memory = z
  .string({ error: 'expected a memory size like "512m" or "2g"' })
  .transform((v, ctx) => {
    const bytes = parseMemorySize(v);
    if (bytes === null) ctx.addIssue({ code: 'custom', message: `expected a memory size like "512m" or "2g", got ${JSON.stringify(v.slice(0, 40))}` });
    else if (bytes < MIN_MEMORY || bytes > MAX_MEMORY) ctx.addIssue({ code: 'custom', message: `expected between ${formatMemory(MIN_MEMORY)} and 1024 GB` });
    return bytes ?? 0;
  });

/** A CPU cap: a number of CPUs, decimals allowed (0.5 = half of one core). */
export const cpus = z.number({ error: 'expected a number of CPUs like 1 or 0.5' }).min(0.01, 'expected at least 0.01 CPUs').max(256, 'expected at most 256 CPUs');

export const port = z.number({ error: 'expected a port number' }).int('expected a whole port number').min(1, 'expected a port between 1 and 65535').max(65535, 'expected a port between 1 and 65535');

/** A path inside the repository: relative, no "..", plain characters. */
export const repoPath = z
  .string({ error: 'expected a path (a string)' })
  .trim()
  .min(1, 'expected a non-empty path')
  .max(1024, 'path is too long')
  .refine((p) => !p.startsWith('/'), 'expected a path relative to the repository root')
  .refine((p) => !/[\0\n\r]/.test(p), 'path must not contain control characters')
  .transform((p) => posix.normalize(p).replace(/\/+$/, '') || '.')
  .refine((p) => p !== '..' && !p.startsWith('../'), 'path must stay inside the repository (no "..")');

/** A directory inside the image (relative to its working directory, or absolute). */
export const imagePath = z
  .string({ error: 'expected a directory (a string)' })
  .trim()
  .min(1, 'expected a non-empty directory')
  .max(1024, 'path is too long')
  .refine((p) => /^[A-Za-z0-9._\/@+-]+$/.test(p), 'expected a directory of letters, digits and "._/@+-"')
  .transform((p) => posix.normalize(p).replace(/(.)\/+$/, '$1'))
  .refine((p) => !p.split('/').includes('..'), 'directory must not contain ".."');

export const containerPath = z
  .string({ error: 'expected an absolute path in the container' })
  .regex(/^\/[A-Za-z0-9._\/-]*$/, 'expected an absolute path in the container (letters, digits, "._/-")');

/** Standard 5 fields only: node-cron would also take a 6th (seconds) field, which other crons do not. */
export const cronSchedule = z
  .string({ error: 'expected a cron schedule like "0 3 * * *"' })
  .trim()
  .refine((s) => s.split(/\s+/).length === 5 && cron.validate(s), 'expected a valid 5-field cron schedule like "0 3 * * *" (minute hour day-of-month month day-of-week)');

export const timezone = z.string({ error: 'expected an IANA time zone like "Europe/Berlin"' }).refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return /^[A-Za-z][A-Za-z0-9_+\/-]*$/.test(tz);
  } catch {
    return false;
  }
}, 'expected an IANA time zone like "Europe/Berlin" or "UTC"');

/** Seconds a cron run may take: a number, or "90s" / "30m" / "2h". */
export const cronTimeout = z
  .union([z.number(), z.string().regex(/^\d+\s*[smh]$/, 'expected seconds, or a duration like "30m" or "2h"')], { error: 'expected seconds, or a duration like "30m" or "2h"' })
  .transform((v) => (typeof v === 'number' ? v : Number(v.slice(0, -1).trim()) * { s: 1, m: 60, h: 3600 }[v.slice(-1) as 's' | 'm' | 'h']))
  .pipe(z.number().int('expected whole seconds').min(1, 'expected 1 second to 24 hours').max(86_400, 'expected 1 second to 24 hours'));

export const cronJob = z.strictObject(
  { schedule: cronSchedule, command, timezone: timezone.optional(), timeout: cronTimeout.optional() },
  { error: 'expected a mapping with "schedule" and "command" (optional "timezone", "timeout")' },
);

/** A volume's mount point: absolute, not "/" (it would hide the whole image). */
export const volumeTarget = containerPath
  .refine((p) => !p.split('/').includes('..'), 'volume target must not contain ".."')
  .transform((p) => posix.normalize(p).replace(/(.)\/+$/, '$1'))
  .refine((p) => p !== '/', 'a volume cannot be mounted at "/" (it would hide the whole image)');

/** Volume names become Docker volume names (berth-APP-NAME). */
export const volumeName = z.string().regex(/^[a-z][a-z0-9_-]{0,29}$/, 'volume names are 1-30 lower-case letters, digits, "_" or "-", starting with a letter');

/** Two volumes mounted at the same target would hide one another: refused, naming both. */
export function distinctTargets(volumes: Record<string, { target: string }>, ctx: z.core.$RefinementCtx): void {
  const seen = new Map<string, string>();
  for (const [name, v] of Object.entries(volumes)) {
    const other = seen.get(v.target);
    if (other) ctx.addIssue({ code: 'custom', path: [name, 'target'], message: `"${v.target}" is already the target of volume "${other}" (two volumes cannot share a target)` });
    seen.set(v.target, name);
  }
}

export const healthPath = z.string({ error: 'expected a URL path like /up' }).regex(/^\/[A-Za-z0-9._~\/?&=%+-]*$/, 'expected a URL path starting with "/" like /up');

/** python-X.Y | node-NN | ruby-X.Y | dockerfile → BuildImage. */
export const buildImage = z
  .string({ error: 'expected python-X.Y, node-NN, ruby-X.Y or dockerfile' })
  .trim()
  .transform((s, ctx): BuildImage => {
    if (s === 'dockerfile') return { kind: 'dockerfile' };
    let m = /^python-(3\.\d{1,2})$/.exec(s);
    if (m) return { kind: 'python', version: m[1]! };
    m = /^node-(\d{1,2})$/.exec(s);
    if (m) return { kind: 'node', version: m[1]! };
    m = /^ruby-(\d\.\d{1,2})$/.exec(s);
    if (m) return { kind: 'ruby', version: m[1]! };
    ctx.addIssue({ code: 'custom', message: `expected python-X.Y, node-NN, ruby-X.Y or dockerfile, got ${JSON.stringify(s)}` });
    return z.NEVER;
  });

/** Parse with a strict schema; the first issue becomes a AppConfigError "FILE: key K: problem". */
export function parseConfig<T>(schema: z.ZodType<T>, data: unknown, file: string): T {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  throw new AppConfigError(describeIssue(file, result.error.issues[0], data));
}

function describeIssue(file: string, issue: z.core.$ZodIssue | undefined, data: unknown): string {
  if (!issue) return `${file}: invalid configuration`;
  const where = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (where ? `${where}.${k}` : k));
    return `${file}: unknown key ${keys.map((k) => `"${k}"`).join(', ')}${where ? ` in "${where}"` : ''} (check the spelling; see docs/app-config.md)`;
  }
  if (issue.code === 'invalid_type') {
    const got = describe(valueAt(data, issue.path));
    const expected = issue.message.startsWith('Invalid input') ? `expected ${article(issue.expected)}` : issue.message;
    return `${file}: key "${where || '(top level)'}": ${expected}, got ${got}`;
  }
  if (issue.code === 'invalid_key') {
    return `${file}: key "${where}": ${issue.issues[0]?.message ?? 'invalid name'}`;
  }
  if (issue.code === 'invalid_union') {
    return `${file}: key "${where}": ${issue.message.startsWith('Invalid input') ? 'has the wrong shape' : issue.message}, got ${describe(valueAt(data, issue.path))}`;
  }
  return `${file}: key "${where || '(top level)'}": ${issue.message}`;
}

function valueAt(data: unknown, path: PropertyKey[]): unknown {
  let v: unknown = data;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null (an empty value)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 40 ? `${s.slice(0, 37)}…` : s}`;
}

function article(expected: string): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', boolean: 'true or false', record: 'a mapping' };
  return names[expected] ?? expected;
}
