// Errors shown to people in one line: deploy failure reasons, status fields, CLI messages.

/**
 * The first meaningful line of an error's message, whitespace collapsed and cut to `max` characters.
 * An error with no message falls back to its class name.
 */
export function oneLine(err: unknown, max = 500): string {
  const message = err instanceof Error ? err.message : String(err);
  const first = message.split('\n').map((l) => l.trim()).find((l) => l !== '');
  const line = (first ?? (err instanceof Error ? err.name : '')).replace(/\s+/g, ' ') || 'unknown error';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Every non-empty line of `text`, trimmed and joined with `separator`: a tool's multi-line complaint in one line. */
export function joinLines(text: string, separator = '; '): string {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).join(separator);
}
