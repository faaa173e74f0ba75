// Env values are secrets: every text that leaves berth's hands (a deploy log line, a cron run's output,
// a notification) has the app's known values replaced first. Used by the agent and the control plane.

export const MASK = '***';
/** Values shorter than this are not masked: "1", "on" or "dev" would blot out every log line. */
export const MIN_MASKED_LENGTH = 4;

export type Masker = (text: string) => string;

export function makeMasker(env: Record<string, string>): Masker {
  const values = new Set<string>();
  for (const v of Object.values(env)) {
    // A multi-line value (a PEM key) reaches the log one line at a time: mask each line too.
    for (const part of [v, ...v.split(/\r?\n/)]) {
      const t = part.trim();
      if (t.length >= MIN_MASKED_LENGTH) values.add(t);
    }
  }
  // Longest first, so a value containing another is masked whole.
  const sorted = [...values].sort((a, b) => b.length - a.length);
  if (sorted.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const v of sorted) if (out.includes(v)) out = out.split(v).join(MASK);
    return out;
  };
}
