// Issue 21: the control plane's data survives a lost disk. Real control plane and agent processes,
// a real busybox app in Docker: an online backup while the API is being written to, a restore into
// a fresh data dir, the agent reattaching with its old credential without any container being
// recreated, and the failure modes (wrong passphrase, tampered file, non-empty target, newer schema).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { createBackup } from '../control-plane/backup/backup.js';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { DB_FILE, MIGRATIONS, openDatabase, SCHEMA_VERSION } from '../control-plane/store/db.js';
import { busyboxDockerfile, type DeploymentJson } from './helpers/fixtures.js';
import { BERTH_BIN, berth, berthJson, type CliResult } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const APP = 'bk-web';
const DOMAIN = 'web.backup.test';
const PASSPHRASE = 'correct horse battery staple';
/** busybox httpd that starts listening 12 s after the container starts: a deploy waits in its health check. */
const SLOW_START_DOCKERFILE = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "sleep 12; exec httpd -f -p $PORT -h /www"]
`;

/** `berth …` with TEXT on standard input (the passphrase). */
function berthStdin(args: string[], input: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, BERTH_LOG_FORMAT: 'json', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** id → StartedAt of every container of APP on this stack's server. */
function appContainers(stack: Stack): Map<string, string> {
  const ids = execFileSync('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
  const out = new Map<string, string>();
  for (const id of ids) out.set(id, execFileSync('docker', ['inspect', '-f', '{{.State.StartedAt}}', id], { encoding: 'utf8' }).trim());
  return out;
}

/** What a user sees of the control plane's records, through the CLI. */
async function snapshot(env: Record<string, string>) {
  return {
    apps: await berthJson<unknown[]>(['app', 'ls'], env),
    domains: await berthJson<unknown[]>(['domain', 'ls', APP], env),
    env: await berthJson<unknown>(['env', 'ls', APP, '--reveal'], env),
    deployments: await berthJson<DeploymentJson[]>(['deployments', APP], env),
  };
}

describe('control plane backup and restore', () => {
  let stack: Stack;
  let repo: TestRepo;
  let passFile: string;
  let work: string;
  let backupFile: string;
  let before_: Awaited<ReturnType<typeof snapshot>>;
  let containersBefore: Map<string, string>;
  let serversDoneBeforeBackup: string[] = [];
  let inFlight = '';
  const deploymentStatus = async (id: string) => (await berthJson<DeploymentJson[]>(['deployments', APP], stack.env)).find((d) => d.id === id)?.status;
  // A second, in-process control plane with a backup every minute: by the end of this file it ran.
  let scheduled: RunningControlPlane;
  let scheduledDir: string;

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    // Fast reconnects, so the agent finds the restored control plane quickly.
    stack = await Stack.create('backup', { agentEnv: { BERTH_RECONNECT_MAX_MS: '500' } });
    stack.apps.add(APP);
    work = makeTmpDir('backup-work');
    passFile = join(work, 'passphrase');
    writeFileSync(passFile, PASSPHRASE + '\n', { mode: 0o600 });
    scheduledDir = join(work, 'scheduled');
    scheduled = await startControlPlane({
      dataDir: join(work, 'scheduled-cp'),
      listen: '127.0.0.1:0',
      logger,
      backup: { schedule: '* * * * *', dir: scheduledDir, passphraseFile: passFile, keep: 1 },
    });
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': 'restored?\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    await berthJson(['env', 'set', APP, 'SECRET_KEY=s3cr3t=with=equals', 'DATABASE_URL=postgres://u:p@db/x'], stack.env);
    const deployed = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(deployed.code, 0, `deploy failed:\n${deployed.stderr}\n${stack.tail('agent.log')}`);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'restored?\n');
  });

  after(async () => {
    await scheduled?.close();
    await stack?.destroy();
  });

  it('backs up while a deploy runs and the API is being written to: the copy is consistent and has every finished write', async () => {
    assert.equal(appContainers(stack).size, 1, 'one web container runs');
    // A deploy held in its health check (the new version listens only after 12 s) while the backup is taken.
    repo.commit({ Dockerfile: SLOW_START_DOCKERFILE, 'index.html': 'restored v2\n' });
    inFlight = (await berthJson<DeploymentJson>(['deploy', APP], stack.env)).id;
    await eventually(async () => (await deploymentStatus(inFlight)), (st) => st === 'health_checking', 60_000);
    // Writers keep creating servers through the API for the whole backup.
    const done: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing && i < 2000; i++) {
        const name = `w-${i}`;
        const res = await fetch(`${stack.cpUrl}/api/servers`, { method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
        assert.equal(res.status, 201);
        await res.arrayBuffer();
        done.push(name);
      }
    })();
    await eventually(async () => done.length, (n) => n >= 5, 10_000);
    serversDoneBeforeBackup = [...done];
    backupFile = join(work, 'cp.berth-backup');
    const res = await berth(['control-plane', 'backup', '--data', stack.cpData, '--out', backupFile, '--passphrase-file', passFile, '--json'], stack.env);
    writing = false;
    await writer;
    assert.equal(res.code, 0, res.stderr);
    // The deploy ends after the backup: what the restored control plane must learn from the agent.
    await eventually(async () => (await deploymentStatus(inFlight)), (st) => st === 'done', 60_000);
    before_ = await snapshot(stack.env);
    containersBefore = appContainers(stack);
    assert.equal(containersBefore.size, 1, 'the new version runs in one web container');
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'restored v2\n');
    const result = JSON.parse(res.stdout) as { file: string; bytes: number; files: string[]; schemaVersion: number };
    assert.equal(result.file, backupFile);
    assert.deepEqual(result.files.sort(), ['admin-token', 'release-key.pem', 'release-key.pub', 'secret.key']);
    assert.equal(result.schemaVersion, SCHEMA_VERSION);
    assert.equal(readFileSync(backupFile).length, result.bytes);
    assert.equal(readFileSync(backupFile).includes(Buffer.from('SQLite format')), false, 'the file is encrypted');
    assert.ok(done.length > serversDoneBeforeBackup.length, 'writes went on during the backup');
    assert.equal(readdirSync(stack.cpData).filter((n) => n.startsWith('.berth-backup-')).length, 0, 'no staging dir left behind');

    // Restore into a scratch dir and look inside the copy.
    const scratch = join(makeTmpDir('backup-scratch'), 'data');
    const restored = await berth(['control-plane', 'restore', backupFile, '--data', scratch, '--passphrase-file', passFile], stack.env);
    assert.equal(restored.code, 0, restored.stderr);
    const copy = new Database(join(scratch, DB_FILE), { readonly: true });
    try {
      assert.equal(copy.pragma('integrity_check', { simple: true }), 'ok');
      const servers = new Set((copy.prepare('SELECT name FROM servers').all() as Array<{ name: string }>).map((r) => r.name));
      for (const name of serversDoneBeforeBackup) assert.ok(servers.has(name), `server ${name}, created before the backup began, is in it`);
      const finished = copy.prepare(`SELECT count(*) AS n FROM deployments WHERE app = ? AND status = 'done'`).get(APP) as { n: number };
      assert.equal(finished.n, 1, 'the finished deployment is in the backup');
      const running = copy.prepare(`SELECT status FROM deployments WHERE id = ?`).get(inFlight) as { status: string };
      assert.equal(running.status, 'health_checking', 'the deploy under way is in it as it stood');
    } finally {
      copy.close();
    }
    assert.equal(readFileSync(join(scratch, 'secret.key'), 'utf8'), readFileSync(join(stack.cpData, 'secret.key'), 'utf8'));
    assert.equal(statSync(join(scratch, 'secret.key')).mode & 0o777, 0o600);
  });

  it('refuses a wrong passphrase, a tampered or truncated file and a non-empty data dir, clearly', async () => {
    const target = join(makeTmpDir('backup-refused'), 'data');
    const wrong = await berthStdin(['control-plane', 'restore', backupFile, '--data', target], 'not the passphrase\n');
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /^berth: wrong passphrase for this backup/);
    assert.equal(existsSync(target), false, 'nothing written');

    const bytes = readFileSync(backupFile);
    const tampered = Buffer.from(bytes);
    tampered[tampered.length - 10]! ^= 0x01;
    writeFileSync(join(work, 'tampered'), tampered);
    writeFileSync(join(work, 'truncated'), bytes.subarray(0, bytes.length - 100));
    for (const f of ['tampered', 'truncated']) {
      const res = await berthStdin(['control-plane', 'restore', join(work, f), '--data', target], PASSPHRASE + '\n');
      assert.notEqual(res.code, 0, f);
      assert.match(res.stderr, /backup file is damaged: it was truncated or modified/, f);
    }

    mkdirSync(target);
    writeFileSync(join(target, 'precious'), 'keep me\n');
    const nonEmpty = await berthStdin(['control-plane', 'restore', backupFile, '--data', target], PASSPHRASE + '\n');
    assert.notEqual(nonEmpty.code, 0);
    assert.match(nonEmpty.stderr, /is not empty \(precious\).*--force/);
    assert.deepEqual(readdirSync(target), ['precious']);

    const readable = join(work, 'readable-passphrase');
    writeFileSync(readable, PASSPHRASE + '\n', { mode: 0o644 });
    const open = await berth(['control-plane', 'backup', '--data', stack.cpData, '--out', join(work, 'x'), '--passphrase-file', readable]);
    assert.notEqual(open.code, 0);
    assert.match(open.stderr, /readable by group or others \(mode 644\)/);
  });

  it('restored on a fresh data dir, the control plane has every record and the agent reattaches without restarting anything', async () => {
    // The disk is lost: the control plane is gone, its data dir too.
    await stack.stopControlPlane();
    renameSync(stack.cpData, join(stack.root, 'cp-lost'));
    const res = await berthStdin(['control-plane', 'restore', backupFile, '--data', stack.cpData, '--json'], PASSPHRASE + '\n');
    assert.equal(res.code, 0, res.stderr);
    const reconnectsBefore = stack.tail('agent.log', 100_000).split('\n').filter((l) => l.includes('desired state received')).length;
    await stack.startControlPlane(); // same URL, restored data dir
    await eventually(
      () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], stack.env),
      (list) => list.some((s) => s.name === stack.serverName && s.connected),
      30_000,
    );
    // The agent got the restored desired state and reconciled against it.
    const received = Date.now();
    await eventually(
      async () => stack.tail('agent.log', 100_000).split('\n').filter((l) => l.includes('desired state received')).length,
      (n) => n > reconnectsBefore,
      20_000,
    );
    await eventually(
      () => berthJson<{ lastReconcile: { finishedAt: string } | null }>(['status', '--data', stack.agentData], stack.agentEnv),
      (s) => !!s.lastReconcile && Date.parse(s.lastReconcile.finishedAt) > received,
      40_000,
    );

    // The deploy that was under way in the backup ended after it: the agent's journal says so.
    await eventually(async () => (await deploymentStatus(inFlight)), (st) => st === 'done', 20_000);
    const after_ = await snapshot(stack.env);
    assert.deepEqual(after_.apps, before_.apps);
    assert.deepEqual(after_.domains, before_.domains);
    assert.deepEqual(after_.env, before_.env, 'env values decrypt to the same values with the restored key');
    assert.match(JSON.stringify(after_.env), /s3cr3t=with=equals/);
    // Every record is the original, except when the restored control plane learnt that deploy's end.
    const withoutEnd = (list: DeploymentJson[]) =>
      list.map((d) => (d.id === inFlight ? { ...d, finishedAt: d.finishedAt ? 'set' : null, updatedAt: 'when it learnt' } : d));
    assert.deepEqual(withoutEnd(after_.deployments), withoutEnd(before_.deployments));
    assert.deepEqual(appContainers(stack), containersBefore, 'no container was recreated or restarted');
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'restored v2\n');
    assert.ok(readFileSync(join(stack.agentData, 'agent.json'), 'utf8').includes(stack.cpUrl), 'the agent kept its credential file');
  });

  it('after a restore on another URL, `berth agent reattach URL` keeps the credential and nothing restarts', async () => {
    const oldCreds = JSON.parse(readFileSync(join(stack.agentData, 'agent.json'), 'utf8')) as { credential: string; controlPlaneUrl: string };
    await stack.stopControlPlane();
    stack.cpUrl = `http://127.0.0.1:${await freePort()}`;
    await stack.startControlPlane();
    const moved = await berthJson<{ controlPlaneUrl: string; previousUrl: string }>(['agent', 'reattach', stack.cpUrl, '--data', stack.agentData]);
    assert.equal(moved.controlPlaneUrl, stack.cpUrl);
    assert.equal(moved.previousUrl, oldCreds.controlPlaneUrl);
    const newCreds = JSON.parse(readFileSync(join(stack.agentData, 'agent.json'), 'utf8')) as { credential: string };
    assert.equal(newCreds.credential, oldCreds.credential);
    await stack.stopAgent();
    await stack.startAgent(); // waits until the server shows as connected to the new URL
    assert.deepEqual(appContainers(stack), containersBefore);
    const nowhere = await berth(['agent', 'reattach', `http://127.0.0.1:${await freePort()}`, '--data', stack.agentData]);
    assert.notEqual(nowhere.code, 0);
    assert.match(nowhere.stderr, /no berth control plane answers .*agent\.json left unchanged/);
  });

  it('a control plane refuses to start on a database newer than itself, naming both versions', async () => {
    const dir = join(makeTmpDir('backup-newer'), 'data');
    const restored = await berthStdin(['control-plane', 'restore', backupFile, '--data', dir], PASSPHRASE + '\n');
    assert.equal(restored.code, 0, restored.stderr);
    const db = new Database(join(dir, DB_FILE));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const res = await berth(['control-plane', '--data', dir, '--listen', '127.0.0.1:0'], {}, 30_000);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, new RegExp(`schema version ${SCHEMA_VERSION + 1} is newer than this berth supports \\(${SCHEMA_VERSION}\\)`));
  });

  it('a migration of an existing database takes a copy of it first', async () => {
    const dir = makeTmpDir('backup-migrate');
    // A database one version behind, made by the real migrations (whichever is the last one today).
    const old = new Database(join(dir, DB_FILE));
    for (const sql of MIGRATIONS.slice(0, SCHEMA_VERSION - 1)) old.exec(sql);
    old.pragma(`user_version = ${SCHEMA_VERSION - 1}`);
    old.prepare('INSERT INTO servers (name, created_at) VALUES (?, ?)').run('older-server', new Date().toISOString());
    old.close();
    const db = openDatabase(join(dir, DB_FILE));
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
    const copies = readdirSync(join(dir, 'backups'));
    assert.equal(copies.length, 1);
    assert.match(copies[0]!, new RegExp(`^pre-migration-v${SCHEMA_VERSION - 1}-\\d{8}T\\d{9}Z\\.db$`));
    const copy = new Database(join(dir, 'backups', copies[0]!), { readonly: true });
    try {
      assert.equal(copy.pragma('user_version', { simple: true }), SCHEMA_VERSION - 1);
      assert.deepEqual(copy.prepare('SELECT name FROM servers').all(), [{ name: 'older-server' }]);
    } finally {
      copy.close();
    }
    // Opening it again (nothing to migrate) takes no further copy.
    openDatabase(join(dir, DB_FILE)).close();
    assert.equal(readdirSync(join(dir, 'backups')).length, 1);
  });

  it('--keep N keeps the N newest backups in a directory and leaves other files alone', async () => {
    const dir = join(work, 'rotated');
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'not a backup\n');
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await createBackup({ dataDir: stack.cpData, out: dir, keep: 2, passphrase: PASSPHRASE, now: new Date(Date.UTC(2026, 0, 1, 3, i)) });
      made.push(r.file);
    }
    assert.deepEqual(readdirSync(dir).sort(), ['control-plane-20260101T030100000Z.berth-backup', 'control-plane-20260101T030200000Z.berth-backup', 'notes.txt']);
    await assert.rejects(createBackup({ dataDir: stack.cpData, out: join(work, 'one-file'), keep: 2, passphrase: PASSPHRASE }), /--keep needs --out to be a directory/);
  });

  it('scheduled backups run inside the control plane and `berth control-plane status` shows the last one', async () => {
    const env = { BERTH_URL: scheduled.url, BERTH_TOKEN: scheduled.adminToken };
    type Status = { backup: { schedule: string; keep: number; lastRun: { ok: boolean; file: string; bytes: number; error: string | null } | null } | null };
    const status = await eventually(() => berthJson<Status>(['control-plane', 'status'], env), (s) => !!s.backup?.lastRun, 75_000);
    assert.equal(status.backup?.schedule, '* * * * *');
    assert.equal(status.backup?.lastRun?.ok, true, status.backup?.lastRun?.error ?? '');
    assert.ok(existsSync(status.backup!.lastRun!.file));
    assert.equal(readFileSync(status.backup!.lastRun!.file).length, status.backup!.lastRun!.bytes);
    const human = await berth(['control-plane', 'status'], env);
    assert.match(human.stdout, /last backup {4}ok at /);
    // And a group-readable passphrase file stops the control plane from starting with that schedule.
    const readable = join(work, 'group-readable-passphrase');
    writeFileSync(readable, PASSPHRASE + '\n', { mode: 0o640 });
    await assert.rejects(
      startControlPlane({ dataDir: join(work, 'bad-schedule'), listen: '127.0.0.1:0', logger, backup: { schedule: '0 3 * * *', dir: scheduledDir, passphraseFile: readable } }),
      /readable by group or others/,
    );
  });
});
