// Simulated agents for bench/control-plane-scale.ts: real WebSocket clients speaking the real agent
// protocol (hello, heartbeats every 10 s, observed state, deploy progress + a log batch for every
// deploy order) — one process holds thousands of them. Run by the benchmark with child_process.fork;
// it talks to its parent over IPC only.
//
// argv: CP_URL FIRST COUNT HEARTBEAT_MS   (credentials are `bench-cred-<index>`, servers `srv-<index>`)
import WebSocket from 'ws';
import { AGENT_WS_PATH, PROTOCOL_VERSION } from '../shared/protocol.js';

const [cpUrl, firstArg, countArg, heartbeatArg] = process.argv.slice(2);
const first = Number(firstArg);
const count = Number(countArg);
const heartbeatMs = Number(heartbeatArg) || 10_000;
const wsUrl = `${cpUrl!.replace(/^http/, 'ws')}${AGENT_WS_PATH}`;
/** The agent's own reconnect backoff (agent/connection.ts): 1 s doubling to 30 s, equal jitter. */
const MIN_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
/** Connections opened at once when the swarm starts (a fleet coming up is not one instant). */
const CONNECT_WINDOW = 100;

const send = (msg: unknown) => process.send?.(msg);
const now = () => performance.timeOrigin + performance.now();

class SimAgent {
  ws: WebSocket | null = null;
  welcomed = false;
  attempt = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private observed: NodeJS.Timeout | null = null;

  constructor(readonly index: number) {}

  connect(onOpenOrFail: () => void): void {
    const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer bench-cred-${this.index}` }, perMessageDeflate: false });
    this.ws = ws;
    let settled = false;
    const settle = () => {
      if (!settled) (settled = true), onOpenOrFail();
    };
    ws.on('open', () => {
      settle();
      ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, agentVersion: 'bench', hostname: `sim-${this.index}` }));
      // Jittered like a fleet that did not start in the same second. Like agent/connection.ts: an
      // app-level heartbeat and a WebSocket ping each time.
      this.heartbeat = setInterval(() => {
        this.send({ type: 'heartbeat', v: PROTOCOL_VERSION, ts: new Date().toISOString() });
        if (ws.readyState === WebSocket.OPEN) ws.ping();
      }, heartbeatMs * (0.9 + Math.random() * 0.2));
    });
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('error', () => settle());
    ws.on('close', () => {
      settle();
      this.stopTimers();
      if (this.welcomed) send({ type: 'disconnected' });
      this.welcomed = false;
      this.scheduleReconnect();
    });
  }

  private send(msg: unknown): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  private onMessage(raw: string): void {
    const msg = JSON.parse(raw) as { type: string; deploymentId?: string; spec?: { revision?: number; apps?: Array<{ name: string }> } };
    if (msg.type === 'welcome') {
      this.welcomed = true;
      this.attempt = 0;
      send({ type: 'welcomed', at: Date.now() });
    } else if (msg.type === 'desired_state') {
      // One running container per app of the spec, and the free-disk report, as a real agent sends.
      const containers = (msg.spec?.apps ?? []).map((a) => ({ app: a.name, process: 'web', deploymentId: 'bench00000000', state: 'running' }));
      const disk = [{ path: '/var/lib/berth', freeMb: 50_000, minFreeMb: 1024 }];
      const observed = () => this.send({ type: 'observed_state', v: PROTOCOL_VERSION, specRevision: msg.spec?.revision ?? null, containers, disk });
      observed();
      if (this.observed) clearInterval(this.observed);
      this.observed = setInterval(observed, 30_000 + Math.random() * 5_000);
    } else if (msg.type === 'error') {
      // The control plane refused a frame: the simulation is wrong, and its numbers would be too.
      send({ type: 'refused', detail: raw.slice(0, 300) });
    } else if (msg.type === 'deploy' && msg.deploymentId) {
      const id = msg.deploymentId;
      send({ type: 'deploy', id, at: now() });
      // Occasional deploy traffic: a phase, a log batch, the end.
      const ts = new Date().toISOString();
      this.send({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: id, status: 'fetching', ts });
      const lines = Array.from({ length: 20 }, (_, seq) => ({ seq, ts, stream: 'build', text: `bench log line ${seq}` }));
      this.send({ type: 'deploy_log', v: PROTOCOL_VERSION, deploymentId: id, lines });
      this.send({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: id, status: 'failed', reason: 'simulated agent', ts });
    }
  }

  private scheduleReconnect(): void {
    const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(this.attempt, 30));
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.attempt++;
    setTimeout(() => this.connect(() => {}), delay).unref();
  }

  private stopTimers(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.observed) clearInterval(this.observed);
    this.heartbeat = this.observed = null;
  }
}

const agents = Array.from({ length: count }, (_, i) => new SimAgent(first + i));
let next = 0;
const startOne = (): void => {
  const a = agents[next++];
  if (a) a.connect(startOne);
};
for (let i = 0; i < CONNECT_WINDOW; i++) startOne();

process.on('message', (m: { type: string }) => {
  if (m.type === 'stop') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
// Keep the process alive while its parent lives (timers are unref'd only for reconnects).
setInterval(() => {}, 60_000);
