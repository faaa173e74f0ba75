// Secrets given to the CLI (join token, admin token) without putting them on a command line, where
// every local user sees them in `ps` / /proc/PID/cmdline: an environment variable, a 0600 file
// (--token-file) or stdin (--token-stdin, or `-` for the TOKEN argument). The TOKEN argument itself
// stays accepted for compatibility.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CliError } from './errors.js';

export interface TokenSources {
  /** The TOKEN argument; `-` means stdin. */
  positional?: string;
  tokenFile?: string;
  tokenStdin?: boolean;
  /** The environment variable read when no other source is given (e.g. BERTH_JOIN_TOKEN). */
  envName: string;
  /** What the token is, for messages ("join token"). */
  what: string;
}

const MAX_TOKEN_BYTES = 4096;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

function readFd(fd: number): string {
  const buf = Buffer.alloc(MAX_TOKEN_BYTES + 1);
  let n = 0;
  for (;;) {
    let got: number;
    try {
      got = readSync(fd, buf, n, buf.length - n, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(PAUSE, 0, 0, 10); // a non-blocking pipe with nothing in it yet
      continue;
    }
    if (got === 0) break;
    n += got;
    if (n > MAX_TOKEN_BYTES) throw new CliError(`more than ${MAX_TOKEN_BYTES} bytes where a token was expected`);
  }
  return buf.subarray(0, n).toString('utf8');
}

/** The token in FILE, refused when group or others may read it: it is a secret. */
function fromFile(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new CliError(`cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    // fstat of the opened file: what is checked is what is read.
    const mode = fstatSync(fd).mode & 0o777;
    if (mode & 0o077) {
      throw new CliError(`${file} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}): a ${what} file must be private; run chmod 600 ${file}`);
    }
    return readFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** The first line, trimmed; refused when empty or holding whitespace or control characters. */
function clean(raw: string, from: string, what: string): string {
  const token = (raw.split('\n')[0] ?? '').trim();
  if (!token) throw new CliError(`the ${what} from ${from} is empty`);
  if (/[\s\x00-\x1f\x7f]/.test(token)) throw new CliError(`the ${what} from ${from} contains spaces or control characters`);
  return token;
}

export function readToken(src: TokenSources, env: NodeJS.ProcessEnv = process.env): string {
  const stdin = src.tokenStdin || src.positional === '-';
  const given = [src.positional !== undefined && src.positional !== '-', !!src.tokenFile, stdin].filter(Boolean).length;
  if (given > 1) throw new CliError(`give the ${src.what} one way only: the TOKEN argument, --token-file FILE or stdin (--token-stdin or -)`);
  if (src.tokenFile) return clean(fromFile(src.tokenFile, src.what), src.tokenFile, src.what);
  if (stdin) return clean(readFd(0), 'stdin', src.what);
  if (src.positional !== undefined) return clean(src.positional, 'the command line', src.what);
  const value = env[src.envName];
  if (value) return clean(value, src.envName, src.what);
  throw new CliError(`no ${src.what}: set ${src.envName}, or pass --token-file FILE (mode 0600) or --token-stdin`);
}
