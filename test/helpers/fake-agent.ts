// A real `ws` client playing the agent side of the protocol against a real control plane: it says
// hello, queues what it receives, and reports progress as a test tells it to.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { AGENT_WS_PATH } from '../../shared/protocol.js';

export class FakeAgent {
  private readonly inbox: Array<Record<string, any>> = [];
  /** One per pending `next` (several may wait at once, for different types). */
  private readonly waiters = new Set<() => void>();
  /** Resolves with the close code and reason once the connection is gone. */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.inbox.push(JSON.parse(String(data)) as Record<string, any>);
      for (const wake of [...this.waiters]) wake();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /** Open the WebSocket (no hello yet); rejects with the HTTP `status` and `body` when the upgrade is refused. */
  static connect(cpUrl: string, credential: string | null): Promise<FakeAgent> {
    const headers: Record<string, string> = credential === null ? {} : { authorization: `Bearer ${credential}` };
    const ws = new WebSocket(cpUrl.replace(/^http/, 'ws') + AGENT_WS_PATH, { headers });
    const agent = new FakeAgent(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(agent));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c));
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body: text })));
      });
      ws.once('error', reject);
    });
  }

  /** Connect with the agent credential, say hello and wait for the welcome and the desired state. */
  static async join(cpUrl: string, credential: string): Promise<FakeAgent> {
    const agent = await FakeAgent.connect(cpUrl, credential);
    agent.hello();
    await agent.next('welcome');
    await agent.next('desired_state');
    return agent;
  }

  /** A message (a string is sent as is: for malformed frames). */
  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  hello(): void {
    this.send({ type: 'hello', v: 1, agentVersion: '0.1.0-test', hostname: 'test-host' });
  }

  progress(deploymentId: string, status: string, extra: Record<string, unknown> = {}): void {
    this.send({ type: 'deploy_progress', v: 1, deploymentId, status, ts: new Date().toISOString(), ...extra });
  }

  /** The next received message of `type` (others stay queued), or a failure after `timeoutMs`. */
  async next(type: string, timeoutMs = 3000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`no "${type}" message within ${timeoutMs} ms; got ${JSON.stringify(this.inbox.map((m) => m.type))}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  /** Assert nothing of `type` arrives within `ms`. */
  async none(type: string, ms = 300): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(this.inbox.filter((m) => m.type === type).length, 0, `unexpected "${type}" message`);
  }

  /** Round-trip a heartbeat: every earlier frame has been processed and the connection is served. */
  async sync(): Promise<void> {
    this.send({ type: 'heartbeat', v: 1, ts: new Date().toISOString() });
    await this.next('heartbeat');
  }

  /** A clean close handshake (ws.terminate() for a connection that just dies). */
  close(): void {
    this.ws.close();
  }
}

/** The newest desired state the agent has been sent (earlier ones dropped). */
export async function lastDesiredState(agent: FakeAgent): Promise<Record<string, any>> {
  let latest = await agent.next('desired_state');
  for (;;) {
    try {
      latest = await agent.next('desired_state', 200);
    } catch {
      return latest;
    }
  }
}

/** A small admin-API caller for control-plane tests: JSON in, `{status, body}` out. */
export function adminApi(cp: { url: string; adminToken: string }) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(cp.url + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  };
}
