// A plain static file server (node:http, GET/HEAD, no index pages, no berth code): what a release host
// is to install.sh — GitHub Releases, an S3 bucket, nginx. Listens on 0.0.0.0 (the installer containers
// share the host's network) and records every request path.
import { createReadStream, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join, normalize, resolve, sep } from 'node:path';

export class StaticServer {
  /** Every request path, in order. */
  readonly requests: string[] = [];
  private readonly root: string;
  private readonly server = createServer((req, res) => this.serve(req, res));
  url = '';

  private constructor(root: string) {
    this.root = resolve(root);
  }

  static async start(root: string): Promise<StaticServer> {
    const s = new StaticServer(root);
    await new Promise<void>((done, reject) => {
      s.server.once('error', reject);
      s.server.listen(0, '0.0.0.0', () => done());
    });
    const addr = s.server.address();
    s.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    return s;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    let path = '/';
    try {
      path = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    } catch {
      // a malformed escape: 404 below
    }
    this.requests.push(path);
    const file = normalize(join(this.root, path));
    let size = -1;
    try {
      if (file.startsWith(this.root + sep) && (req.method === 'GET' || req.method === 'HEAD')) {
        const st = statSync(file);
        if (st.isFile()) size = st.size;
      }
    } catch {
      // missing: 404 below
    }
    if (size < 0) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((done) => this.server.close(() => done()));
  }
}
