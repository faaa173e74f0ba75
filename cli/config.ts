// Where the client finds its control plane: BERTH_URL/BERTH_TOKEN, else the file `berth login` wrote.
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { writeSecretFile } from '../shared/util/index.js';
import { CliError } from './errors.js';

const clientConfig = z.object({ url: z.string().url(), token: z.string().min(1) });
export type ClientConfig = z.infer<typeof clientConfig>;

/** A control plane URL given on the command line: http(s) only, without trailing slashes. */
export function controlPlaneUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`invalid URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError('the control plane URL must start with http:// or https://');
  return raw.replace(/\/+$/, '');
}

export function configPath(): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'berth', 'config.json');
}

export function loadClientConfig(): ClientConfig {
  const url = process.env.BERTH_URL;
  const token = process.env.BERTH_TOKEN;
  if (url && token) return { url: url.replace(/\/+$/, ''), token };
  let raw: string;
  try {
    raw = readFileSync(configPath(), 'utf8');
  } catch {
    throw new CliError('not logged in: run `berth login URL TOKEN` or set BERTH_URL and BERTH_TOKEN');
  }
  const parsed = clientConfig.safeParse(JSON.parse(raw));
  if (!parsed.success) throw new CliError(`${configPath()} is not a valid berth config: run \`berth login URL TOKEN\` again`);
  return { url: (url ?? parsed.data.url).replace(/\/+$/, ''), token: token ?? parsed.data.token };
}

export function saveClientConfig(config: ClientConfig): string {
  const file = configPath();
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeSecretFile(file, JSON.stringify(config, null, 2) + '\n');
  return file;
}
