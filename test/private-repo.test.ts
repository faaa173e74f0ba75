// Private repositories over SSH, end to end with a real sshd on loopback: an app created with an SSH
// repo URL gets its own Ed25519 deploy key (`berth app show` prints the public half); without the
// key in the server's authorized_keys the deploy fails at `fetching` naming the key and what to do;
// with it the app deploys, the Git host's key pinned on first use. The private half never shows.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import type { AppDetails } from '../shared/api.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';

const APP = `priv${process.pid}`;
const DOMAIN = `${APP}.private.test`;

const freePort = () =>
  new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });

describe('private repositories: a per-app SSH deploy key', () => {
  let stack: Stack;
  let repo: TestRepo;
  let sshd: ChildProcess | undefined;
  let sshDir: string;
  let created: AppDetails;

  const deploy = async () => {
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    const [dep] = await berthJson<Array<{ id: string; status: string; reason?: string | null }>>(['deployments', APP], stack.env);
    return { res, dep: dep! };
  };

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('private');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: 'FROM berth-test/busybox:latest\nCOPY . /www\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n', 'index.html': 'private v1' });

    // A real sshd on loopback, accepting only the keys in its own authorized_keys file.
    sshDir = join(stack.root, 'sshd');
    mkdirSync(sshDir, { recursive: true });
    mkdirSync('/run/sshd', { recursive: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, 'host_key')]);
    writeFileSync(join(sshDir, 'authorized_keys'), '');
    const port = await freePort();
    writeFileSync(
      join(sshDir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(sshDir, 'host_key')}`,
        `PidFile ${join(sshDir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(sshDir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        '',
      ].join('\n'),
    );
    sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(sshDir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let sshdLog = '';
    sshd.stderr!.on('data', (d: Buffer) => (sshdLog += d.toString()));
    await eventually(
      () =>
        new Promise<boolean>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.end();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      (up) => up,
      10_000,
    ).catch(() => assert.fail(`sshd did not start: ${sshdLog}`));

    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    created = await berthJson<AppDetails>(['app', 'create', APP, '--repo', `ssh://root@127.0.0.1:${port}${repo.bare}`, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
  });

  after(async () => {
    sshd?.kill();
    await stack?.destroy();
  });

  it('app create generates an Ed25519 deploy key; app show prints its public half', async () => {
    assert.match(created.deployKey ?? '', new RegExp(`^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/=]+ berth-deploy-${APP}$`));
    const shown = await berth(['app', 'show', APP], stack.env);
    assert.ok(shown.stdout.includes(created.deployKey!), shown.stdout);
    // ssh-keygen reads it as a public key.
    const file = join(stack.root, 'deploy.pub');
    writeFileSync(file, `${created.deployKey}\n`);
    assert.match(execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' }), /^256 SHA256:\S+ berth-deploy-/);
  });

  it('without the key in the Git server, the deploy fails at fetching naming the key and what to do', async () => {
    const { res, dep } = await deploy();
    assert.notEqual(res.code, 0);
    assert.equal(dep.status, 'failed');
    assert.match(dep.reason ?? '', /^fetch failed: .* refused the app's deploy key \(SHA256:[A-Za-z0-9+/]+\): add its public half \(berth app show APP\) to the repository's deploy keys/, dep.reason ?? '');
  });

  it('with the key added, the app deploys; the host key is pinned; the private key shows nowhere', async () => {
    appendFileSync(join(sshDir, 'authorized_keys'), `${created.deployKey}\n`);
    const { res, dep } = await deploy();
    assert.equal(dep.status, 'done', `${dep.reason}\n${res.stdout}\n${res.stderr}`);
    assert.equal((await httpGet(stack.httpPort, DOMAIN, '/')).body, 'private v1');
    const knownHosts = join(stack.agentData, 'keys', APP, 'known_hosts');
    assert.ok(existsSync(knownHosts) && readFileSync(knownHosts, 'utf8').includes('ssh-ed25519'), 'the Git host key was pinned');
    for (const file of ['agent.log', 'control-plane.log']) {
      assert.ok(!readFileSync(join(stack.root, file), 'utf8').includes('OPENSSH PRIVATE KEY'), `no private key in ${file}`);
    }
    assert.ok(!res.stdout.includes('OPENSSH PRIVATE KEY'));
    const json = await berth(['app', 'show', APP, '--json'], stack.env);
    assert.ok(!json.stdout.includes('PRIVATE'));
  });

  it('--known-hosts: only the host keys given are accepted', async () => {
    const port = /127\.0\.0\.1:(\d+)/.exec(created.repo)![1];
    const hostPub = readFileSync(join(sshDir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const other = join(stack.root, 'other_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const otherPub = readFileSync(`${other}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const make = async (app: string, hostKey: string) => {
      const file = join(stack.root, `${app}.known_hosts`);
      writeFileSync(file, `[127.0.0.1]:${port} ${hostKey}\n`);
      stack.apps.add(app);
      const a = await berthJson<AppDetails>(['app', 'create', app, '--repo', created.repo, '--server', stack.serverName, '--known-hosts', file], stack.env);
      appendFileSync(join(sshDir, 'authorized_keys'), `${a.deployKey}\n`);
      const res = await berth(['deploy', app, '--wait'], stack.env);
      const [dep] = await berthJson<Array<{ status: string; reason?: string | null }>>(['deployments', app], stack.env);
      return { res, dep: dep! };
    };
    const wrong = await make(`${APP}w`, otherPub);
    assert.equal(wrong.dep.status, 'failed');
    assert.match(wrong.dep.reason ?? '', /^fetch failed: the SSH host key of .* is not among the keys given with --known-hosts/, wrong.dep.reason ?? '');
    const right = await make(`${APP}r`, hostPub);
    assert.equal(right.dep.status, 'done', `${right.dep.reason}\n${right.res.stdout}`);

    const bad = await berth(['app', 'create', `${APP}x`, '--repo', created.repo, '--server', stack.serverName, '--known-hosts', join(sshDir, 'sshd_config')], stack.env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /known hosts.*has a line that is not "HOST KEYTYPE KEY"/);
  });

  it('berth app rm removes the key from the server', async () => {
    const rm = await berth(['app', 'rm', APP], stack.env);
    assert.equal(rm.code, 0, rm.stderr);
    await eventually(async () => existsSync(join(stack.agentData, 'keys', APP)), (exists) => !exists, 30_000);
  });
});
