// agent/nginx.ts against a real private nginx under a temp prefix on a free high port.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Nginx, NginxError } from '../agent/nginx/index.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const quiet = pino({ level: 'silent' });

/** GET / through nginx with a Host header. */
function get(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { Host: host }, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A loopback upstream that answers its name and the proxy headers it received. */
async function upstream(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name, host: req.headers.host, xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0 };
}

const nameOf = (body: string) => (JSON.parse(body) as { name: string }).name;

describe('nginx: transactional site config', () => {
  let prefix: string;
  let httpPort: number;
  let nginx: Nginx;
  let a: { server: Server; port: number };
  let b: { server: Server; port: number };
  const sites = () => join(prefix, 'sites');
  const leftovers = () => readdirSync(sites()).filter((n) => n.startsWith('.'));

  before(async () => {
    prefix = makeTmpDir('nginx');
    httpPort = await freePort();
    nginx = new Nginx({ prefix, httpPort, verifyTimeoutMs: 1500 }, quiet);
    a = await upstream('A');
    b = await upstream('B');
    await nginx.ensureRunning();
  });

  after(async () => {
    await nginx?.stop();
    a?.server.close();
    b?.server.close();
    rmSync(prefix, { recursive: true, force: true });
  });

  it('runs a private nginx under the prefix with a 404 default server', async () => {
    const conf = readFileSync(join(prefix, 'nginx.conf'), 'utf8');
    assert.match(conf, new RegExp(`listen ${httpPort} default_server;`));
    assert.match(conf, /include .*\/sites\/\*\.conf;/);
    assert.ok(!conf.includes('/etc/nginx/nginx.conf'));
    const pid = Number(readFileSync(join(prefix, 'nginx.pid'), 'utf8'));
    assert.doesNotThrow(() => process.kill(pid, 0));
    assert.equal((await get(httpPort, 'unknown.example.com')).status, 404);
    // A second "agent" finds it running instead of starting another one.
    await new Nginx({ prefix, httpPort }, quiet).ensureRunning();
    assert.equal(Number(readFileSync(join(prefix, 'nginx.pid'), 'utf8')), pid);
  });

  it('applies a site and proxies to the upstream with the proxy headers', async () => {
    await nginx.applyApp('shop', { domains: ['shop.example.com', 'WWW.Shop.Example.com'], upstreamPort: a.port });
    const res = await get(httpPort, 'shop.example.com');
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body) as { name: string; host: string; xff: string; proto: string };
    assert.deepEqual(body, { name: 'A', host: 'shop.example.com', xff: '127.0.0.1', proto: 'http' });
    assert.equal(nameOf((await get(httpPort, 'www.shop.example.com')).body), 'A', 'domains are lower-cased');
    assert.match(nginx.readAppFile('shop') ?? '', /server_name shop\.example\.com www\.shop\.example\.com;/);
    assert.deepEqual(nginx.listApps(), ['shop']);
    assert.deepEqual(leftovers(), [], 'no staging, backup or journal files left');
  });

  it('switches the upstream, and an unchanged apply is a no-op', async () => {
    await nginx.applyApp('shop', { domains: ['shop.example.com', 'www.shop.example.com'], upstreamPort: b.port });
    assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
    const base = readFileSync(join(sites(), 'berth_base.conf'), 'utf8');
    await nginx.applyApp('shop', { domains: ['shop.example.com', 'www.shop.example.com'], upstreamPort: b.port });
    assert.equal(readFileSync(join(sites(), 'berth_base.conf'), 'utf8'), base, 'no new transaction for an unchanged site');
  });

  it('rolls back a change nginx -t rejects, leaving the file byte-identical and the old site serving', async () => {
    const before = readFileSync(join(sites(), 'berth-shop.conf'));
    writeFileSync(join(sites(), 'zz-broken.conf'), 'this is not nginx;\n');
    try {
      await assert.rejects(nginx.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: a.port }), (err: unknown) => {
        assert.ok(err instanceof NginxError);
        assert.match(err.message, /nginx rejected the config for app shop: .*unknown directive "this"/);
        return true;
      });
      assert.ok(readFileSync(join(sites(), 'berth-shop.conf')).equals(before), 'file restored byte for byte');
      assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
      // A new app is not left on disk either.
      await assert.rejects(nginx.applyApp('blog', { domains: ['blog.example.com'], upstreamPort: a.port }), NginxError);
      assert.equal(existsSync(join(sites(), 'berth-blog.conf')), false);
      assert.deepEqual(leftovers(), []);
    } finally {
      rmSync(join(sites(), 'zz-broken.conf'), { force: true });
    }
  });

  it('detects a reload nginx silently refused (port in use) and rolls back', async () => {
    const busyPort = await freePort();
    const blocker = createServer(() => {});
    await new Promise<void>((r) => blocker.listen(busyPort, '0.0.0.0', r));
    const before = readFileSync(join(sites(), 'berth-shop.conf'));
    // Passes `nginx -t` (which does not bind), but the reload cannot bind the port.
    writeFileSync(join(sites(), 'zz-port.conf'), `server { listen ${busyPort}; return 204; }\n`);
    try {
      await assert.rejects(nginx.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: a.port }), (err: unknown) => {
        assert.ok(err instanceof NginxError);
        assert.match(err.message, /did not apply the config for app shop: the reload did not take effect/);
        assert.match(err.message, /Address already in use/);
        return true;
      });
      assert.ok(readFileSync(join(sites(), 'berth-shop.conf')).equals(before));
      assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
      assert.deepEqual(leftovers(), []);
    } finally {
      rmSync(join(sites(), 'zz-port.conf'), { force: true });
      blocker.close();
    }
    // Once the obstacle is gone, the same change goes through.
    await nginx.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: a.port });
    assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'A');
    assert.equal((await get(httpPort, 'www.shop.example.com')).status, 404);
  });

  it('refuses hostile app names and domains without writing anything', async () => {
    const before = readFileSync(join(sites(), 'berth-shop.conf'));
    const hostile = [
      'evil.example.com; include /etc/passwd',
      'a.example.com\n}\nserver {',
      'a.example.com}',
      '-x.example.com',
      '*.example.com',
      'localhost',
      '127.0.0.1',
      'berth-generation.invalid',
      '',
    ];
    for (const d of hostile) {
      await assert.rejects(nginx.applyApp('shop', { domains: ['shop.example.com', d], upstreamPort: b.port }), NginxError, JSON.stringify(d));
      await assert.rejects(nginx.applyApp('evil', { domains: [d], upstreamPort: b.port }), NginxError, JSON.stringify(d));
    }
    for (const app of ['../etc', 'Shop', 'a b', 'x;y', '']) {
      await assert.rejects(nginx.applyApp(app, { domains: ['ok.example.com'], upstreamPort: b.port }), NginxError);
    }
    await assert.rejects(nginx.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: 70000 }), NginxError);
    assert.ok(readFileSync(join(sites(), 'berth-shop.conf')).equals(before));
    assert.deepEqual(nginx.listApps(), ['shop']);
    assert.deepEqual(leftovers(), []);
  });

  it('serves several apps, applied concurrently, and removes one without touching the others', async () => {
    await Promise.all([
      nginx.applyApp('blog', { domains: ['blog.example.com'], upstreamPort: b.port }),
      nginx.applyApp('my-docs', { domains: ['docs.example.com'], upstreamPort: a.port }),
      nginx.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: b.port }),
    ]);
    assert.deepEqual(nginx.listApps(), ['blog', 'my-docs', 'shop']);
    assert.equal(nameOf((await get(httpPort, 'blog.example.com')).body), 'B');
    assert.equal(nameOf((await get(httpPort, 'docs.example.com')).body), 'A');
    await nginx.applyApp('blog', null);
    await nginx.applyApp('my-docs', { domains: [], upstreamPort: a.port }); // no domains = no server block
    assert.equal(nginx.readAppFile('blog'), null);
    assert.equal(nginx.readAppFile('my-docs'), null);
    assert.equal((await get(httpPort, 'blog.example.com')).status, 404);
    assert.equal((await get(httpPort, 'docs.example.com')).status, 404);
    assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
    assert.deepEqual(nginx.listApps(), ['shop']);
  });

  it('undoes a transaction interrupted by a crash, and restarts after a stop', async () => {
    const file = join(sites(), 'berth-shop.conf');
    const good = readFileSync(file);
    // State of a crash between "swap" and "verify": backup + journal on disk, new file in place.
    copyFileSync(file, join(sites(), '.berth-berth-shop.conf.bak'));
    writeFileSync(
      join(sites(), '.berth-journal.json'),
      JSON.stringify({ what: 'app shop', changes: [{ path: file, backup: join(sites(), '.berth-berth-shop.conf.bak') }] }),
    );
    writeFileSync(file, 'half-written garbage');
    await nginx.stop();
    assert.equal(existsSync(join(prefix, 'nginx.pid')), false, 'nginx stopped');
    const restarted = new Nginx({ prefix, httpPort, verifyTimeoutMs: 1500 }, quiet);
    await restarted.ensureRunning();
    assert.ok(readFileSync(file).equals(good));
    assert.deepEqual(leftovers(), []);
    assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
    nginx = restarted;
  });

  it('moves a broken berth file aside at start so other apps still serve', async () => {
    await nginx.stop();
    writeFileSync(join(sites(), 'berth-legacy.conf'), 'server { bogus_directive on; }\n');
    await nginx.ensureRunning();
    assert.equal(nameOf((await get(httpPort, 'shop.example.com')).body), 'B');
    assert.equal(existsSync(join(sites(), 'berth-legacy.conf')), false);
    assert.ok(readdirSync(sites()).some((n) => n.startsWith('berth-legacy.conf.broken-')));
  });
});
