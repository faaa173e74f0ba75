// Release signing, tokens off command lines and rate-limited install warnings, against a real
// control plane process (no containers: test/install-signing.test.ts runs install.sh and `berth
// upgrade` in Debian containers against these).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rateLimitedLog } from '../../shared/log-rate-limit.js';
import { releaseStatement } from '../../shared/release-signature.js';
import { BERTH_BIN, berth, berthJson, type CliResult } from '../helpers/cli.js';
import { Stack } from '../helpers/stack.js';
import { makeTmpDir } from '../helpers/tmp.js';

const PUBLIC_URL = 'https://cp.example.test';
const ARCH = process.arch;

/** `berth ARGS` with INPUT on its stdin. */
function berthWithStdin(args: string[], input: string, env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, BERTH_LOG_FORMAT: 'json', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe('release signing and secrets off the command line', { timeout: 5 * 60_000 }, () => {
  let stack: Stack;
  let releaseDir: string;
  const release = { version: '9.0.0', file: `berth-9.0.0-linux-${ARCH}.tar.gz`, sha256: '', nodeAbi: '127', nodeVersion: 'v22.0.0' };

  before(async () => {
    // A release the control plane can name in its manifest (its content does not matter here).
    releaseDir = makeTmpDir('signing-release');
    const tarball = Buffer.from('not really a tarball\n');
    writeFileSync(join(releaseDir, release.file), tarball);
    release.sha256 = createHash('sha256').update(tarball).digest('hex');
    writeFileSync(join(releaseDir, `berth-9.0.0-linux-${ARCH}.json`), JSON.stringify({ ...release, platform: 'linux', arch: ARCH }));
    process.env.BERTH_RELEASE_DIR = releaseDir;
    process.env.BERTH_PUBLIC_URL = PUBLIC_URL; // the control plane below inherits both
    stack = await Stack.create('signing');
    await stack.startControlPlane();
    delete process.env.BERTH_PUBLIC_URL;
    // The public URL is not where it listens: find the real one in its log.
    const listening = /"url":"[^"]*","listen":"([^"]+)"/.exec(readFileSync(join(stack.root, 'control-plane.log'), 'utf8'));
    assert.ok(listening, 'the control plane logged where it listens');
    stack.cpUrl = `http://${listening[1]}`;
  });

  after(async () => {
    await stack?.destroy();
  });

  it('creates an Ed25519 key (0600), bakes its public key into install.sh and signs install.sh and the release', async () => {
    const keyFile = join(stack.cpData, 'release-key.pem');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const pubPem = readFileSync(join(stack.cpData, 'release-key.pub'), 'utf8');
    const pub = createPublicKey(pubPem);
    assert.equal(pub.asymmetricKeyType, 'ed25519');
    const der = pub.export({ type: 'spki', format: 'der' }).toString('base64');

    const res = await fetch(`${stack.cpUrl}/install.sh`);
    const script = Buffer.from(await res.arrayBuffer());
    assert.match(script.toString(), new RegExp(`^BERTH_RELEASE_KEY_BAKED='${der.replace(/[+/]/g, '\\$&')}'$`, 'm'));
    assert.match(script.toString(), new RegExp(`^BERTH_URL_BAKED='${PUBLIC_URL}'$`, 'm'));
    const sig = res.headers.get('x-berth-signature');
    assert.ok(sig, 'install.sh comes with its signature');
    assert.equal(verify(null, script, pub, Buffer.from(sig, 'base64')), true, 'signed as served');
    assert.equal(verify(null, Buffer.concat([script, Buffer.from('\n')]), pub, Buffer.from(sig, 'base64')), false);
    assert.equal(await (await fetch(`${stack.cpUrl}/install/release.pub`)).text(), pubPem);

    // The manifest's signature covers the statement install.sh rebuilds, checked the way install.sh does.
    const manifest = await (await fetch(`${stack.cpUrl}/install/manifest?arch=${ARCH}`)).text();
    const field = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(manifest)?.[1] ?? '';
    assert.equal(field('berth_sha256'), release.sha256);
    const dir = makeTmpDir('signing-openssl');
    writeFileSync(join(dir, 'key.pem'), pubPem);
    writeFileSync(join(dir, 'statement'), releaseStatement(release));
    writeFileSync(join(dir, 'sig'), Buffer.from(field('berth_signature'), 'base64'));
    const opensslVerify = () =>
      execFileSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(dir, 'key.pem'), '-rawin', '-in', join(dir, 'statement'), '-sigfile', join(dir, 'sig')], { encoding: 'utf8' });
    assert.match(opensslVerify(), /Signature Verified Successfully/);
    // Another checksum in the same statement does not verify.
    writeFileSync(join(dir, 'statement'), releaseStatement({ ...release, sha256: '0'.repeat(64) }));
    assert.throws(opensslVerify);
    // The Node.js binary is signed too.
    assert.match(manifest, /^node_sha256=[0-9a-f]{64}$/m);
    assert.match(manifest, /^node_signature=[A-Za-z0-9+/]{86}==$/m);
  });

  it('server add prints an https install line whose token is only an environment assignment', async () => {
    const added = await berthJson<{ name: string; joinToken: string; installCommand: string }>(['server', 'add', 'web-https'], stack.env);
    assert.ok(added.installCommand.startsWith(`curl -fsSL ${PUBLIC_URL}/install.sh | `), added.installCommand);
    assert.doesNotMatch(added.installCommand, /--token/);
    const words = added.installCommand.split(/\s+/);
    assert.deepEqual(words.filter((w) => w.includes(added.joinToken)), [`BERTH_JOIN_TOKEN=${added.joinToken}`], 'the token appears once, as a variable assignment');
    // A shell assignment before sudo: in sudo's environment, on nobody's argv.
    const at = words.indexOf(`BERTH_JOIN_TOKEN=${added.joinToken}`);
    assert.deepEqual(words.slice(at - 1, at + 3), ['|', `BERTH_JOIN_TOKEN=${added.joinToken}`, 'sudo', '--preserve-env=BERTH_JOIN_TOKEN']);
  });

  it('agent join takes the token from a 0600 file, stdin or BERTH_JOIN_TOKEN, and refuses a file others can read', async () => {
    const add = (name: string) => berthJson<{ joinToken: string }>(['server', 'add', name], stack.env);
    const dir = makeTmpDir('signing-join');
    const join1 = await add('join-file');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${join1.joinToken}\n`, { mode: 0o644 });
    chmodSync(tokenFile, 0o644);
    const data = (n: string) => ['--data', join(dir, n), '--json'];
    let r = await berth(['agent', 'join', stack.cpUrl, '--token-file', tokenFile, ...data('a')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`${tokenFile} is accessible by group or others \\(mode 0644\\).*chmod 600`));
    chmodSync(tokenFile, 0o600);
    r = await berth(['agent', 'join', stack.cpUrl, '--token-file', tokenFile, ...data('a')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { server: string }).server, 'join-file');

    const join2 = await add('join-stdin');
    r = await berthWithStdin(['agent', 'join', stack.cpUrl, '-', ...data('b')], `${join2.joinToken}\n`, {});
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { server: string }).server, 'join-stdin');
    const join3 = await add('join-stdin2');
    r = await berthWithStdin(['agent', 'join', stack.cpUrl, '--token-stdin', ...data('c')], join3.joinToken, {});
    assert.equal(r.code, 0, r.stderr);

    const join4 = await add('join-env');
    r = await berth(['agent', 'join', stack.cpUrl, ...data('d')], { BERTH_JOIN_TOKEN: join4.joinToken });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { server: string }).server, 'join-env');

    r = await berth(['agent', 'join', stack.cpUrl, ...data('e')], { BERTH_JOIN_TOKEN: '' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no join token: set BERTH_JOIN_TOKEN, or pass --token-file FILE \(mode 0600\) or --token-stdin/);
    r = await berthWithStdin(['agent', 'join', stack.cpUrl, 'sometoken', '--token-stdin', ...data('e')], 'x', {});
    assert.match(r.stderr, /give the join token one way only/);
  });

  it('login takes the admin token from stdin, a 0600 file or BERTH_TOKEN', async () => {
    const env = { XDG_CONFIG_HOME: makeTmpDir('signing-login'), BERTH_URL: '', BERTH_TOKEN: '' };
    let r = await berthWithStdin(['login', stack.cpUrl, '--token-stdin', '--json'], `${stack.adminToken}\n`, env);
    assert.equal(r.code, 0, r.stderr);
    const saved = JSON.parse(readFileSync(join(env.XDG_CONFIG_HOME, 'berth', 'config.json'), 'utf8')) as { token: string };
    assert.equal(saved.token, stack.adminToken);
    r = await berth(['login', stack.cpUrl, '--json'], { ...env, BERTH_TOKEN: stack.adminToken });
    assert.equal(r.code, 0, r.stderr);
    r = await berth(['login', stack.cpUrl, '--token-file', join(stack.cpData, 'admin-token'), '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    r = await berthWithStdin(['login', stack.cpUrl, '-', '--json'], 'wrong-token\n', env);
    assert.notEqual(r.code, 0, 'a wrong token is still refused');
  });

  it('logs the "no such release" warning of unauthenticated manifest requests once a minute, not per request', async () => {
    const count = () => readFileSync(join(stack.root, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.includes('install manifest asked for')).length;
    const before = count();
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${stack.cpUrl}/install/manifest?arch=${ARCH}&version=0.0.${i}`);
      assert.equal(res.status, 404);
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 200)); // the log stream flushes
    assert.equal(count() - before, 1, 'one warning for 50 requests');
  });

  it('rateLimitedLog says how many lines it left out when the next window opens', () => {
    let now = 0;
    const emitted: number[] = [];
    const limited = rateLimitedLog(60_000, () => now);
    for (let i = 0; i < 50; i++) limited((n) => emitted.push(n));
    now = 59_999;
    limited((n) => emitted.push(n));
    now = 60_000;
    limited((n) => emitted.push(n));
    assert.deepEqual(emitted, [0, 50]);
  });
});
