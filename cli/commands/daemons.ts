// Server-side commands: run the control plane, enrol and run the agent, log the client in.
// Daemon modules are imported lazily so client commands start fast and need no native modules.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { ServerInfo } from '../../shared/api.js';
import { ApiClient } from '../client.js';
import { controlPlaneUrl, saveClientConfig } from '../config.js';
import { output } from '../output.js';
import { registerControlPlaneSubcommands } from './control-plane.js';
import { readToken } from '../token-input.js';

interface TokenOptions {
  tokenFile?: string;
  tokenStdin?: boolean;
}

const DEFAULT_CP_DATA = '/var/lib/berth/control-plane';

interface ControlPlaneFlags {
  data: string;
  listen: string;
  publicUrl?: string;
  releaseDir?: string;
  tlsCert?: string;
  tlsKey?: string;
  domain?: string;
  acmeWebroot?: string;
  acmeHttpPort?: string;
  insecureHttp?: boolean;
}

/**
 * TLS and --insecure-http from flags, else the environment. BERTH_ACME_WEBROOT and
 * BERTH_ACME_HTTP_PORT count only with a domain: the agent's env on the same machine sets the former.
 */
async function transportFrom(opts: ControlPlaneFlags, env: NodeJS.ProcessEnv = process.env) {
  const { tlsOptionsFrom } = await import('../../control-plane/tls/transport.js');
  const { acmeConfigFromEnv } = await import('../../shared/acme.js');
  const domain = opts.domain;
  const acmeWebroot = opts.acmeWebroot ?? (domain && !opts.acmeHttpPort ? env.BERTH_ACME_WEBROOT || undefined : undefined);
  const tls = tlsOptionsFrom({
    tlsCert: opts.tlsCert,
    tlsKey: opts.tlsKey,
    domain,
    acmeWebroot,
    acmeHttpPort: opts.acmeHttpPort ?? (domain && !acmeWebroot ? env.BERTH_ACME_HTTP_PORT || undefined : undefined),
    acme: acmeConfigFromEnv(env),
  });
  const insecureHttp = opts.insecureHttp ?? /^(1|true|yes)$/i.test(env.BERTH_INSECURE_HTTP ?? '');
  return { ...(tls ? { tls } : {}), insecureHttp };
}

/** Resolve on SIGINT/SIGTERM, then run `close` once. */
function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let closing = false;
    const stop = () => {
      if (closing) return;
      closing = true;
      close().finally(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export function registerDaemonCommands(program: Command): void {
  program
    .command('control-plane')
    .description('run the control plane (HTTP(S) API + agent WebSocket hub) in the foreground')
    .option('--data <dir>', 'data directory (database, admin token)', process.env.BERTH_CP_DATA ?? DEFAULT_CP_DATA)
    .option('--listen <host:port>', 'address to listen on', process.env.BERTH_LISTEN ?? '0.0.0.0:8080')
    .option('--public-url <url>', 'URL agents and clients use to reach this control plane (default: from --listen)', process.env.BERTH_PUBLIC_URL)
    .option('--release-dir <dir>', 'release tarballs served to install.sh (default: $BERTH_RELEASE_DIR, else release/ next to this install)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (re-read on SIGHUP and when it changes) [$BERTH_TLS_CERT]', process.env.BERTH_TLS_CERT || undefined)
    .option('--tls-key <file>', "the certificate's PEM private key [$BERTH_TLS_KEY]", process.env.BERTH_TLS_KEY || undefined)
    .option('--domain <name>', "serve HTTPS with this host name's own Let's Encrypt certificate (ACME HTTP-01, settings from $BERTH_ACME_*) [$BERTH_DOMAIN]", process.env.BERTH_DOMAIN || undefined)
    .option('--acme-webroot <dir>', 'with --domain: write challenge files here for a web server on port 80 to serve at /.well-known/acme-challenge/ [$BERTH_ACME_WEBROOT]')
    .option('--acme-http-port <port>', 'with --domain: answer challenges on this port ourselves and redirect the rest to https (default 80) [$BERTH_ACME_HTTP_PORT]')
    .option('--insecure-http', 'allow plain HTTP on a non-loopback address (tokens and secrets cross the network in clear) [$BERTH_INSECURE_HTTP=1]')
    .action(async (opts: ControlPlaneFlags) => {
      const firstStart = !existsSync(join(opts.data, 'admin-token'));
      const { startControlPlane } = await import('../../control-plane/main.js');
      const cp = await startControlPlane({ dataDir: opts.data, listen: opts.listen, publicUrl: opts.publicUrl, releaseDir: opts.releaseDir, ...(await transportFrom(opts)) });
      // The human banner (it shows the admin token) is for a foreground run in a terminal. As a service
      // (BERTH_LOG_FORMAT=json: the systemd unit, install.sh's background start) its output is a log —
      // journald or /var/log/berth — where the token must not end up and every line is a JSON object;
      // the JSON log already says where the token file is and where the control plane listens.
      if (process.env.BERTH_LOG_FORMAT !== 'json') {
        if (firstStart) {
          process.stderr.write(
            `berth control plane initialised.\nadmin token (also in ${join(opts.data, 'admin-token')}, mode 0600):\n  ${cp.adminToken}\nlog in with:\n  berth login ${cp.url} ${cp.adminToken}\n`,
          );
        }
        process.stderr.write(`berth control plane listening on ${cp.url}\n`);
      }
      await untilSignal(() => cp.close());
    });

  const agent = program
    .command('agent')
    .description('run the agent in the foreground (or `berth agent join` to enrol this server first)')
    .option('--data <dir>', 'data directory (default: $BERTH_DATA or /var/lib/berth)')
    // `berth agent join … --data D` must give --data to join, not to the parent `agent`.
    .enablePositionalOptions()
    .action(async (opts: { data?: string }) => {
      const { runAgent } = await import('../../agent/main.js');
      const running = await runAgent({ dataDir: opts.data });
      await untilSignal(() => running.close());
    });

  agent
    .command('join')
    .description('enrol this server with a control plane using a one-time join token')
    .argument('<url>', 'control plane URL, e.g. https://berth.example.com')
    .argument('[token]', 'join token from `berth server add` (shows in `ps`: prefer $BERTH_JOIN_TOKEN, --token-file or stdin; `-` reads stdin)')
    .option('--token-file <file>', 'read the join token from FILE (must not be readable by group or others)')
    .option('--token-stdin', 'read the join token from stdin')
    .option('--name <name>', 'server name (must match the name the token was created for)')
    .option('--data <dir>', 'data directory (default: $BERTH_DATA or /var/lib/berth)')
    .option('--json', 'print JSON')
    .action(async (url: string, positional: string | undefined, opts: TokenOptions & { name?: string; data?: string; json?: boolean }) => {
      const token = readToken({ positional, tokenFile: opts.tokenFile, tokenStdin: opts.tokenStdin, envName: 'BERTH_JOIN_TOKEN', what: 'join token' });
      const { joinControlPlane } = await import('../../agent/join.js');
      const { loadSettings } = await import('../../agent/settings.js');
      const dataDir = opts.data ?? loadSettings().dataDir;
      const joined = await joinControlPlane({ url, token, name: opts.name, dataDir });
      output(!!opts.json, { server: joined.server, controlPlaneUrl: joined.controlPlaneUrl, dataDir }, (j) =>
        process.stdout.write(`joined ${j.controlPlaneUrl} as server ${j.server}; credentials stored in ${j.dataDir}.\nstart the agent with: berth agent${opts.data ? ` --data ${opts.data}` : ''}\n`),
      );
    });

  program
    .command('login')
    .description('store the control plane URL and API token for client commands')
    .argument('<url>', 'control plane URL')
    .argument('[token]', 'admin API token (shows in `ps`: prefer $BERTH_TOKEN, --token-file or stdin; `-` reads stdin)')
    .option('--token-file <file>', 'read the admin token from FILE (must not be readable by group or others)')
    .option('--token-stdin', 'read the admin token from stdin')
    .option('--json', 'print JSON')
    .action(async (url: string, positional: string | undefined, opts: TokenOptions & { json?: boolean }) => {
      const token = readToken({ positional, tokenFile: opts.tokenFile, tokenStdin: opts.tokenStdin, envName: 'BERTH_TOKEN', what: 'admin token' });
      const config = { url: controlPlaneUrl(url), token };
      const servers = await new ApiClient(config).get<ServerInfo[]>('/api/servers'); // proves URL and token work
      const file = saveClientConfig(config);
      output(!!opts.json, { url: config.url, configFile: file, servers: servers.length }, (r) =>
        process.stdout.write(`logged in to ${r.url} (${r.servers} server(s)); saved to ${r.configFile}.\n`),
      );
    });

  registerControlPlaneSubcommands(program);
}
