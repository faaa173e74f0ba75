// Enrolment: trade a one-time join token for this server's credential and keep it in DATA/agent.json.
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { JoinResult } from '../shared/api.js';
import { ensureDir, writeSecretFile } from '../shared/util/index.js';
import { serverName } from '../shared/validation.js';

export class JoinError extends Error {
  override name = 'JoinError';
}

export interface AgentCredentials {
  controlPlaneUrl: string;
  server: string;
  credential: string;
}

const credentialsFile = z.object({
  controlPlaneUrl: z.url(),
  server: serverName,
  credential: z.string().min(1),
});

export const CREDENTIALS_FILE = 'agent.json';
const JOIN_TIMEOUT_MS = 15_000;

/** Normalise and check a control plane URL given on the command line. */
function controlPlaneBase(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new JoinError(`invalid control plane URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new JoinError('the control plane URL must start with http:// or https://');
  return url.toString().replace(/\/+$/, '');
}

/** The one-line cause of a failed fetch (Node wraps the socket error in `cause`). */
function networkCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

export async function joinControlPlane(opts: { url: string; token: string; name?: string; dataDir: string }): Promise<AgentCredentials & { dataDir: string }> {
  const base = controlPlaneBase(opts.url);
  let res: Response;
  try {
    res = await fetch(`${base}/api/agent/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: opts.token, name: opts.name, hostname: hostname() }),
      signal: AbortSignal.timeout(JOIN_TIMEOUT_MS),
    });
  } catch (err) {
    if ((err as Error)?.name === 'TimeoutError') throw new JoinError(`the control plane at ${base} did not answer within ${JOIN_TIMEOUT_MS / 1000} s`);
    throw new JoinError(`cannot reach the control plane at ${base}: ${networkCause(err)}`);
  }
  const text = await res.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const serverError = typeof (body as { error?: unknown })?.error === 'string' ? (body as { error: string }).error : text.trim().split('\n')[0] || res.statusText;
    if (res.status === 401 || res.status === 403) throw new JoinError(`the control plane refused the join token: ${serverError}`);
    throw new JoinError(`joining failed (HTTP ${res.status}): ${serverError}`);
  }
  const result = body as Partial<JoinResult> | undefined;
  if (!result || typeof result.credential !== 'string' || typeof result.server !== 'string') {
    throw new JoinError(`the control plane at ${base} gave an unexpected answer (is this a berth control plane?)`);
  }
  // The URL the operator just reached is kept: it is proven to work from this machine, whereas the
  // control plane's idea of its own URL may be derived from a wildcard listen address.
  const creds: AgentCredentials = { controlPlaneUrl: base, server: result.server, credential: result.credential };
  saveCredentials(opts.dataDir, creds);
  return { ...creds, dataDir: opts.dataDir };
}

/** Write agent.json (0600, in a 0700 dir) atomically: a crash never leaves a half-written credential. */
export function saveCredentials(dataDir: string, creds: AgentCredentials): void {
  ensureDir(dataDir, 0o700);
  writeSecretFile(join(dataDir, CREDENTIALS_FILE), JSON.stringify(creds, null, 2) + '\n');
}

export function loadCredentials(dataDir: string): AgentCredentials {
  const file = join(dataDir, CREDENTIALS_FILE);
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new JoinError('this server has not joined a control plane yet: run `berth agent join URL TOKEN`');
    }
    throw new JoinError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    throw new JoinError(`${file} is not valid JSON: run \`berth agent join URL TOKEN\` again`);
  }
  const parsed = credentialsFile.safeParse(data);
  if (!parsed.success) throw new JoinError(`${file} is incomplete (${parsed.error.issues[0]?.path.join('.') ?? 'invalid'}): run \`berth agent join URL TOKEN\` again`);
  return parsed.data;
}
