// Volumes of an app built with berth's own build images are writable by the app user (uid 10001),
// end to end: a Procfile python app whose release command and web process append to files on its
// volumes. One volume is new; the other already exists empty and root-owned, as a deploy of an
// earlier berth left it. Both must take the app user's writes, deploy after deploy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { berth, berthJson } from './helpers/cli.js';
import { ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import { ensureRuntimeImage } from './helpers/runtime-image.js';
import { Stack } from './helpers/stack.js';

const APP = `volown${process.pid}`;
const DOMAIN = `${APP}.volumes.test`;

// The release appends "uid version" to /data/release.log; web appends to /srv/media/web.log at start and serves /.
const RELEASE_PY = `import os
with open('/data/release.log', 'a') as f:
    f.write(f"{os.getuid()} {open('version').read().strip()}\\n")
`;
const WEB_PY = `import http.server, os
with open('/srv/media/web.log', 'a') as f:
    f.write(f"{os.getuid()}\\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = {'/release.log': '/data/release.log', '/web.log': '/srv/media/web.log'}.get(self.path)
        body = open(path, 'rb').read() if path else b'ok'
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`;
const BERTH_YML = `volumes:
  data: { target: /data }
  media: { target: /srv/media }
`;

describe('volumes of berth-built apps are writable by the app user', () => {
  let stack: Stack;
  let repo: TestRepo;
  let docker: Docker;

  const deploy = async () => {
    const res = await berth(['deploy', APP, '--wait', '--json'], stack.env);
    assert.equal(res.code, 0, `deploy failed:\n${res.stdout}\n${res.stderr}\n${stack.tail('agent.log', 30)}`);
  };
  const served = async (path: string) => (await httpGet(stack.httpPort, DOMAIN, path)).body;

  before(async () => {
    docker = await ensureDocker();
    const runtime = await ensureRuntimeImage();
    stack = await Stack.create('volown', { agentEnv: { BERTH_BASE_IMAGE_PYTHON: runtime } });
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({
      'requirements.txt': '',
      'release.py': RELEASE_PY,
      'web.py': WEB_PY,
      version: 'v1\n',
      Procfile: 'web: python3 web.py\nrelease: python3 release.py\n',
      'berth.yml': BERTH_YML,
    });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    // What an earlier berth left after a failed deploy: the volume exists, empty and owned by root.
    await docker.createVolume({
      Name: `berth-${APP}_media`,
      Labels: { 'berth.managed': 'true', 'berth.app': APP, 'berth.volume': 'media', 'berth.server': stack.serverName },
    });
  });

  after(async () => {
    await stack?.destroy();
    const left = (await docker.listVolumes({ filters: JSON.stringify({ label: [`berth.server=${stack.serverName}`] }) })) as { Volumes?: Array<{ Name: string }> | null };
    for (const v of left.Volumes ?? []) await docker.getVolume(v.Name).remove().catch(() => {});
  });

  it('the release command (as uid 10001) writes to a new volume; the web process to a root-owned empty one', async () => {
    await deploy();
    assert.equal(await served('/release.log'), '10001 v1\n', 'the release ran as the app user and could write');
    assert.equal(await served('/web.log'), '10001\n', 'the web process ran as the app user and could write');
  });

  it('a second deploy appends to the same files', async () => {
    repo.commit({ version: 'v2\n' });
    await deploy();
    assert.equal(await served('/release.log'), '10001 v1\n10001 v2\n');
    assert.equal(await served('/web.log'), '10001\n10001\n');
  });
});
