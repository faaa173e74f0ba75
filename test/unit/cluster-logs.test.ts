// `berth logs` of a cluster app (agent/cluster/deploy/service-logs.ts): Swarm service logs read with
// timestamps and details, each line labelled with its task and node, a whole read grouped per task.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { parseServiceLine, serveServiceLogs } from '../../agent/cluster/deploy/service-logs.js';
import { LogsResponse } from '../../agent/docker/logs-response.js';
import type { AgentMessage, LogsRequest, RuntimeLogLine } from '../../shared/protocol.js';

/** One frame of Docker's multiplexed output. */
function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}
const details = (node: string, service: string, task: string) => `com.docker.swarm.node.id=${node},com.docker.swarm.service.id=${service},com.docker.swarm.task.id=${task}`;
const at = (s: number) => `2026-01-01T00:00:0${s}.000000000Z`;

describe('cluster logs: a service log line', () => {
  it('splits the timestamp and the task/node details off the text', () => {
    assert.deepEqual(parseServiceLine(`${at(1)} ${details('n1', 's1', 't1')} hello world`), { ts: at(1), taskId: 't1', nodeId: 'n1', text: 'hello world' });
    // Query-escaped values; an empty message.
    assert.deepEqual(parseServiceLine(`${at(2)} com.docker.swarm.node.id=n%2F1,com.docker.swarm.task.id=t+2 `), { ts: at(2), taskId: 't 2', nodeId: 'n/1', text: '' });
    // Without details (an older engine): the text as it is.
    assert.deepEqual(parseServiceLine(`${at(3)} plain text`), { ts: at(3), text: 'plain text' });
    // Text that merely looks like details later in the line is the app's.
    assert.deepEqual(parseServiceLine(`${at(4)} ${details('n1', 's1', 't1')} x com.docker.swarm.task.id=evil`).text, 'x com.docker.swarm.task.id=evil');
  });
});

describe('cluster logs: serving a request', () => {
  function setup(follow: boolean) {
    const sent: AgentMessage[] = [];
    const req: LogsRequest = { type: 'logs_request', v: 1, requestId: 'req12345', app: 'shop', tail: 100, follow };
    const res = new LogsResponse(req, (m) => sent.push(m), () => undefined);
    const streams = new Map<string, PassThrough>();
    const services = [
      { ID: 'sw', Spec: { Name: 'berth-shop-worker-d1', Labels: { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'worker', 'berth.release': 'd1' } } },
      { ID: 'sx', Spec: { Name: 'berth-shop-web-d0', Labels: { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'web', 'berth.release': 'd0' } } },
      { ID: 'sa', Spec: { Name: 'berth-shop-web-d1', Labels: { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'web', 'berth.release': 'd1' } } },
    ];
    const logs: Record<string, Buffer> = {
      sa: Buffer.concat([
        frame(1, `${at(2)} ${details('n2', 'sa', 'ta2')} web two starts\n`),
        frame(1, `${at(1)} ${details('n1', 'sa', 'ta1')} web one starts\n`),
        frame(2, `${at(3)} ${details('n1', 'sa', 'ta1')} web one warns\n`),
        // A task the listing did not have (rescheduled meanwhile): inspected once.
        frame(1, `${at(4)} ${details('n3', 'sa', 'ta3')} web three\n`),
      ]),
      sw: frame(1, `${at(5)} ${details('n2', 'sw', 'tw1')} worker runs\n`),
    };
    const inspected: string[] = [];
    const docker = {
      listServices: async () => services,
      listTasks: async () => [
        { ID: 'ta1', ServiceID: 'sa', NodeID: 'n1', Slot: 1 },
        { ID: 'ta2', ServiceID: 'sa', NodeID: 'n2', Slot: 2 },
        { ID: 'tw1', ServiceID: 'sw', NodeID: 'n2', Slot: 1 },
      ],
      listNodes: async () => [
        { ID: 'n1', Description: { Hostname: 'host-1' }, Spec: { Labels: { 'berth.server': 'web1' } } },
        { ID: 'n2', Description: { Hostname: 'host-2' } },
        { ID: 'n3', Description: { Hostname: 'host-3' } },
      ],
      getTask: (id: string) => ({ inspect: async () => (inspected.push(id), { ID: id, ServiceID: 'sa', NodeID: 'n3', Slot: 3 }) }),
      getService: (id: string) => ({
        logs: async (o: { follow: boolean; details: boolean; timestamps: boolean }) => {
          assert.ok(o.details && o.timestamps, 'details and timestamps are asked for');
          if (!o.follow) return logs[id];
          const s = new PassThrough();
          streams.set(id, s);
          return s;
        },
      }),
    };
    const lines = () => sent.flatMap((m) => (m.type === 'logs_data' ? m.lines : []));
    const end = () => sent.find((m) => m.type === 'logs_end');
    return { docker: docker as never, req, res, lines, end, streams, logs, inspected };
  }
  const label = (l: RuntimeLogLine) => `${l.process}.${l.replica ?? '?'}@${l.node ?? '?'} ${l.stream} ${l.text}`;

  it("a whole read: only the live release's services, grouped by process and task, each line with its node", async () => {
    const { docker, req, res, lines, end, inspected } = setup(false);
    await serveServiceLogs(docker, req, res, 'd1');
    await new Promise((r) => setTimeout(r, 150)); // the last batch
    assert.deepEqual(lines().map(label), [
      'web.1@web1 stdout web one starts',
      'web.1@web1 stderr web one warns',
      'web.2@host-2 stdout web two starts',
      'web.3@host-3 stdout web three',
      'worker.1@host-2 stdout worker runs',
    ]);
    assert.deepEqual(lines()[0], { process: 'web', replica: 1, container: 'berth-shop-web-d1.1', node: 'web1', stream: 'stdout', ts: at(1), text: 'web one starts' });
    assert.deepEqual(inspected, ['ta3']);
    assert.deepEqual(end(), { type: 'logs_end', v: 1, requestId: 'req12345' });
  });

  it('--process and an app not deployed yet say why nothing is shown', async () => {
    const a = setup(false);
    await serveServiceLogs(a.docker, { ...a.req, process: 'cron' }, a.res, 'd1');
    assert.match((a.end() as { error?: string }).error ?? '', /no "cron" service in its live release \(processes: web, worker\)/);
    const b = setup(false);
    await serveServiceLogs(b.docker, b.req, b.res, null);
    assert.match((b.end() as { error?: string }).error ?? '', /has not been deployed to its cluster yet/);
  });

  it('following: lines as they come from every service, the request ends when every stream has', async () => {
    const { docker, req, res, lines, end, streams } = setup(true);
    await serveServiceLogs(docker, { ...req, process: 'web' }, res, 'd1');
    assert.deepEqual([...streams.keys()], ['sa']);
    streams.get('sa')!.write(frame(1, `${at(1)} ${details('n1', 'sa', 'ta1')} first\n`));
    streams.get('sa')!.write(frame(1, `${at(2)} ${details('n3', 'sa', 'ta9')} from a new task\n`));
    streams.get('sa')!.end();
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(lines().map(label), ['web.1@web1 stdout first', 'web.3@host-3 stdout from a new task']);
    assert.ok(end(), 'ended with the last stream');
  });
});
