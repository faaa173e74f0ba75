// `berth status` on a server: asks the running agent over its Unix socket; when the agent is
// stopped, reads its SQLite and Docker directly and says that it is stopped.
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Command } from 'commander';
import { formatMemory } from '../../agent/docker/limits.js';
import type { ProcessStatus, StatusReport } from '../../agent/status/report.js';
import { BERTH_VERSION } from '../../shared/version.js';
import { CliError } from '../errors.js';
import { output } from '../output.js';
import { terminalSafe } from '../terminal-safe.js';

function askAgent(socketPath: string): Promise<StatusReport | null> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/status', method: 'GET', timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new CliError(`the agent could not build its status: ${body.slice(0, 200)}`));
        resolve(JSON.parse(body) as StatusReport);
      });
    });
    req.on('timeout', () => req.destroy(new CliError('the agent did not answer on its status socket within 10 s')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // No socket, or a stale one of a killed agent: the agent is not running.
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(err instanceof CliError ? err : new CliError(`cannot reach the agent's status socket ${socketPath}: ${err.code ?? err.message}`));
    });
    req.end();
  });
}

const ago = (iso: string | null, now = Date.now()) => {
  if (!iso) return '-';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  const text = Math.abs(s) < 90 ? `${Math.abs(s)} s` : Math.abs(s) < 5400 ? `${Math.round(Math.abs(s) / 60)} min` : Math.abs(s) < 172_800 ? `${Math.round(Math.abs(s) / 3600)} h` : `${Math.round(Math.abs(s) / 86_400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
};

/** "  OOM-killed (limit 64 MB) 5 s ago, 3 restarts": what the restart policy hides (older agents: nothing). */
function processTrouble(p: ProcessStatus): string {
  const parts: string[] = [];
  if (p.oomKilled) parts.push(`OOM-killed (${p.memoryLimit ? `limit ${formatMemory(p.memoryLimit)}` : 'no memory cap'}) ${ago(p.lastOomKillAt)}`);
  if (p.restartCount) parts.push(`${p.restartCount} restart${p.restartCount === 1 ? '' : 's'}`);
  return parts.length ? `  ${parts.join(', ')}` : '';
}

/** Issue 15: the node's role and the swarm's health; on a manager every node (older agents: nothing). */
function printCluster(r: StatusReport, w: (line?: string) => void): void {
  const c = r.cluster;
  if (!c) return;
  const managers = c.managers !== null ? `, ${c.managers} manager${c.managers === 1 ? '' : 's'}` : '';
  w(`cluster        ${c.name}: ${c.role}, swarm ${c.swarmState} [${c.health}]${managers}${c.swarmError ? ` (${c.swarmError})` : ''}`);
  for (const n of c.nodes ?? []) {
    const reach = n.role === 'manager' ? ` ${n.managerReachability}` : '';
    w(`  node        ${n.hostname} ${n.role}${reach} ${n.state} ${n.availability} ${n.addr}, ${n.runningTasks} tasks${n.leader ? ' (leader)' : ''}`);
  }
}

/** A cluster app's process: the nodes its tasks are on. */
function onNodes(p: StatusReport['apps'][number]['processes'][number]): string {
  const nodes = [...new Set(p.containers.flatMap((c) => (c.node ? [c.node] : [])))].sort();
  return nodes.length ? ` on ${nodes.join(', ')}` : '';
}

function printHuman(r: StatusReport): void {
  // The report carries text from repos and apps (reasons, cron commands, errors): one sanitised line each.
  const w = (line = '') => process.stdout.write(terminalSafe(line) + '\n');
  const a = r.agent;
  w(`agent          ${a.running ? `running (pid ${a.pid}, up ${ago(a.startedAt).replace(' ago', '')}, v${a.version})` : 'STOPPED — apps keep serving; start it with `berth agent`'}`);
  w(`server         ${a.server || '(not joined)'}   data ${a.dataDir}`);
  const cp = r.controlPlane;
  const cpState =
    cp.state === 'connected'
      ? `connected since ${ago(cp.connectedSince)}${cp.acceptedAt ? '' : ' (not accepted yet)'}`
      : cp.state === 'agent-stopped'
        ? 'unknown (agent stopped)'
        : `${cp.state}${cp.lastError ? ` (${cp.lastError})` : ''}${cp.nextRetryAt ? `, next retry ${ago(cp.nextRetryAt)}` : ''}`;
  w(`control plane  ${cp.url ?? '-'}: ${cpState}${cp.lastSeenAt ? `, last seen ${ago(cp.lastSeenAt)}` : ''}${cp.pendingMessages ? `, ${cp.pendingMessages} messages waiting` : ''}`);
  if (r.desiredState) w(`desired state  revision ${r.desiredState.revision} (${r.desiredState.apps} apps), received ${ago(r.desiredState.receivedAt)}`);
  if (r.dockerError) w(`docker         ${r.dockerError}`);
  printCluster(r, w);
  w();
  for (const app of r.apps) {
    w(`${app.name}  [${app.health}]${app.domains.length ? `  ${app.domains.join(', ')}` : ''}${app.cluster ? `  (cluster ${app.cluster})` : ''}`);
    if (app.release) w(`  release     ${app.release.deploymentId} commit ${app.release.commit?.slice(0, 12) ?? '-'} activated ${ago(app.release.activatedAt)}${app.release.static ? ' (static, served from disk)' : ''}`);
    for (const p of app.processes) w(`  ${p.name.padEnd(11)} ${p.running}/${p.desired} running${onNodes(p)}${p.containers.some((c) => c.state !== 'running') ? `  (${p.containers.filter((c) => c.state !== 'running').map((c) => `${c.name}: ${c.state}`).join(', ')})` : ''}${processTrouble(p)}`);
    for (const c of app.certificates) {
      w(`  tls         ${c.state}${c.notAfter ? `, expires ${c.notAfter.slice(0, 10)} (${c.daysLeft} d)` : ''}${c.lastResult ? `, last renewal ${c.lastResult} ${ago(c.lastAttemptAt)}` : ''}${c.lastError ? `: ${c.lastError}` : ''}${c.nextAttemptAt ? `, next ${ago(c.nextAttemptAt)}` : ''}`);
    }
    for (const v of app.volumes ?? []) w(`  volume      ${v.name} at ${v.target}`);
    for (const j of app.cron ?? []) {
      const last = j.lastRun ? `last ${j.lastRun.status}${j.lastRun.exitCode !== null ? ` (exit ${j.lastRun.exitCode})` : ''} ${ago(j.lastRun.finishedAt ?? j.lastRun.startedAt)}` : 'never run';
      w(`  cron        ${j.name} "${j.schedule}"${j.timezone ? ` ${j.timezone}` : ''}: ${last}, next ${j.nextRunAt ? ago(j.nextRunAt) : '-'}`);
    }
    if (app.lastDeployment) {
      const d = app.lastDeployment;
      w(`  last deploy ${d.id} ${d.status} ${ago(d.finishedAt ?? d.createdAt)}${d.reason ? `: ${d.reason}` : ''}`);
    }
  }
  if (r.apps.length === 0) w('(no apps)');
  w();
  const rc = r.lastReconcile;
  w(`reconcile      ${rc ? `last pass ${ago(rc.finishedAt)}, ${rc.durationMs} ms, ${rc.actions.length} actions, ${rc.errors.length} errors${rc.errors.length ? `: ${rc.errors.join('; ')}` : ''}` : 'no pass recorded yet'}`);
  if (r.disk) w(`disk           ${r.disk.images} berth images, ${(r.disk.bytes / 1e6).toFixed(1)} MB`);
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description("on a server: the agent, its control plane connection, each app's processes and health, certificates, last deploy and reconcile")
    .option('--data <dir>', 'agent data directory (default: $BERTH_DATA or /var/lib/berth)')
    .option('--json', 'print JSON')
    .action(async (opts: { data?: string; json?: boolean }) => {
      const dataDir = opts.data ?? process.env.BERTH_DATA ?? '/var/lib/berth';
      let report = await askAgent(join(dataDir, 'agent.sock'));
      if (!report) {
        if (!existsSync(join(dataDir, 'agent.db'))) {
          throw new CliError(`no berth agent data in ${dataDir}: join this server first (\`berth agent join URL TOKEN\`), or pass --data`);
        }
        const { stoppedAgentStatus } = await import('../../agent/status/offline.js');
        report = await stoppedAgentStatus(dataDir, process.env.BERTH_DOCKER_SOCKET ?? '/var/run/docker.sock', BERTH_VERSION);
      }
      output(!!opts.json, report, printHuman);
    });
}
