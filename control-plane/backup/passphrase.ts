// Where a backup passphrase comes from: a file only its owner can read, or standard input. Never a
// command-line argument (visible in `ps` and shell history) and never an environment variable.
import { readFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { MIN_PASSPHRASE_CHARS } from './envelope.js';

export class PassphraseError extends Error {
  override name = 'PassphraseError';
}

function checked(passphrase: string, where: string): string {
  if (passphrase.length === 0) throw new PassphraseError(`no passphrase given (${where} is empty)`);
  if (passphrase.length < MIN_PASSPHRASE_CHARS) throw new PassphraseError(`the passphrase from ${where} is too short (at least ${MIN_PASSPHRASE_CHARS} characters)`);
  return passphrase;
}

/** The first line of FILE, which must be a regular file not readable or writable by group or others. */
export function readPassphraseFile(file: string): string {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw new PassphraseError(`cannot read the passphrase file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!st.isFile()) throw new PassphraseError(`the passphrase file ${file} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new PassphraseError(`the passphrase file ${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
  }
  return checked(readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '', file);
}

/** The first line of standard input (with a prompt on stderr when it is a terminal). */
export async function readPassphraseStdin(prompt = 'backup passphrase: '): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(prompt);
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of rl) return checked(line.replace(/\r$/, ''), 'standard input');
  } finally {
    rl.close();
  }
  throw new PassphraseError('no passphrase given: pipe it on standard input or use --passphrase-file FILE (mode 0600)');
}

export function readPassphrase(file: string | undefined): Promise<string> {
  return file ? Promise.resolve(readPassphraseFile(file)) : readPassphraseStdin();
}
