// `berth upgrade` on a server: move this server to another berth release served by a control plane
// (by default the one it is enrolled with). There is one implementation of installing, switching and
// rolling back a release — install.sh — and this command runs the control plane's copy of it with
// --upgrade: download + SHA-256 check, unpack into /opt/berth/releases/NEW, atomic switch of
// /opt/berth/current, restart of the agent (and of an all-in-one control plane), then wait until the
// new agent runs and is connected; if it does not within BERTH_UPGRADE_TIMEOUT_S (60 s), `current` is
// switched back, the previous release restarted, and this command fails. Apps keep serving throughout:
// their containers belong to dockerd and nginx is never stopped.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { BERTH_VERSION } from '../../shared/version.js';
import { CliError } from '../errors.js';
import { output } from '../output.js';

interface UpgradeOptions {
  url?: string;
  version?: string;
  timeout?: string;
  json?: boolean;
}

/** The control plane this server is enrolled with (agent.json in the agent's data dir). */
function enrolledUrl(dataDir: string): string {
  let raw: string;
  try {
    raw = readFileSync(join(dataDir, 'agent.json'), 'utf8');
  } catch {
    throw new CliError(`this server is not enrolled (no ${join(dataDir, 'agent.json')}): install berth with the command \`berth server add NAME\` prints, or pass --url`);
  }
  const url = (JSON.parse(raw) as { controlPlaneUrl?: unknown }).controlPlaneUrl;
  if (typeof url !== 'string' || !url) throw new CliError(`${join(dataDir, 'agent.json')} names no control plane: pass --url`);
  return url;
}

async function downloadInstaller(url: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${url}/install.sh`, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach the control plane at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const body = await res.text();
  if (res.status !== 200) throw new CliError(`the control plane at ${url} did not serve its installer (HTTP ${res.status} for /install.sh)`);
  if (!body.startsWith('#!/bin/sh')) throw new CliError(`${url}/install.sh is not berth's installer: is ${url} a berth control plane?`);
  return body;
}

/** Run the installer with an argument array; its stderr is shown live and kept to name the failure. */
function runInstaller(script: string, args: string[], env: NodeJS.ProcessEnv, json: boolean): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    // stdout stays ours with --json (exactly one document): the installer's progress goes to stderr then.
    const child = spawn('sh', [script, ...args], { env, stdio: ['ignore', json ? 'pipe' : 'inherit', 'pipe'] });
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      stderr = (stderr + d.toString('utf8')).slice(-64 * 1024);
    });
    child.on('error', (err) => reject(new CliError(`cannot run the installer with sh: ${err.message}`)));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stderr }));
  });
}

/** The installer's own one-line reason (`berth: step "agent" failed: …`), the last one it printed. */
export function installerFailure(stderr: string): string | null {
  const lines = [...stderr.matchAll(/^berth: step "([^"]+)" failed: (.*)$/gm)];
  const last = lines[lines.length - 1];
  return last ? `step "${last[1]}" failed: ${last[2]}` : null;
}

export function registerUpgradeCommand(program: Command): void {
  program
    .command('upgrade')
    .description('on a server (as root): switch berth to a newer release from the control plane; rolled back automatically when it does not start and connect')
    .option('--url <url>', 'control plane to take the release and installer from (default: the one this server is enrolled with)')
    .option('--version <version>', "a specific release (default: the control plane's own version, else the newest it has; never older than the installed one)")
    .option('--timeout <seconds>', 'how long the new release has to start and connect before it is rolled back (default: 60)')
    .option('--json', 'print JSON')
    .action(async (opts: UpgradeOptions) => {
      if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new CliError('berth upgrade must run as root: sudo berth upgrade');
      if (opts.version !== undefined && !/^[0-9A-Za-z.+_-]{1,64}$/.test(opts.version)) throw new CliError(`invalid --version "${opts.version}"`);
      if (opts.timeout !== undefined && !/^[1-9][0-9]{0,4}$/.test(opts.timeout)) throw new CliError('--timeout takes a number of seconds');
      const dataDir = process.env.BERTH_DATA ?? '/var/lib/berth';
      const prefix = process.env.BERTH_PREFIX ?? '/opt/berth';
      const url = (opts.url ?? enrolledUrl(dataDir)).replace(/\/+$/, '');
      if (!/^https?:\/\/[^\s]+$/.test(url)) throw new CliError(`invalid control plane URL: ${url} (http:// or https://)`);

      const script = await downloadInstaller(url);
      const dir = mkdtempSync(join(tmpdir(), 'berth-upgrade-'));
      try {
        const file = join(dir, 'install.sh');
        writeFileSync(file, script, { mode: 0o700 });
        const args = ['--upgrade', '--url', url, ...(opts.version ? ['--version', opts.version] : [])];
        const env = { ...process.env, ...(opts.timeout ? { BERTH_UPGRADE_TIMEOUT_S: opts.timeout } : {}) };
        const { code, stderr } = await runInstaller(file, args, env, !!opts.json);
        if (code !== 0) {
          throw new CliError(`upgrade failed: ${installerFailure(stderr) ?? `the installer exited with code ${code}`}`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      let version: string | null = null;
      try {
        version = basename(readlinkSync(join(prefix, 'current')));
      } catch {
        // not the installer's layout: nothing to report
      }
      output(!!opts.json, { previousVersion: BERTH_VERSION, version, controlPlaneUrl: url, changed: version !== BERTH_VERSION }, () => undefined);
    });
}
