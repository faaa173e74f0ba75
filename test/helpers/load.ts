// Bounded HTTP load on loopback for zero-downtime checks and benchmarks: a few clients sending
// GETs back to back through nginx, some over keep-alive connections and some opening a fresh
// connection per request. Every response is classified (2xx / other status / connection error)
// and the version each one carries is recorded per client as runs (version, count, first, last),
// so a test can tell exactly when and how often the served version changed.
//
// One retry rule, the one HTTP clients are expected to follow (RFC 9112 §9.3.1; Node's documented
// `request.reusedSocket` pattern; curl and browsers do it): a request sent on a *reused* keep-alive
// connection that the server closed before answering anything is sent again, once, on a new
// connection. Servers (nginx on every reload) may close idle keep-alive connections at any time.
// Those are counted (`staleConnectionRetries`), never hidden; a failed retry is an error, and a
// fresh connection is never retried.
import { Agent, request } from 'node:http';

export interface LoadOptions {
  port: number;
  /** Where nginx listens (default 127.0.0.1; a test bed node's address for cluster benchmarks). */
  address?: string;
  /** Host header (the app's domain). */
  host: string;
  path?: string;
  keepAliveClients: number;
  freshClients: number;
  /** Stop after this many requests in total… */
  maxRequests: number;
  /** …or after this long, whichever comes first. */
  maxDurationMs: number;
  /** Pause between a client's requests (leaves CPU for the deploys being measured). */
  pauseMs?: number;
  /** The version a 2xx body carries (e.g. /version (\d+)/). */
  version: (body: string) => string | null;
  requestTimeoutMs?: number;
}

export interface VersionRun {
  version: string | null;
  count: number;
  first: number;
  last: number;
}

export interface ClientReport {
  name: string;
  keepAlive: boolean;
  sent: number;
  ok: number;
  runs: VersionRun[];
}

export interface Failure {
  client: string;
  at: number;
  status?: number;
  error?: string;
  body?: string;
}

export interface LoadReport {
  sent: number;
  ok: number;
  non2xx: number;
  connectionErrors: number;
  staleConnectionRetries: number;
  /** The first failures in detail (at most 50). */
  failures: Failure[];
  clients: ClientReport[];
  durationMs: number;
  /** True when a bound (count or time) ended the load before stop() was called. */
  hitBound: boolean;
}

interface Outcome {
  status?: number;
  body?: string;
  error?: string;
  reused: boolean;
  gotResponse: boolean;
}

export class HttpLoad {
  private stopping = false;
  private readonly started = Date.now();
  private sent = 0;
  private ok = 0;
  private non2xx = 0;
  private connectionErrors = 0;
  private staleRetries = 0;
  private hitBound = false;
  private readonly failures: Failure[] = [];
  private readonly clients: ClientReport[] = [];
  private readonly loops: Array<Promise<void>> = [];
  private readonly agents: Agent[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: LoadOptions) {
    for (let i = 0; i < o.keepAliveClients; i++) this.spawn(`keepalive-${i + 1}`, true);
    for (let i = 0; i < o.freshClients; i++) this.spawn(`fresh-${i + 1}`, false);
    this.timer = setTimeout(() => {
      this.hitBound = true;
      this.stopping = true;
    }, o.maxDurationMs);
  }

  /** Requests answered so far (to wait until the load is really flowing). */
  get answered(): number {
    return this.ok + this.non2xx;
  }

  /** The version each client saw last (null before its first answer). */
  lastVersions(): Array<string | null> {
    return this.clients.map((c) => c.runs[c.runs.length - 1]?.version ?? null);
  }

  /** Resolves once every client has been answered with `version` (bounded by `timeoutMs`). */
  async until(version: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lastVersions().every((v) => v === version)) {
      if (Date.now() > deadline || this.stopping) throw new Error(`not every client saw version ${version} within ${timeoutMs} ms: ${JSON.stringify(this.lastVersions())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<LoadReport> {
    this.stopping = true;
    clearTimeout(this.timer);
    await Promise.all(this.loops);
    for (const a of this.agents) a.destroy();
    return {
      sent: this.sent,
      ok: this.ok,
      non2xx: this.non2xx,
      connectionErrors: this.connectionErrors,
      staleConnectionRetries: this.staleRetries,
      failures: this.failures,
      clients: this.clients,
      durationMs: Date.now() - this.started,
      hitBound: this.hitBound,
    };
  }

  private spawn(name: string, keepAlive: boolean): void {
    const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: 1 }) : undefined;
    if (agent) this.agents.push(agent);
    const client: ClientReport = { name, keepAlive, sent: 0, ok: 0, runs: [] };
    this.clients.push(client);
    this.loops.push(this.loop(client, agent));
  }

  private async loop(client: ClientReport, agent: Agent | undefined): Promise<void> {
    while (!this.stopping) {
      if (this.sent >= this.o.maxRequests) {
        this.hitBound = true;
        this.stopping = true;
        break;
      }
      this.sent++;
      client.sent++;
      let res = await this.once(agent);
      if (res.error && res.reused && !res.gotResponse && agent) {
        this.staleRetries++;
        res = await this.once(agent);
      }
      const at = Date.now();
      if (res.error) {
        this.connectionErrors++;
        this.fail({ client: client.name, at, error: res.error });
      } else if (res.status! < 200 || res.status! > 299) {
        this.non2xx++;
        this.fail({ client: client.name, at, status: res.status!, body: (res.body ?? '').slice(0, 200) });
      } else {
        this.ok++;
        client.ok++;
        const version = this.o.version(res.body ?? '');
        const last = client.runs[client.runs.length - 1];
        if (last && last.version === version) {
          last.count++;
          last.last = at;
        } else {
          client.runs.push({ version, count: 1, first: at, last: at });
        }
      }
      if (this.o.pauseMs) await new Promise((r) => setTimeout(r, this.o.pauseMs));
    }
  }

  private fail(f: Failure): void {
    if (this.failures.length < 50) this.failures.push(f);
  }

  private once(agent: Agent | undefined): Promise<Outcome> {
    return new Promise((resolve) => {
      let gotResponse = false;
      const req = request(
        {
          host: this.o.address ?? '127.0.0.1',
          port: this.o.port,
          path: this.o.path ?? '/',
          method: 'GET',
          headers: { host: this.o.host },
          agent: agent ?? false,
          timeout: this.o.requestTimeoutMs ?? 10_000,
        },
        (res) => {
          gotResponse = true;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), reused: req.reusedSocket, gotResponse }));
          res.on('error', (err) => resolve({ error: errorName(err), reused: req.reusedSocket, gotResponse }));
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'TIMEOUT' })));
      req.on('error', (err) => resolve({ error: errorName(err), reused: req.reusedSocket, gotResponse }));
      req.end();
    });
  }
}

function errorName(err: Error): string {
  return (err as { code?: string }).code ?? err.message;
}

/** The versions a client saw, in order, one entry per change. */
export function versionSequence(c: ClientReport): Array<string | null> {
  return c.runs.map((r) => r.version);
}

/**
 * How a client's versions line up with the deployed ones: `exact` when each expected version
 * appeared once, in order, and nothing else; `flipBacks` counts returns to the version just before
 * the newest one seen (a response from nginx's outgoing workers during a reload); `unexpected`
 * lists versions out of the expected order.
 */
export function judgeSequence(c: ClientReport, expected: string[]): { exact: boolean; flipBacks: number; unexpected: string[]; seen: Array<string | null> } {
  const seen = versionSequence(c);
  const exact = seen.length === expected.length && seen.every((v, i) => v === expected[i]);
  let newest = -1;
  let flipBacks = 0;
  const unexpected: string[] = [];
  for (const v of seen) {
    const i = v === null ? -1 : expected.indexOf(v);
    if (i < 0) unexpected.push(String(v));
    else if (i > newest) {
      if (i !== newest + 1) unexpected.push(`skipped to ${v}`);
      newest = i;
    } else if (i === newest - 1) flipBacks++;
    else if (i < newest) unexpected.push(`back to ${v} after ${expected[newest]}`);
  }
  return { exact, flipBacks, unexpected, seen };
}
