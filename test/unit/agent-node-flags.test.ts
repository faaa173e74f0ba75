// The agent's Node flags (docs/benchmarks.md, "Agent memory") are set in two places: berth-agent.service
// and install.sh's background start for machines without systemd. They must be the same flags, and
// a node of this version must accept them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { installerAgentNodeFlags, unitAgentNodeFlags } from '../helpers/agent-node-flags.js';

describe('agent Node flags', () => {
  it('the systemd unit and install.sh start the agent with the same flags', () => {
    const unit = unitAgentNodeFlags();
    assert.ok(unit.length > 0, 'the unit sets no flags');
    assert.deepEqual(installerAgentNodeFlags(), unit);
  });

  it('node accepts them', () => {
    const r = spawnSync(process.execPath, [...unitAgentNodeFlags(), '-e', 'process.exit(0)'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  it('reads the flags it is given (a different flag set is told apart)', () => {
    const unit = 'ExecStart=/opt/berth/bin/node --a=1 --b /opt/berth/current/dist/cli/main.js agent\n';
    assert.deepEqual(unitAgentNodeFlags(unit), ['--a=1', '--b']);
    assert.deepEqual(installerAgentNodeFlags('    [ "$name" != agent ] || node_flags="--a=1"\n'), ['--a=1']);
  });
});
