// A Git host over smart HTTP on loopback: git's own `http-backend` (CGI) behind a Node server that
// demands HTTP Basic credentials, as GitHub/GitLab do for private repos over HTTPS. Records what
// each request presented, so a test can tell the credentials were used (and which).
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

export interface GitHttpServer {
  /** http://127.0.0.1:PORT — repos are PATH under `root` (e.g. /remote.git). */
  origin: string;
  /** Per request: the path and the user name presented (null: none; 'refused': wrong credentials). */
  requests: Array<{ path: string; user: string | null; refused: boolean }>;
  close(): Promise<void>;
}

function basicUser(req: IncomingMessage): { user: string; password: string } | null {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.authorization ?? '');
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? null : { user: text.slice(0, i), password: text.slice(i + 1) };
}

/** Run `git http-backend` for one request and relay its CGI answer (Status header, headers, body). */
function backend(root: string, req: IncomingMessage, res: ServerResponse, user: string): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const cgi = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: user,
      REMOTE_ADDR: '127.0.0.1',
      ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  req.pipe(cgi.stdin);
  let head = Buffer.alloc(0);
  let sent = false;
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (sent) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const [k, ...v] = line.split(':');
      if (/^status$/i.test(k!)) status = Number.parseInt(v.join(':').trim(), 10);
      else headers[k!.trim()] = v.join(':').trim();
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
    sent = true;
  });
  cgi.on('close', () => res.end());
}

/** Serve the bare repos under `root`, to `user`:`password` only. */
export async function startGitHttp(root: string, creds: { user: string; password: string }): Promise<GitHttpServer> {
  const requests: GitHttpServer['requests'] = [];
  const server = createServer((req, res) => {
    const presented = basicUser(req);
    const ok = presented?.user === creds.user && presented.password === creds.password;
    requests.push({ path: (req.url ?? '/').split('?')[0]!, user: presented?.user ?? null, refused: !!presented && !ok });
    if (!ok) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end('authentication required\n');
    backend(root, req, res, creds.user);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return { origin: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(() => r())) };
}
