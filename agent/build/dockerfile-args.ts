// The build args a repository's Dockerfile declares (`ARG NAME`, `ARG NAME=default`, several per
// line, in any stage). A Dockerfile build gets exactly these env values as build args and no
// others, so the rest of the app's env never reaches the builder (nor its warnings, nor history).
// berth builds with the classic builder, which has no heredocs: every line is an instruction.

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The escape character: `\`, or what a leading `# escape=` parser directive sets. */
function escapeChar(lines: string[]): string {
  let escape = '\\';
  for (const line of lines) {
    const m = /^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (!m) break; // directives only come first; anything else ends them
    if (m[1]!.toLowerCase() === 'escape' && (m[2] === '`' || m[2] === '\\')) escape = m[2];
  }
  return escape;
}

/** Logical instructions: continuation lines joined; comments and blank lines (also inside a continuation) left out. */
export function dockerfileInstructions(text: string): string[] {
  const lines = text.split(/\r?\n/);
  const escape = escapeChar(lines);
  const out: string[] = [];
  let pending: string | null = null;
  for (const raw of lines) {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const line = raw.trimEnd();
    if (line.endsWith(escape)) {
      pending = (pending ?? '') + line.slice(0, -1);
      continue;
    }
    out.push(((pending ?? '') + line).trim());
    pending = null;
  }
  if (pending !== null && pending.trim() !== '') out.push(pending.trim());
  return out;
}

/** Shell-like words: whitespace separates, quotes group, the escape character takes the next character literally. */
function words(s: string, escape: string): string[] {
  const out: string[] = [];
  let word = '';
  let quote: string | null = null;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === escape && quote !== "'" && i + 1 < s.length) {
      word += s[++i];
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = null;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) out.push(word);
  return out;
}

/** Every name any ARG instruction of the Dockerfile declares. */
export function declaredArgs(text: string): Set<string> {
  const escape = escapeChar(text.split(/\r?\n/));
  const names = new Set<string>();
  for (const ins of dockerfileInstructions(text)) {
    const m = /^ARG\s+(.*)$/is.exec(ins);
    if (!m) continue;
    for (const w of words(m[1]!, escape)) {
      const name = w.split('=', 1)[0]!;
      if (NAME_RE.test(name)) names.add(name);
    }
  }
  return names;
}

/** The env values a Dockerfile build receives as build args: only those its ARGs declare. */
export function buildArgsFor(dockerfile: string, env: Record<string, string>): Record<string, string> {
  const declared = declaredArgs(dockerfile);
  return Object.fromEntries(Object.entries(env).filter(([k]) => declared.has(k)));
}
