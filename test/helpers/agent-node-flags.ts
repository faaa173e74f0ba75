// The Node flags the agent is started with in production, read from where they are set: the systemd
// unit's ExecStart and install.sh's background start (no systemd). bench/agent-memory.ts runs its agent
// with the unit's flags; test/unit/agent-node-flags.test.ts checks the two places agree.
import { readFileSync } from 'node:fs';

const repoFile = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');

/** `--flags` between the node binary and main.js in berth-agent.service's ExecStart. */
export function unitAgentNodeFlags(unit = repoFile('systemd/berth-agent.service')): string[] {
  const words = (/^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '').trim().split(/\s+/);
  const main = words.findIndex((w) => w.endsWith('/main.js'));
  if (main < 0) throw new Error('berth-agent.service has no ExecStart running …/main.js');
  return words.slice(1, main);
}

/** The flags install.sh's start_background gives the agent (`node_flags="…"` for name = agent). */
export function installerAgentNodeFlags(script = repoFile('install.sh')): string[] {
  const m = /\[ "\$name" != agent \] \|\| node_flags="([^"]*)"/.exec(script);
  if (!m) throw new Error('install.sh sets no node_flags for the agent');
  return m[1]!.trim().split(/\s+/).filter(Boolean);
}
