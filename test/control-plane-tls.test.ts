// The control plane never serves secrets in clear to the network: HTTPS from certificate files or
// from its own ACME certificate (a real Pebble CA), plain HTTP refused off loopback unless asked for,
// a private data dir and database, and request timeouts that drop a stalled upload but leave SSE
// streams and agent WebSockets alone. Real processes, real sockets, real TLS.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Writable } from 'node:stream';
import pino from 'pino';
import WebSocket from 'ws';
import { startControlPlane, DB_FILE, type RunningControlPlane } from '../control-plane/main.js';
import { AcmeCertificate, renewAt, type CertPair } from '../control-plane/tls/certificates.js';
import { ChallengeServer } from '../control-plane/tls/challenges.js';
import { DEFAULT_SERVER_TIMEOUTS } from '../control-plane/tls/listener.js';
import { isLoopbackHost } from '../control-plane/tls/transport.js';
import { AGENT_WS_PATH } from '../shared/protocol.js';
import { BERTH_BIN, berth } from './helpers/cli.js';
import { eventually } from './helpers/http.js';
import { makeTlsFiles, startPebble, type Pebble } from './helpers/pebble.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const SHORT = { headersTimeoutMs: 800, requestTimeoutMs: 1200, checkIntervalMs: 200 };

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  /** Serial of the server certificate (https only). */
  serial?: string;
}

/** One request over http or https (`ca`: verify against it; `servername`: SNI and name checked). */
function call(url: string, opts: { method?: string; token?: string; body?: string; ca?: string; servername?: string } = {}): Promise<Reply> {
  const u = new URL(url);
  const isHttps = u.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (isHttps ? httpsRequest : httpRequest)(
      u,
      {
        method: opts.method ?? 'GET',
        headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.body ? { 'content-type': 'application/json' } : {}) },
        agent: false,
        timeout: 10_000,
        ...(isHttps ? { ca: opts.ca, ...(opts.servername ? { servername: opts.servername } : {}) } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          const peer = isHttps ? (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.() : undefined;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ...(peer?.serialNumber ? { serial: peer.serialNumber } : {}) });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Send the headers and part of a body, then stall. Resolves when the server closes the connection
 * (with what it answered), rejects if it is still open after `giveUpMs`.
 */
function stalledUpload(port: number, token: string, tls: { ca: string } | null, giveUpMs: number): Promise<{ answer: string; afterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const sock = tls ? tlsConnect({ host: '127.0.0.1', port, ca: tls.ca, servername: 'localhost' }) : netConnect({ host: '127.0.0.1', port });
    let answer = '';
    const give = setTimeout(() => {
      sock.destroy();
      reject(new Error(`a stalled upload was still open after ${giveUpMs} ms`));
    }, giveUpMs);
    sock.once(tls ? 'secureConnect' : 'connect', () => {
      sock.write(`POST /api/servers HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"name":`);
    });
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (answer += d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(give);
      resolve({ answer, afterMs: Date.now() - started });
    });
  });
}

/** A non-loopback IPv4 address of this machine (to be a "remote" peer of our own server), if any. */
function externalIPv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

function startCli(args: string[], env: Record<string, string> = {}): { proc: ChildProcess; output: () => string } {
  let out = '';
  const proc = spawn(process.execPath, [BERTH_BIN, 'control-plane', ...args], { env: { ...process.env, BERTH_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return { proc, output: () => out };
}

async function stopCli(p: { proc: ChildProcess } | undefined): Promise<void> {
  if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  const exited = new Promise((r) => p.proc.once('exit', r));
  p.proc.kill('SIGTERM');
  await exited;
}

describe('control plane: plain HTTP only on loopback unless asked for', { timeout: 60_000 }, () => {
  it('refuses a non-loopback --listen without TLS, exiting non-zero with one line saying why', async () => {
    const port = await freePort();
    const data = join(makeTmpDir('cp-tls'), 'data');
    const r = await berth(['control-plane', '--data', data, '--listen', `0.0.0.0:${port}`], { BERTH_INSECURE_HTTP: undefined, BERTH_PUBLIC_URL: undefined });
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^berth: refusing to serve plain HTTP on 0\\.0\\.0\\.0:${port}: anyone on the network path could read the admin token and env values and get root on new servers through the install line; .*--insecure-http`));
    assert.equal(existsSync(join(data, 'admin-token')), false, 'refused before anything was created');
  });

  it('starts on a non-loopback address with --insecure-http, BERTH_INSECURE_HTTP=1, or an https:// public URL (a TLS proxy in front)', async () => {
    const variants: Array<{ args: string[]; env: Record<string, string> }> = [
      { args: ['--insecure-http'], env: {} },
      { args: [], env: { BERTH_INSECURE_HTTP: '1' } },
      { args: ['--public-url', 'https://cp.example.com'], env: {} },
    ];
    for (const extra of variants) {
      const port = await freePort();
      const cp = startCli(['--data', join(makeTmpDir('cp-tls'), 'data'), '--listen', `0.0.0.0:${port}`, ...extra.args], extra.env);
      try {
        const r = await eventually(() => call(`http://127.0.0.1:${port}/healthz`).catch(() => ({ status: 0 }) as Reply), (x) => x.status === 200, 20_000);
        assert.equal(r.status, 200, `${JSON.stringify(extra)}: ${cp.output()}`);
      } finally {
        await stopCli(cp);
      }
    }
  });

  it('counts 127.0.0.0/8, ::1 and localhost as loopback, nothing else', async () => {
    for (const h of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '172.17.0.1', 'cp.example.com', '::ffff:10.0.0.1', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h);
    const data = join(makeTmpDir('cp-tls'), 'data');
    await assert.rejects(startControlPlane({ dataDir: data, listen: '[::]:0', logger }), /refusing to serve plain HTTP on \[::\]:0/);
    await assert.rejects(startControlPlane({ dataDir: data, listen: '0.0.0.0:0', publicUrl: 'http://cp.example.com', logger }), /refusing to serve plain HTTP/);
  });
});

describe('control plane: data dir and database modes', () => {
  it('makes the data dir 0700 on every start and keeps the database, its WAL/SHM and key files owner-only', async () => {
    const data = join(makeTmpDir('cp-modes'), 'data');
    let cp = await startControlPlane({ dataDir: data, listen: '127.0.0.1:0', logger });
    try {
      assert.equal((await call(`${cp.url}/api/servers`, { method: 'POST', token: cp.adminToken, body: '{"name":"web-1"}' })).status, 201);
      for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, 'admin-token', 'secret.key']) assert.equal(mode(join(data, f)), 0o600, f);
    } finally {
      await cp.close();
    }
    // Loosened by hand (or by a restore) between two starts.
    chmodSync(data, 0o755);
    for (const f of readdirSync(data)) chmodSync(join(data, f), 0o644);
    cp = await startControlPlane({ dataDir: data, listen: '127.0.0.1:0', logger });
    try {
      assert.equal(mode(data), 0o700, 'data dir');
      for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, 'admin-token', 'secret.key']) assert.equal(mode(join(data, f)), 0o600, f);
      assert.equal((await call(`${cp.url}/api/servers`, { token: cp.adminToken })).status, 200);
    } finally {
      await cp.close();
    }
  });
});

describe('control plane: request timeouts', { timeout: 120_000 }, () => {
  let tlsFiles: ReturnType<typeof makeTlsFiles>;
  let ca: string;
  before(() => {
    tlsFiles = makeTlsFiles(makeTmpDir('cp-tls-files'));
    ca = readText(tlsFiles.caFile);
  });

  it('uses timeouts by default under which a stalled upload is dropped within 30 s', async () => {
    const cp = await startControlPlane({ dataDir: join(makeTmpDir('cp-timeouts'), 'data'), listen: '127.0.0.1:0', logger });
    try {
      // Read back from the node server the control plane runs.
      assert.deepEqual(cp.timeouts, DEFAULT_SERVER_TIMEOUTS);
      assert.ok(cp.timeouts.headersTimeoutMs <= cp.timeouts.requestTimeoutMs);
      assert.ok(cp.timeouts.requestTimeoutMs + cp.timeouts.checkIntervalMs <= 30_000, 'worst case: the timeout plus one check');
    } finally {
      await cp.close();
    }
  });

  /** A control plane with SHORT timeouts, over HTTPS (tlsFiles) or plain HTTP. */
  const startShort = (tls: boolean) =>
    startControlPlane({
      dataDir: join(makeTmpDir('cp-timeouts'), 'data'),
      listen: '127.0.0.1:0',
      logger,
      serverTimeouts: SHORT,
      ...(tls ? { tls: { kind: 'files' as const, certFile: tlsFiles.certFile, keyFile: tlsFiles.keyFile } } : {}),
    });

  const modes = [
    { name: 'plain HTTP', tls: false, plainOnTlsPort: false },
    { name: 'HTTPS', tls: true, plainOnTlsPort: false },
    { name: 'plain HTTP from loopback on the HTTPS port', tls: true, plainOnTlsPort: true },
  ];
  for (const m of modes) {
    it(`drops a stalled upload (${m.name}) once the request timeout has passed`, async () => {
      const cp = await startShort(m.tls);
      try {
        assert.deepEqual(cp.timeouts, SHORT);
        const port = Number(new URL(cp.url).port);
        const r = await stalledUpload(port, cp.adminToken, m.tls && !m.plainOnTlsPort ? { ca } : null, 15_000);
        assert.ok(r.afterMs >= SHORT.requestTimeoutMs - 100, `closed after ${r.afterMs} ms: not by the request timeout`);
        assert.match(r.answer, /^(HTTP\/1\.1 408 |$)/, r.answer);
        assert.equal((await call(`${cp.url}/api/servers`, { token: cp.adminToken, ca, servername: 'localhost' })).body, '[]', 'the upload created nothing');
      } finally {
        await cp.close();
      }
    });
  }

  for (const m of modes.slice(0, 2)) {
    it(`keeps a Server-Sent Events stream and an agent WebSocket open long past the request timeout (${m.name})`, async () => {
      const cp = await startShort(m.tls);
      const api = (method: string, path: string, body?: unknown, token: string | null = cp.adminToken) =>
        call(cp.url + path, { method, ...(token ? { token } : {}), ...(body ? { body: JSON.stringify(body) } : {}), ca }).then((r) => ({ status: r.status, body: JSON.parse(r.body) }));
      let ws: WebSocket | undefined;
      let sse: IncomingMessage | undefined;
      try {
        const created = await api('POST', '/api/servers', { name: 'gamma' });
        const credential = (await api('POST', '/api/agent/join', { token: created.body.joinToken }, null)).body.credential as string;
        assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/shop.git', server: 'gamma' })).status, 201);
        const deployment = (await api('POST', '/api/apps/shop/deploy', {})).body;

        ws = new WebSocket(cp.url.replace(/^http/, 'ws') + AGENT_WS_PATH, { headers: { authorization: `Bearer ${credential}` }, ca });
        const inbox: Array<Record<string, any>> = [];
        ws.on('message', (d) => inbox.push(JSON.parse(String(d))));
        await new Promise((resolve, reject) => ws!.once('open', resolve).once('error', reject));
        ws.send(JSON.stringify({ type: 'hello', v: 1, agentVersion: '0.1.0-test', hostname: 'gamma.local' }));
        await eventually(async () => inbox.map((x) => x.type), (types) => types.includes('deploy'), 5000, 50);

        let events = '';
        sse = await new Promise<IncomingMessage>((resolve, reject) => {
          const u = new URL(`${cp.url}/api/deployments/${deployment.id}/events`);
          const req = (m.tls ? httpsRequest : httpRequest)(u, { headers: { authorization: `Bearer ${cp.adminToken}` }, agent: false, ...(m.tls ? { ca } : {}) }, resolve);
          req.on('error', reject);
          req.end();
        });
        assert.equal(sse.statusCode, 200);
        sse.setEncoding('utf8');
        sse.on('data', (d: string) => (events += d));
        let sseClosed = false;
        sse.on('close', () => (sseClosed = true));

        // Three request timeouts (and many checks) later both are still served.
        await new Promise((r) => setTimeout(r, 3 * SHORT.requestTimeoutMs));
        assert.equal(ws.readyState, WebSocket.OPEN, 'the agent WebSocket is still open');
        assert.equal(sseClosed, false, 'the event stream is still open');
        ws.send(JSON.stringify({ type: 'deploy_progress', v: 1, deploymentId: deployment.id, status: 'fetching', ts: new Date().toISOString() }));
        await eventually(async () => events, (e) => /"status":"fetching"/.test(e), 5000, 50);
        ws.send(JSON.stringify({ type: 'heartbeat', v: 1, ts: new Date().toISOString() }));
        await eventually(async () => inbox.filter((x) => x.type === 'heartbeat').length, (n) => n > 0, 5000, 50);
      } finally {
        ws?.terminate();
        sse?.destroy();
        await cp.close();
      }
    });
  }
});

describe('control plane: --tls-cert/--tls-key', { timeout: 60_000 }, () => {
  let cp: { proc: ChildProcess; output: () => string } | undefined;
  after(() => stopCli(cp));

  it('serves the API over HTTPS with that certificate, plain HTTP only to loopback (others are redirected), and picks up a replaced certificate', async () => {
    const dir = makeTmpDir('cp-tls-files');
    const first = makeTlsFiles(dir);
    const certFile = join(dir, 'served.pem');
    const keyFile = join(dir, 'served.key');
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);
    const data = join(dir, 'data');
    const port = await freePort();
    // 0.0.0.0 without --insecure-http: allowed, because it is HTTPS.
    cp = startCli(['--data', data, '--listen', `0.0.0.0:${port}`, '--public-url', `https://localhost:${port}`], { BERTH_TLS_CERT: certFile, BERTH_TLS_KEY: keyFile });
    const ca = readText(first.caFile);
    const url = `https://localhost:${port}`;
    const health = await eventually(() => call(`${url}/healthz`, { ca }).catch((e) => ({ status: 0, body: String(e) }) as Reply), (r) => r.status === 200, 20_000);
    assert.equal(health.status, 200, cp.output());
    const token = readText(join(data, 'admin-token')).trim();
    const servers = await call(`${url}/api/servers`, { ca, token });
    assert.equal(servers.status, 200);
    assert.equal(servers.serial, new X509Certificate(readText(first.certFile)).serialNumber);
    // Loopback keeps plain HTTP (the local agent and CLI of an all-in-one machine).
    assert.equal((await call(`http://127.0.0.1:${port}/api/servers`, { token })).status, 200);
    const ip = externalIPv4();
    if (ip) {
      // Another host's plain request never reaches the API: it is sent to https.
      const remote = await call(`http://${ip}:${port}/api/servers?x=1`, { token });
      assert.equal(remote.status, 308);
      assert.equal(remote.headers.location, `https://localhost:${port}/api/servers?x=1`);
    }

    // Renewed by another tool: the new files are served without a restart.
    const second = makeTlsFiles(makeTmpDir('cp-tls-files'));
    copyFileSync(second.keyFile, keyFile);
    copyFileSync(second.certFile, certFile);
    const secondSerial = new X509Certificate(readText(second.certFile)).serialNumber;
    const ca2 = readText(second.caFile);
    const renewed = await eventually(() => call(`${url}/healthz`, { ca: ca2 }).catch(() => ({ status: 0, body: '' }) as Reply), (r) => r.serial === secondSerial, 20_000);
    assert.equal(renewed.serial, secondSerial);
  });

  it('refuses a key that does not match the certificate, or a missing file, naming it', async () => {
    const dir = makeTmpDir('cp-tls-files');
    const a = makeTlsFiles(dir);
    const b = makeTlsFiles(mkdirSub(dir, 'b'));
    const data = join(dir, 'data');
    const mismatch = await berth(['control-plane', '--data', data, '--listen', '127.0.0.1:0', '--tls-cert', a.certFile, '--tls-key', b.keyFile]);
    assert.notEqual(mismatch.code, 0);
    assert.match(mismatch.stderr, new RegExp(`^berth: TLS certificate ${a.certFile} with key ${b.keyFile} is not usable: .*mismatch`, 'i'));
    const missing = await berth(['control-plane', '--data', data, '--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'nope.pem'), '--tls-key', b.keyFile]);
    assert.match(missing.stderr, /^berth: cannot read the TLS certificate .*nope\.pem: ENOENT/);
    const half = await berth(['control-plane', '--data', data, '--listen', '127.0.0.1:0', '--tls-cert', a.certFile]);
    assert.match(half.stderr, /^berth: --tls-cert and --tls-key go together/);
  });
});

describe("control plane: its own certificate from an ACME CA (--domain, Pebble)", { timeout: 180_000 }, () => {
  let pebble: Pebble | undefined;
  let httpPort: number;
  let cp: { proc: ChildProcess; output: () => string } | undefined;
  let web: { proc: ChildProcess } | undefined;

  before(async () => {
    httpPort = await freePort();
    pebble = await startPebble({ httpPort, certValiditySeconds: 90 * 86_400 });
  });
  after(async () => {
    await stopCli(cp);
    await stopCli(web);
    await pebble?.stop();
  });

  const acmeEnv = () => ({ BERTH_ACME_DIRECTORY: pebble!.directoryUrl, BERTH_ACME_CA: pebble!.caFile, BERTH_ACME_SKIP_PRECHECK: '1' });
  /** GET over HTTPS with SNI `domain`, verified against Pebble's root: fails until the certificate is there. */
  const viaPebbleChain = (port: number, domain: string, path: string, token?: string) =>
    call(`https://127.0.0.1:${port}${path}`, { ca: pebble!.rootPem, servername: domain, ...(token ? { token } : {}) });

  it('obtains a certificate over HTTP-01 on its own port-80 listener and serves the API over HTTPS with it; a restart reuses it', async () => {
    const domain = 'cp.berth-test.com';
    const port = await freePort();
    const data = join(makeTmpDir('cp-acme'), 'data');
    const args = ['--data', data, '--listen', `127.0.0.1:${port}`, '--domain', domain, '--acme-http-port', String(httpPort)];
    cp = startCli(args, acmeEnv());
    const ok = await eventually(() => viaPebbleChain(port, domain, '/healthz').catch((e) => ({ status: 0, body: String(e) }) as Reply), (r) => r.status === 200, 90_000, 500);
    assert.equal(ok.status, 200, cp.output());
    const token = readText(join(data, 'admin-token')).trim();
    const servers = await viaPebbleChain(port, domain, '/api/servers', token);
    assert.equal(servers.status, 200);
    assert.equal(servers.body, '[]');
    // Stored owner-only in the data dir, with the account key.
    for (const f of ['tls/fullchain.pem', 'tls/privkey.pem', 'tls/acme/account.key']) assert.equal(mode(join(data, f)), 0o600, f);
    const leaf = new X509Certificate(readText(join(data, 'tls/fullchain.pem')));
    assert.ok(leaf.checkHost(domain));
    assert.equal(leaf.serialNumber, ok.serial);
    // The port-80 listener sends everything but challenges to https.
    const redirect = await call(`http://127.0.0.1:${httpPort}/install.sh`);
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.location, `https://${domain}:${port}/install.sh`);

    await stopCli(cp);
    cp = startCli(args, { ...acmeEnv(), BERTH_ACME_DIRECTORY: 'https://127.0.0.1:1/dir' }); // no CA reachable now
    const again = await eventually(() => viaPebbleChain(port, domain, '/healthz').catch(() => ({ status: 0, body: '' }) as Reply), (r) => r.status === 200, 20_000);
    assert.equal(again.serial, leaf.serialNumber, 'the stored certificate is served after a restart, without a new order');
    await stopCli(cp);
  });

  it('with --acme-webroot writes the challenge for the web server already on port 80 (an all-in-one machine)', async () => {
    const domain = 'aio.berth-test.com';
    const root = makeTmpDir('cp-acme');
    const webroot = join(root, 'webroot');
    // Another web server serving WEBROOT on port 80: a static file server in its own process.
    web = { proc: spawn(process.execPath, ['-e', staticServer(webroot, httpPort)], { stdio: 'ignore' }) };
    await eventually(() => call(`http://127.0.0.1:${httpPort}/`).catch(() => ({ status: 0 }) as Reply), (r) => r.status === 404, 10_000);
    const port = await freePort();
    const data = join(root, 'data');
    cp = startCli(['--data', data, '--listen', `127.0.0.1:${port}`], { ...acmeEnv(), BERTH_DOMAIN: domain, BERTH_ACME_WEBROOT: webroot });
    const ok = await eventually(() => viaPebbleChain(port, domain, '/healthz').catch((e) => ({ status: 0, body: String(e) }) as Reply), (r) => r.status === 200, 90_000, 500);
    assert.equal(ok.status, 200, cp.output());
    assert.ok(existsSync(join(webroot, '.well-known', 'acme-challenge')), 'challenges went through the webroot');
  });
});

describe('control plane: renewing its ACME certificate', { timeout: 120_000 }, () => {
  let pebble: Pebble | undefined;
  let httpPort: number;
  let challenges: ChallengeServer | undefined;
  const domain = 'renew.berth-test.com';
  before(async () => {
    httpPort = await freePort();
    // Certificates that live 15 s: renewal at 2/3 of the lifetime comes 10 s after issuance.
    pebble = await startPebble({ httpPort, certValiditySeconds: 15 });
    challenges = new ChallengeServer(() => `https://${domain}`, SHORT);
    await challenges.listen(httpPort, '127.0.0.1');
  });
  after(async () => {
    await challenges?.close();
    await pebble?.stop();
  });

  it('orders a new certificate once 2/3 of the lifetime has passed, and serves and stores it', async () => {
    const dir = join(makeTmpDir('cp-renew'), 'tls');
    const got: Array<{ pair: CertPair; at: number }> = [];
    const cert = new AcmeCertificate({
      domain,
      acme: { directoryUrl: pebble!.directoryUrl, caFile: pebble!.caFile, skipChallengeVerification: true, pollMinMs: 100 },
      dir,
      challenges: challenges!,
      onPair: (pair) => got.push({ pair, at: Date.now() }),
      log: logger,
    });
    try {
      cert.start();
      await eventually(async () => got.length, (n) => n >= 2, 60_000, 100);
    } finally {
      await cert.stop();
    }
    const [first, second] = got as [(typeof got)[0], (typeof got)[0]];
    assert.notEqual(new X509Certificate(second.pair.cert).serialNumber, new X509Certificate(first.pair.cert).serialNumber);
    assert.ok(second.at >= renewAt(first.pair).getTime() - 1000, 'not renewed before 2/3 of the lifetime');
    assert.equal(readText(join(dir, 'fullchain.pem')), second.pair.cert, 'the renewed certificate is stored');
    assert.equal(mode(join(dir, 'privkey.pem')), 0o600);
  });

  it('retries a failed order with a doubling backoff up to its cap', async () => {
    const lines: Array<Record<string, any>> = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const cert = new AcmeCertificate({
      domain,
      acme: { directoryUrl: 'https://127.0.0.1:1/dir', preflightTimeoutMs: 500 },
      dir: join(makeTmpDir('cp-renew'), 'tls'),
      challenges: challenges!,
      onPair: () => assert.fail('no certificate from an unreachable CA'),
      log: pino({ level: 'info' }, sink),
      retryMinMs: 100,
      retryMaxMs: 400,
    });
    const failures = () => lines.filter((l) => l.msg === 'TLS certificate not obtained');
    try {
      cert.start();
      await eventually(async () => failures().length, (n) => n >= 5, 20_000, 50);
    } finally {
      await cert.stop();
    }
    assert.deepEqual(failures().slice(0, 5).map((l) => l.retryInMs), [100, 200, 400, 400, 400]);
    assert.match(failures()[0]!.err, /ACME directory https:\/\/127\.0\.0\.1:1\/dir unreachable: ECONNREFUSED/);
  });
});

function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

function mkdirSub(dir: string, name: string): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Source of a tiny static file server for `root` on `port` (404 for anything missing). */
function staticServer(root: string, port: number): string {
  return `
    const { createServer } = require('node:http'); const { readFile } = require('node:fs'); const { join, normalize } = require('node:path');
    createServer((req, res) => {
      const p = normalize(decodeURIComponent(req.url.split('?')[0]));
      if (p.includes('..')) { res.writeHead(400); return res.end(); }
      readFile(join(${JSON.stringify(root)}, p), (err, data) => { if (err) { res.writeHead(404); return res.end(); } res.end(data); });
    }).listen(${port}, '127.0.0.1');
  `;
}

