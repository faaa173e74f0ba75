// Python packages without PyPI (unreachable here): a real package index on the host, in PEP 503
// "simple" layout, serving one wheel built by pip from a tiny source tree; and the image the
// python tests build on — berth's test runtime plus Debian's Poetry and Pipenv, with Debian's
// EXTERNALLY-MANAGED marker removed so it installs into the system interpreter as the official
// python images do. Lockfiles are made by the real tools in that image, against this index.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { ensureDocker, imageExists } from './docker.js';
import { execFileP } from './debian-image.js';
import { ensureRuntimeImage } from './runtime-image.js';
import { makeTmpDir } from './tmp.js';

export const PYTHON_TOOLS_IMAGE = 'berth-test/python-tools:bookworm';

/** The runtime image with python3-poetry and pipenv from Debian (built once, ~2 min). */
export async function ensurePythonToolsImage(): Promise<string> {
  const docker = await ensureDocker();
  if (await imageExists(docker, PYTHON_TOOLS_IMAGE)) return PYTHON_TOOLS_IMAGE;
  const runtime = await ensureRuntimeImage();
  const dir = makeTmpDir('python-tools');
  writeFileSync(
    join(dir, 'Dockerfile'),
    `FROM ${runtime}\nRUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-poetry pipenv \\\n` +
      ` && rm -rf /var/lib/apt/lists/* && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED\nLABEL berth.test=base\n`,
  );
  await execFileP('docker', ['build', '-q', '-t', PYTHON_TOOLS_IMAGE, dir], { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 });
  return PYTHON_TOOLS_IMAGE;
}

/** `docker run` the tools image on `dir` (mounted at /app) — e.g. `poetry lock` — and return its output. */
export async function runPythonTool(dir: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await execFileP('docker', ['run', '--rm', '-v', `${dir}:/app`, '-w', '/app', PYTHON_TOOLS_IMAGE, ...args], {
    timeout: 5 * 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout + stderr;
}

export interface PythonIndex {
  /** The simple index as build containers reach it: http://BRIDGE_GATEWAY:PORT/simple/ */
  url: string;
  /** host:port (pip wants it as a trusted host: plain HTTP). */
  host: string;
  /** Requests served, by path. */
  requests: string[];
  close(): Promise<void>;
}

/** Build `berthdemo` 1.0.0 (module berthdemo, GREETING) with pip and serve it on every interface. */
export async function startPythonIndex(): Promise<PythonIndex> {
  const dir = makeTmpDir('berthdemo');
  mkdirSync(join(dir, 'src', 'berthdemo'), { recursive: true });
  mkdirSync(join(dir, 'out'));
  writeFileSync(join(dir, 'src', 'berthdemo', '__init__.py'), 'GREETING = "hello from berthdemo 1.0.0"\n');
  writeFileSync(join(dir, 'src', 'pyproject.toml'), '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n[project]\nname = "berthdemo"\nversion = "1.0.0"\n');
  await runPythonTool(dir, ['python3', '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-w', '/app/out', '/app/src']);
  const wheelName = 'berthdemo-1.0.0-py3-none-any.whl';
  const wheel = readFileSync(join(dir, 'out', wheelName));
  const sha = createHash('sha256').update(wheel).digest('hex');
  const page = `<!DOCTYPE html><html><body><a href="/files/${wheelName}#sha256=${sha}">${wheelName}</a></body></html>\n`;
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push(path);
    if (path === '/simple/berthdemo/' || path === '/simple/berthdemo') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    } else if (path === `/files/${wheelName}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': wheel.length }).end(wheel);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '0.0.0.0', () => resolve()));
  const port = (server.address() as { port: number }).port;
  const { stdout } = await execFileP('docker', ['network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Gateway}}']);
  const host = `${stdout.trim()}:${port}`;
  return { url: `http://${host}/simple/`, host, requests, close: () => new Promise((r) => server.close(() => r())) };
}
