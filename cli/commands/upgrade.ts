// `berth upgrade` on a server: move this server to another berth release served by a control plane
// (by default the one it is enrolled with). There is one implementation of installing, switching and
// rolling back a release — install.sh — and this command runs the control plane's copy of it with
// --upgrade: download + SHA-256 check, unpack into /opt/berth/releases/NEW, atomic switch of
// /opt/berth/current, restart of the agent (and of an all-in-one control plane), then wait until the
// new agent runs and is connected; if it does not within BERTH_UPGRADE_TIMEOUT_S (60 s), `current` is
// switched back, the previous release restarted, and this command fails. Apps keep serving throughout:
// their containers belong to dockerd and nginx is never stopped.
//
// The installer runs as root, so it is run only when the control plane signed it (X-Berth-Signature)
// with a key this server pinned at install time (/etc/berth/release.pub); the installer then accepts
// only releases signed with those keys. A control plane whose key changed is refused.
import { spawn } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { INSTALLER_SIGNATURE_HEADER, parsePublicKeys, verifiedByAny } from '../../shared/release-signature.js';
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

/** The release keys this server trusts ($BERTH_ETC/release.pub, written by install.sh); none on an install older than signing. */
function pinnedKeys(etc: string): { file: string; keys: KeyObject[] } {
  const file = join(etc, 'release.pub');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { file, keys: [] };
  }
  const keys = parsePublicKeys(text);
  if (keys.length === 0) throw new CliError(`${file} holds no Ed25519 public key: restore it (its control plane serves it at /install/release.pub), then re-run`);
  return { file, keys };
}

/** Refuse an installer not signed by a pinned key; an install from before signing trusts the key on first use. */
function checkInstaller(url: string, installer: { body: Buffer; signature: string | null }, pinned: { file: string; keys: KeyObject[] }): void {
  if (pinned.keys.length === 0) {
    process.stderr.write(`berth: warning: no release key pinned in ${pinned.file} (installed before releases were signed): trusting ${url}'s key from now on\n`);
    return;
  }
  if (!installer.signature) throw new CliError(`the control plane at ${url} did not sign its installer (a berth control plane older than this one?): refusing to run it`);
  if (!verifiedByAny(pinned.keys, installer.body, installer.signature)) {
    throw new CliError(
      `the installer from ${url} is not signed by the release key this server pinned at install (${pinned.file}): refusing to run it. ` +
        `Either something altered it on the way, or that control plane's release key changed; if you moved to a new control plane on purpose, ` +
        `compare its key (${url}/install/release.pub) out of band and add it to ${pinned.file}`,
    );
  }
}

async function downloadInstaller(url: string): Promise<{ body: Buffer; signature: string | null }> {
  let res: Response;
  try {
    res = await fetch(`${url}/install.sh`, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach the control plane at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  // The exact bytes: they are what is signed and what runs.
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new CliError(`the control plane at ${url} did not serve its installer (HTTP ${res.status} for /install.sh)`);
  if (!body.subarray(0, 9).equals(Buffer.from('#!/bin/sh'))) throw new CliError(`${url}/install.sh is not berth's installer: is ${url} a berth control plane?`);
  return { body, signature: res.headers.get(INSTALLER_SIGNATURE_HEADER) };
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
    .description(
      'on a server (as root): switch berth to a newer release from the control plane; rolled back automatically when it does not start and connect. ' +
        'The installer and the release must be signed with a key this server pinned at install (/etc/berth/release.pub)',
    )
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

      const pinned = pinnedKeys(process.env.BERTH_ETC ?? '/etc/berth');
      const installer = await downloadInstaller(url);
      checkInstaller(url, installer, pinned);
      const dir = mkdtempSync(join(tmpdir(), 'berth-upgrade-'));
      try {
        const file = join(dir, 'install.sh');
        writeFileSync(file, installer.body, { mode: 0o700 });
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
