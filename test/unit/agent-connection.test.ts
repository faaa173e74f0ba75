// The agent's WebSocket client against a tiny ws server standing in for the control plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { AgentConnection, agentWsUrl } from '../../agent/connection.js';
import { AgentStore } from '../../agent/store/index.js';
import { AGENT_WS_PATH, PROTOCOL_VERSION, type AgentMessage } from '../../shared/protocol.js';
import type { ServerSpec } from '../../shared/spec.js';

const silent = pino({ level: 'silent' });

interface Conn {
  ws: WebSocket;
  req: IncomingMessage;
  at: number;
  received: AgentMessage[];
}

/** A control plane stand-in: records connections and messages; can refuse new connections. */
class FakeControlPlane {
  readonly conns: Conn[] = [];
  /** When each refused upgrade attempt arrived (the agent's retries while `accepting` is false). */
  readonly refusedAt: number[] = [];
  accepting = true;
  private waiters: Array<() => void> = [];
  private constructor(readonly wss: WebSocketServer) {
    wss.on('connection', (ws, req) => {
      const conn: Conn = { ws, req, at: Date.now(), received: [] };
      this.conns.push(conn);
      ws.on('message', (data) => {
        conn.received.push(JSON.parse(data.toString()) as AgentMessage);
        this.notify();
      });
      this.notify();
    });
  }
  static async start(opts: { autoPong?: boolean } = {}): Promise<FakeControlPlane> {
    let cp: FakeControlPlane;
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: AGENT_WS_PATH,
      autoPong: opts.autoPong ?? true,
      verifyClient: (_info, cb) => {
        if (cp.accepting) return cb(true);
        cp.refusedAt.push(Date.now());
        cb(false, 503, 'not now');
      },
    });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    cp = new FakeControlPlane(wss);
    return cp;
  }
  get url(): string {
    return `http://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }
  /** Resolve once `check` holds (re-checked on every connection and message), or fail after timeoutMs. */
  until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      const waiter = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      };
      this.waiters.push(waiter);
    });
  }
  /** Like `until`, for conditions the fake is not notified of (the agent's own state): polled every 10 ms. */
  async untilTrue(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
  async close(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

function setup(t: { after: (fn: () => void | Promise<void>) => void }, cp: FakeControlPlane, extra: Partial<ConstructorParameters<typeof AgentConnection>[0]> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'berth-agent-conn-'));
  const store = AgentStore.open(dir);
  const conn = new AgentConnection({ url: cp.url, credential: 's3cret-credential', outbox: store.outbox, logger: silent, hostname: 'test-host', minBackoffMs: 50, maxBackoffMs: 200, ...extra });
  t.after(async () => {
    await conn.close();
    await cp.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { conn, store };
}

const progress = (status: 'fetching' | 'building' | 'done'): AgentMessage => ({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: 'dep00000001', status, ts: new Date().toISOString() });
const logLine = (seq: number): AgentMessage => ({ type: 'deploy_log', v: PROTOCOL_VERSION, deploymentId: 'dep00000001', lines: [{ seq, ts: new Date().toISOString(), stream: 'build', text: `step ${seq}` }] });
const spec: ServerSpec = { server: 'local', revision: 1, apps: [] };

test('the WebSocket URL follows the control plane URL scheme', () => {
  assert.equal(agentWsUrl('http://127.0.0.1:8080'), `ws://127.0.0.1:8080${AGENT_WS_PATH}`);
  assert.equal(agentWsUrl('https://berth.example.com/'), `wss://berth.example.com${AGENT_WS_PATH}`);
  assert.equal(agentWsUrl('https://example.com/berth'), `wss://example.com/berth${AGENT_WS_PATH}`);
});

test('connects with the bearer credential and says hello first', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn } = setup(t, cp);
  let connected = 0;
  conn.on('connected', () => connected++);
  conn.start();
  await cp.until(() => (cp.conns[0]?.received.length ?? 0) >= 1, 'hello');
  const first = cp.conns[0]!;
  assert.equal(first.req.headers.authorization, 'Bearer s3cret-credential');
  const hello = first.received[0]!;
  assert.equal(hello.type, 'hello');
  assert.equal(hello.v, PROTOCOL_VERSION);
  assert.ok(hello.type === 'hello' && hello.hostname === 'test-host' && hello.agentVersion.length > 0);
  assert.equal(connected, 1);
  const state = conn.state();
  assert.equal(state.status, 'connected');
  assert.ok(state.connectedSince && state.lastSeenAt);
  assert.equal(state.nextRetryAt, null);
  // Open is not accepted: only the control plane's welcome says the credential and hello were taken.
  assert.equal(state.acceptedAt, null);
  first.ws.send(JSON.stringify({ type: 'welcome', v: PROTOCOL_VERSION, server: 'local' }));
  for (let i = 0; i < 100 && conn.state().acceptedAt === null; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(conn.state().acceptedAt, 'accepted once the welcome arrived');
});

test('reconnects with backoff after the server drops it, and reports the retry', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn } = setup(t, cp, { minBackoffMs: 100, maxBackoffMs: 400 });
  const events: string[] = [];
  conn.on('connected', () => events.push('connected'));
  conn.on('disconnected', () => events.push('disconnected'));
  conn.start();
  await cp.until(() => cp.conns.length === 1 && cp.conns[0]!.received.length > 0, 'first connection');
  const dropped = Date.now();
  cp.accepting = false;
  cp.conns[0]!.ws.terminate();
  await new Promise((r) => setTimeout(r, 30));
  const state = conn.state();
  assert.equal(state.status, 'disconnected');
  assert.ok(state.nextRetryAt, 'the next retry time is exposed');
  // Refused attempts back off: the agent keeps retrying, but never faster than half the minimum backoff.
  await cp.untilTrue(() => cp.refusedAt.length >= 3, 'three refused retries', 3_000);
  assert.equal(cp.conns.length, 1, 'a refused attempt opens no connection');
  const gaps = cp.refusedAt.slice(1).map((at, i) => at - cp.refusedAt[i]!);
  assert.ok(cp.refusedAt[0]! - dropped >= 50 && gaps.every((g) => g >= 50), `retries back off (first after ${cp.refusedAt[0]! - dropped} ms, then ${gaps.join(', ')} ms)`);
  assert.match(conn.state().lastError ?? '', /503/, 'the refusal is the last error');
  cp.accepting = true;
  await cp.until(() => cp.conns.length === 2 && cp.conns[1]!.received.length > 0, 'reconnection', 3_000);
  assert.ok(cp.conns[1]!.at - dropped >= 50, 'the first retry waits at least half the minimum backoff');
  assert.ok(cp.conns[1]!.at - dropped < 2_000, 'the backoff is capped');
  assert.equal(cp.conns[1]!.received[0]!.type, 'hello', 'hello again after reconnecting');
  assert.equal(cp.conns[1]!.req.headers.authorization, 'Bearer s3cret-credential');
  assert.deepEqual(events, ['connected', 'disconnected', 'connected']);
});

test('messages produced while disconnected are delivered in order after reconnecting', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn, store } = setup(t, cp);
  conn.start();
  await cp.until(() => cp.conns[0]?.received.length === 1, 'hello');
  conn.send(progress('fetching'));
  await cp.until(() => cp.conns[0]!.received.length === 2, 'live progress');

  cp.accepting = false;
  cp.conns[0]!.ws.terminate();
  await new Promise((r) => setTimeout(r, 30));
  conn.send(progress('building'));
  for (let i = 0; i < 250; i++) conn.send(logLine(i)); // more than one flush batch
  conn.send({ type: 'heartbeat', v: PROTOCOL_VERSION, ts: new Date().toISOString() }); // ephemeral: dropped offline
  conn.send(progress('done'));
  assert.equal(store.outbox.count(), 252);
  assert.equal(conn.state().pending, 252);

  cp.accepting = true;
  await cp.until(() => (cp.conns[1]?.received.length ?? 0) >= 253, 'the outbox flush', 5_000);
  const got = cp.conns[1]!.received;
  assert.equal(got[0]!.type, 'hello');
  const rest = got.slice(1).filter((m) => m.type !== 'heartbeat');
  assert.deepEqual(
    rest.map((m) => (m.type === 'deploy_log' ? m.lines[0]!.seq : m.type === 'deploy_progress' ? m.status : m.type)),
    ['building', ...Array.from({ length: 250 }, (_, i) => i), 'done'],
  );
  await cp.until(() => store.outbox.count() === 0, 'the outbox to empty');
  assert.equal(store.outbox.count(), 0);
});

test('malformed frames are ignored without crashing or dropping the link', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn } = setup(t, cp);
  const specs: ServerSpec[] = [];
  const orders: unknown[] = [];
  conn.on('desired_state', (s) => specs.push(s));
  conn.on('deploy', (o) => orders.push(o));
  conn.start();
  await cp.until(() => cp.conns[0]?.received.length === 1, 'hello');
  const ws = cp.conns[0]!.ws;
  ws.send('this is not json');
  ws.send(JSON.stringify({ type: 'deploy', v: PROTOCOL_VERSION, deploymentId: 'x' }));
  ws.send(JSON.stringify({ type: 'desired_state', v: 99, spec }));
  ws.send(JSON.stringify({ type: 'desired_state', v: PROTOCOL_VERSION, spec: { ...spec, apps: [{ name: '--bad', repo: 'ext::sh -c x', branch: 'main', domains: [] }] } }));
  ws.send(JSON.stringify({ type: 'whatever', v: PROTOCOL_VERSION }));
  ws.send(Buffer.from([0xff, 0x00, 0x13]));
  ws.send(JSON.stringify({ type: 'desired_state', v: PROTOCOL_VERSION, spec }));
  const deadline = Date.now() + 2_000;
  while (specs.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(specs, [spec], 'only the valid desired state got through');
  assert.deepEqual(orders, []);
  assert.equal(cp.conns.length, 1, 'still on the first connection');
  assert.equal(conn.state().status, 'connected');
});

test('a handler that throws does not take the connection down', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn } = setup(t, cp);
  let calls = 0;
  conn.on('desired_state', () => {
    calls++;
    throw new Error('handler bug');
  });
  conn.start();
  await cp.until(() => cp.conns[0]?.received.length === 1, 'hello');
  // Two messages: the second is only handled if the first throw left the socket handler working.
  cp.conns[0]!.ws.send(JSON.stringify({ type: 'desired_state', v: PROTOCOL_VERSION, spec }));
  cp.conns[0]!.ws.send(JSON.stringify({ type: 'desired_state', v: PROTOCOL_VERSION, spec: { ...spec, revision: 2 } }));
  await cp.untilTrue(() => calls === 2, 'the handler to run for both messages', 2_000);
  assert.equal(conn.state().status, 'connected');
  assert.equal(cp.conns.length, 1, 'the connection was not replaced');
});

test('a silent link (no pongs, no messages) is noticed by the watchdog and replaced', async (t) => {
  const cp = await FakeControlPlane.start({ autoPong: false });
  const { conn } = setup(t, cp, { heartbeatIntervalMs: 100, deadAfterMs: 300 });
  conn.start();
  await cp.until(() => cp.conns.length === 1, 'first connection');
  await cp.until(() => cp.conns[0]!.received.some((m) => m.type === 'heartbeat'), 'a heartbeat', 2_000);
  await cp.until(() => cp.conns.length >= 2, 'a reconnect after the link went silent', 3_000);
  assert.match(conn.state().lastError ?? '', /nothing received/);
});

test('close() stops reconnecting', async (t) => {
  const cp = await FakeControlPlane.start();
  const { conn } = setup(t, cp);
  conn.start();
  await cp.until(() => cp.conns.length === 1, 'connection');
  await conn.close();
  assert.equal(conn.state().status, 'closed');
  assert.equal(conn.state().nextRetryAt, null, 'no retry scheduled');
  // Longer than the maximum backoff (200 ms): a retry would have come by now.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(cp.conns.length + cp.refusedAt.length, 1, 'no attempt after close');
});
