// Where nginx's files are: berth's files in the sites directory, the private prefix's nginx.conf, pid
// file and error log, and, for a system nginx, the pid and error-log paths compiled into the binary.
import { readFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

const BASE_FILE = 'berth_base.conf'; // "_" can never appear in an app name, so no clash with berth-APP.conf
const JOURNAL_FILE = '.berth-journal.json';
export const APP_FILE_RE = /^berth-([a-z][a-z0-9-]*)\.conf$/;

/** The files of one nginx instance: a private one under `prefix`, or the system one (prefix undefined). */
export class NginxFiles {
  constructor(
    readonly prefix: string | undefined,
    readonly sitesDir: string,
  ) {}

  /** Prefix mode only. */
  mainConf(): string {
    return join(this.prefix!, 'nginx.conf');
  }
  appFile(app: string): string {
    return join(this.sitesDir, `berth-${app}.conf`);
  }
  baseFile(): string {
    return join(this.sitesDir, BASE_FILE);
  }
  journalFile(): string {
    return join(this.sitesDir, JOURNAL_FILE);
  }
  /** The pid file and error log of the private nginx (prefix mode only; a system nginx's come from `nginx -V`). */
  prefixPaths(): BuildPaths {
    return { pidPath: join(this.prefix!, 'nginx.pid'), errorLogPath: join(this.prefix!, 'logs', 'error.log') };
  }
}

/** The pid file and error log an nginx binary uses when its config does not say otherwise. */
export interface BuildPaths {
  pidPath: string;
  errorLogPath: string;
}

/** Debian's paths: what a system nginx uses when `nginx -V` names none (or cannot be run). */
export const SYSTEM_NGINX_DEFAULTS: Readonly<BuildPaths> = { pidPath: '/run/nginx.pid', errorLogPath: '/var/log/nginx/error.log' };

/**
 * The pid and error-log paths compiled into nginx, from the `configure arguments:` line of `nginx -V`
 * (which nginx prints on stderr). A path that is not named falls back to Debian's; a relative one is
 * relative to the compiled-in `--prefix` (nginx's own default: /usr/local/nginx/).
 */
export function parseBuildPaths(versionOutput: string): BuildPaths {
  const arg = (name: string) => new RegExp(`(?:^|\\s)--${name}=(\\S+)`).exec(versionOutput)?.[1];
  const prefix = arg('prefix') ?? '/usr/local/nginx/';
  const inPrefix = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : join(prefix, p));
  return {
    pidPath: inPrefix(arg('pid-path')) ?? SYSTEM_NGINX_DEFAULTS.pidPath,
    errorLogPath: inPrefix(arg('error-log-path')) ?? SYSTEM_NGINX_DEFAULTS.errorLogPath,
  };
}

/** A file's text, or null when it cannot be read (absent, a stale /proc entry). */
export function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
