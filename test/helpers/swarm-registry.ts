// A private image registry for the Swarm test bed: Debian's `docker-registry` (distribution 2.8) on
// one node (the manager by default) with TLS from a throwaway CA, htpasswd (bcrypt) credentials and
// deletes enabled. Every node trusts the CA through /etc/docker/certs.d/ADDR/ca.crt, which the engine
// reads per pull: no daemon restart, no insecure-registries.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from './http.js';
import { runOk } from './swarm-exec.js';
import { NODE_REGISTRY_DIR, NODE_REGISTRY_START } from './swarm-node-image.js';
import type { Swarm, SwarmNode } from './swarm.js';
import { makeTmpDir } from './tmp.js';

export interface Registry {
  /** host:port, as images are named (`ADDR/repo@sha256:…`). */
  address: string;
  node: SwarmNode;
  /** The CA certificate on the host (PEM); nodes have it at /etc/docker/certs.d/ADDR/ca.crt. */
  caPath: string;
  /** Where each node keeps the CA. */
  nodeCaPath: string;
  username: string;
  password: string;
}

export interface RegistryOptions {
  /** The node that runs it (default: the manager). */
  node?: SwarmNode | string;
  port?: number;
  username?: string;
  timeoutMs?: number;
}

const openssl = (dir: string, args: string[]) => runOk(['openssl', ...args], { timeoutMs: 30_000 }).then(() => dir);

/** A CA and a server certificate for `ip` (in subjectAltName: Go's TLS ignores the CN). EC keys: fast to make. */
async function makeCerts(ip: string): Promise<{ dir: string; ca: string; cert: string; key: string }> {
  const dir = makeTmpDir('swarm-registry-ca');
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(dir, ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=berth swarm test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await openssl(dir, ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${ip}`]);
  writeFileSync(f('server.ext'), `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  await openssl(dir, ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext')]);
  const read = (name: string) => readFileSync(f(name), 'utf8');
  return { dir, ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key') };
}

const registryConfig = (port: number) => `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: 0.0.0.0:${port}
  tls:
    certificate: ${NODE_REGISTRY_DIR}/server.crt
    key: ${NODE_REGISTRY_DIR}/server.key
auth:
  htpasswd:
    realm: berth-swarm-test
    path: ${NODE_REGISTRY_DIR}/htpasswd
`;

/** Write `content` to `path` in a node (through stdin: nothing on the command line). */
export function writeNodeFile(swarm: Swarm, node: SwarmNode | string, path: string, content: string, mode = '600'): Promise<string> {
  return swarm.exec(node, ['sh', '-c', 'mkdir -p "$(dirname "$1")" && umask 077 && cat > "$1" && chmod "$2" "$1"', 'sh', path, mode], { input: content, timeoutMs: 20_000 });
}

/** Start the registry and make every node of `swarm` trust it; it restarts with its node. */
export async function startRegistry(swarm: Swarm, opts: RegistryOptions = {}): Promise<Registry> {
  const node = typeof opts.node === 'string' ? swarm.node(opts.node) : (opts.node ?? swarm.manager);
  const port = opts.port ?? 5000;
  const address = `${node.ip}:${port}`;
  const username = opts.username ?? 'berth';
  const password = randomBytes(18).toString('base64url');
  const certs = await makeCerts(node.ip);
  // bcrypt (the only hash distribution's htpasswd accepts) from htpasswd in the node image: nothing needed on the host.
  const htpasswd = await swarm.exec(node, ['htpasswd', '-iBn', username], { input: password, timeoutMs: 20_000 });
  await writeNodeFile(swarm, node, `${NODE_REGISTRY_DIR}/htpasswd`, htpasswd, '644');
  await writeNodeFile(swarm, node, `${NODE_REGISTRY_DIR}/server.key`, certs.key);
  await writeNodeFile(swarm, node, `${NODE_REGISTRY_DIR}/server.crt`, certs.cert, '644');
  await writeNodeFile(swarm, node, `${NODE_REGISTRY_DIR}/config.yml`, registryConfig(port), '644');
  const nodeCaPath = `/etc/docker/certs.d/${address}/ca.crt`;
  await Promise.all(swarm.nodes.map((n) => writeNodeFile(swarm, n, nodeCaPath, certs.ca, '644')));
  await swarm.exec(node, [NODE_REGISTRY_START], { timeoutMs: 20_000 });
  // Up, with TLS the nodes trust and auth on: /v2/ answers 401 without credentials.
  await eventually(
    () => swarm.tryExec(node, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', nodeCaPath, `https://${address}/v2/`], { timeoutMs: 10_000 }),
    (r) => r.stdout === '401',
    opts.timeoutMs ?? 30_000,
    200,
  ).catch(async (err: Error) => {
    const log = await swarm.tryExec(node, ['tail', '-n', '20', '/var/log/berth-registry.log']);
    throw new Error(`the registry on ${node.name} did not come up: ${err.message}\n${log.stdout}`);
  });
  return { address, node, caPath: join(certs.dir, 'ca.crt'), nodeCaPath, username, password };
}

/** `docker login` to the registry on a node (password through stdin). */
export async function loginRegistry(swarm: Swarm, registry: Registry, node: SwarmNode | string): Promise<void> {
  await swarm.exec(node, ['docker', 'login', registry.address, '-u', registry.username, '--password-stdin'], { input: registry.password, timeoutMs: 30_000 });
}

/**
 * Push a host image to the registry as `repo:tag` from `via` (default: the registry's node, logged in
 * first) and return its immutable reference `ADDR/repo@sha256:…`.
 */
export async function pushImage(swarm: Swarm, registry: Registry, hostImage: string, repoTag: string, via: SwarmNode | string = registry.node): Promise<string> {
  const target = `${registry.address}/${repoTag}`;
  await swarm.loadImage(via, hostImage);
  await loginRegistry(swarm, registry, via);
  await swarm.exec(via, ['docker', 'tag', hostImage, target], { timeoutMs: 20_000 });
  await swarm.exec(via, ['docker', 'push', target], { timeoutMs: 120_000 });
  const repoDigests = await swarm.exec(via, ['docker', 'image', 'inspect', '--format', '{{join .RepoDigests "\\n"}}', target], { timeoutMs: 20_000 });
  const repo = target.replace(/:[^:/]+$/, '');
  const ref = repoDigests.split('\n').find((d) => d.startsWith(`${repo}@sha256:`));
  if (!ref) throw new Error(`no digest for ${target} after push (RepoDigests: ${repoDigests.trim()})`);
  return ref.trim();
}
