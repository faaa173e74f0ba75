// A commit's subject line (issue 16): text from a repository, so hostile. The agent reads it after
// fetching and cleans it; the control plane validates (and cleans) it again where it arrives.
import { z } from 'zod';

/** Characters kept of a subject (the rest is cut, with "…"). */
export const MAX_COMMIT_SUBJECT = 200;

/**
 * One line of plain text: control characters (C0, DEL, C1), bidi overrides and line/paragraph
 * separators become spaces, runs of whitespace one space, at most MAX_COMMIT_SUBJECT characters.
 */
export function cleanCommitSubject(raw: string): string {
  // eslint-disable-next-line no-control-regex
  const flat = raw.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]/g, ' ').replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length <= MAX_COMMIT_SUBJECT ? flat : `${chars.slice(0, MAX_COMMIT_SUBJECT - 1).join('').trimEnd()}…`;
}

/** On the wire: bounded, and cleaned again whatever the sender did. */
export const commitSubject = z.string().max(4096).transform(cleanCommitSubject);
