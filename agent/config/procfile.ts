// Procfile: `name: command` per line (Heroku's format). A `release:` line is the release command.
import { processName } from './fields.js';
import { AppConfigError, type ProcessConfig } from './types.js';

export interface Procfile {
  processes: Record<string, ProcessConfig>;
  release: string | null;
}

export function parseProcfile(text: string, file = 'Procfile'): Procfile {
  const processes: Record<string, ProcessConfig> = {};
  let release: string | null = null;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^([^:\s]+)\s*:\s*(.*)$/.exec(line);
    if (!m) throw new AppConfigError(`${file}: line ${i + 1}: expected "name: command", got ${JSON.stringify(line.slice(0, 60))}`);
    const [, name, cmd] = m as unknown as [string, string, string];
    if (cmd.trim() === '') throw new AppConfigError(`${file}: line ${i + 1}: process "${name}" has no command`);
    if (cmd.includes('\0')) throw new AppConfigError(`${file}: line ${i + 1}: command must not contain a NUL byte`);
    if (name === 'release') {
      if (release !== null) throw new AppConfigError(`${file}: line ${i + 1}: a second "release" line`);
      release = cmd.trim();
      return;
    }
    const valid = processName.safeParse(name);
    if (!valid.success) throw new AppConfigError(`${file}: line ${i + 1}: process "${name}": ${valid.error.issues[0]?.message ?? 'invalid name'}`);
    if (processes[name]) throw new AppConfigError(`${file}: line ${i + 1}: process "${name}" is defined twice`);
    processes[name] = { command: cmd.trim(), scale: 1 };
  });
  return { processes, release };
}
