// Temp directories and free loopback ports for tests that run real daemons.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

const made: string[] = [];
// Each test file runs in its own process: what it made goes when it exits (its daemons and
// containers are stopped by then). BERTH_TEST_KEEP_TMP=1 keeps them to look at after a failure.
process.on('exit', () => {
  if (process.env.BERTH_TEST_KEEP_TMP === '1') return;
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // a file still in use: left for the OS's temp cleaning
    }
  }
});

/**
 * A fresh directory under the OS temp dir, removed when the test process exits:
 * makeTmpDir('git') and makeTmpDir('berth-git-') both give /tmp/berth-git-AbC123.
 */
export function makeTmpDir(prefix: string): string {
  let p = prefix.startsWith('berth-') ? prefix : `berth-${prefix}`;
  if (!p.endsWith('-')) p += '-';
  const dir = mkdtempSync(join(tmpdir(), p));
  made.push(dir);
  return dir;
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
