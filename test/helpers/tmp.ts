// Temp directories and free loopback ports for tests that run real daemons.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** A fresh directory under the OS temp dir: makeTmpDir('git') and makeTmpDir('berth-git-') both give /tmp/berth-git-AbC123. */
export function makeTmpDir(prefix: string): string {
  let p = prefix.startsWith('berth-') ? prefix : `berth-${prefix}`;
  if (!p.endsWith('-')) p += '-';
  return mkdtempSync(join(tmpdir(), p));
}

/**
 * A TCP port that is free right now on all interfaces (nginx listens on 0.0.0.0, so checking only
 * loopback could hand out a port that is taken elsewhere).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '0.0.0.0', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not allocate a port'))));
    });
  });
}
