// Text from agents, repositories and running apps (host names, branch names, commit messages,
// deploy reasons, build and app output) is hostile: an escape sequence in it would drive the user's
// terminal (retitle it, clear it, rewrite earlier lines, set the clipboard on some terminals).
// Human output therefore shows every control character as a visible escape instead of sending it;
// --json output is exact JSON, whose escaping already neutralises them.

// C0 controls except tab, DEL, C1 controls (0x9b is a one-byte CSI), the Unicode line separators and
// the bidi overrides/isolates that reorder what is shown.
const UNSAFE = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function visible(ch: string): string {
  const code = ch.codePointAt(0)!;
  if (ch === '\n') return '\\n';
  if (ch === '\r') return '\\r';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `value` as a string fit for a terminal: ESC becomes the four characters `\x1b`, a newline `\n`, and so on. */
export function terminalSafe(value: unknown): string {
  return String(value).replace(UNSAFE, visible);
}

/**
 * Template tag for a line the CLI prints: the literal parts (the CLI's own text, including the
 * newlines it puts there) are kept, every interpolated value goes through `terminalSafe`.
 *   process.stdout.write(tty`deployment ${d.id}: ${d.reason}\n`)
 */
export function tty(strings: TemplateStringsArray, ...values: unknown[]): string {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += terminalSafe(values[i]) + strings[i + 1]!;
  return out;
}
