// A real ACME server for tests: pebble-challtestsrv (DNS that answers 127.0.0.1 for every name) and
// Pebble (the ACME CA), on free loopback ports, with a throwaway CA + `localhost` certificate made
// with openssl for Pebble's own HTTPS listener. Pebble validates HTTP-01 for real by fetching
// http://DOMAIN:httpPort/.well-known/acme-challenge/TOKEN, so `httpPort` must be the port of the
// nginx under test. See docs in TESTBED.md ("ACME without the internet").
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, makeTmpDir } from './tmp.js';

export interface PebbleOptions {
  /** The port Pebble validates HTTP-01 challenges on (the test nginx's HTTP port). */
  httpPort: number;
  /** Validity of issued certificates in seconds (Pebble's default is 5 years). */
  certValiditySeconds?: number;
  /** Extra environment for pebble (e.g. PEBBLE_AUTHZREUSE). */
  env?: Record<string, string>;
  /**
   * The address Pebble's ACME listener binds (default 127.0.0.1): e.g. a test network's gateway, for
   * agents inside nodes of the cluster test bed. Its IP goes into the listener certificate's SAN.
   */
  listenHost?: string;
  /** The address challtestsrv's DNS answers for every name (default 127.0.0.1): where HTTP-01 is validated. */
  defaultIPv4?: string;
}

export interface Pebble {
  /** ACME directory URL (https://127.0.0.1:PORT/dir). */
  directoryUrl: string;
  /** The throwaway CA that signed Pebble's HTTPS listener certificate: what BERTH_ACME_CA points at. */
  caFile: string;
  /** Pebble's issuing root (PEM, fetched from the management API): verify issued certificates against it. */
  rootPem: string;
  /** Pebble's issuing intermediate (PEM). */
  intermediatePem: string;
  /** Working directory (logs: pebble.log, challtestsrv.log); removed by stop() unless BERTH_TEST_KEEP_TMP=1. */
  dir: string;
  stop(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A throwaway CA and a cert for localhost/127.0.0.1 (and `extraIps`) signed by it; returns the file paths. */
export function makeTlsFiles(dir: string, extraIps: string[] = []): { caFile: string; certFile: string; keyFile: string } {
  const san = ['DNS:localhost', 'IP:127.0.0.1', ...extraIps.filter((ip) => ip !== '127.0.0.1').map((ip) => `IP:${ip}`)].join(',');
  openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
      '-days', '2', '-subj', '/CN=berth test ACME listener CA'],
    dir,
  );
  openssl(
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'localhost.key', '-out', 'localhost.csr',
      '-subj', '/CN=localhost', '-addext', `subjectAltName=${san}`],
    dir,
  );
  openssl(
    ['x509', '-req', '-in', 'localhost.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-copy_extensions', 'copyall', '-out', 'localhost.pem'],
    dir,
  );
  return { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'localhost.pem'), keyFile: join(dir, 'localhost.key') };
}

function waitForTcp(port: number, proc: ChildProcess, name: string, logFile: string, timeoutMs = 10_000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        return reject(new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}): ${tail(logFile)}`));
      }
      const sock = connect({ host, port });
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) return reject(new Error(`${name} did not listen on ${port} within ${timeoutMs} ms: ${tail(logFile)}`));
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

function fetchPem(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { ca, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

function spawnLogged(bin: string, args: string[], env: Record<string, string>, logFile: string): ChildProcess {
  const out = createWriteStream(logFile, { flags: 'a' });
  const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.pipe(out);
  proc.stderr!.pipe(out);
  return proc;
}

async function stopProc(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  const dir = makeTmpDir('pebble');
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const tlsFiles = makeTlsFiles(dir, [listenHost]);
  const [dnsPort, challMgmtPort, acmePort, mgmtPort, tlsPort] = await distinctFreePorts(5, [opts.httpPort]);

  let chall: ChildProcess | undefined;
  let pebble: ChildProcess | undefined;
  const stop = async () => {
    await stopProc(pebble);
    await stopProc(chall);
    if (process.env.BERTH_TEST_KEEP_TMP !== '1') rmSync(dir, { recursive: true, force: true });
  };
  try {
    const challLog = join(dir, 'challtestsrv.log');
    chall = spawnLogged(
      'pebble-challtestsrv',
      ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmtPort}`,
        '-defaultIPv4', opts.defaultIPv4 ?? '127.0.0.1', '-defaultIPv6', ''],
      {},
      challLog,
    );
    await waitForTcp(challMgmtPort!, chall, 'pebble-challtestsrv', challLog);
    await waitForTcp(dnsPort!, chall, 'pebble-challtestsrv (dns)', challLog);

    const config = {
      pebble: {
        listenAddress: `${listenHost}:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: tlsFiles.certFile,
        privateKey: tlsFiles.keyFile,
        httpPort: opts.httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(opts.certValiditySeconds !== undefined ? { certificateValidityPeriod: opts.certValiditySeconds } : {}),
      },
    };
    const configFile = join(dir, 'pebble-config.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    const pebbleLog = join(dir, 'pebble.log');
    pebble = spawnLogged(
      'pebble',
      ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'],
      { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', ...opts.env },
      pebbleLog,
    );
    await waitForTcp(acmePort!, pebble, 'pebble', pebbleLog, 10_000, listenHost);
    await waitForTcp(mgmtPort!, pebble, 'pebble (management)', pebbleLog);

    const ca = readFileSync(tlsFiles.caFile, 'utf8');
    const rootPem = await fetchPem(`https://127.0.0.1:${mgmtPort}/roots/0`, ca);
    const intermediatePem = await fetchPem(`https://127.0.0.1:${mgmtPort}/intermediates/0`, ca);
    return { directoryUrl: `https://${listenHost}:${acmePort}/dir`, caFile: tlsFiles.caFile, rootPem, intermediatePem, dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `n` free ports, distinct from each other and from `exclude`. */
export async function distinctFreePorts(n: number, exclude: number[] = []): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await freePort();
    if (!out.includes(p) && !exclude.includes(p)) out.push(p);
  }
  return out;
}
