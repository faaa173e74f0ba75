#!/usr/bin/env node
// The `berth` executable: one binary for the control plane, the agent and the client.
import { Command, CommanderError } from 'commander';
import { BERTH_VERSION } from '../shared/version.js';
import { tty } from './terminal-safe.js';
import { registerDaemonCommands } from './commands/daemons.js';
import { registerStatusCommand } from './commands/status.js';
import { registerUpgradeCommand } from './commands/upgrade.js';
import { registerLogsCommand } from './commands/logs.js';
import { registerCronCommands } from './commands/cron.js';
import { registerClusterCommands } from './commands/cluster.js';
import { registerDeployCommands } from './commands/deploy.js';
import { registerEnvCommands } from './commands/env.js';
import { registerNotifyCommands } from './commands/notify.js';
import { registerScaleCommand } from './commands/scale.js';
import { registerAppCommands, registerDomainCommands, registerServerCommands } from './commands/resources.js';
import { oneLine } from '../shared/util/index.js';

const program = new Command();
program
  .name('berth')
  .description('Self-hosted deploys: push to Git, berth builds, releases and routes traffic through Nginx.\n\nClient commands read BERTH_URL and BERTH_TOKEN, or the file written by `berth login`.')
  .version(BERTH_VERSION)
  .showSuggestionAfterError()
  .enablePositionalOptions()
  .exitOverride();

registerDaemonCommands(program);
registerServerCommands(program);
registerAppCommands(program);
registerDomainCommands(program);
registerEnvCommands(program);
registerDeployCommands(program);
registerScaleCommand(program);
registerLogsCommand(program);
registerCronCommands(program);
registerStatusCommand(program);
registerUpgradeCommand(program);
registerNotifyCommands(program);
registerClusterCommands(program);

/** Every failure becomes one clear line on stderr and a non-zero exit code. */
function fail(err: unknown): never {
  // Error messages can quote what an agent or a repo said (a deploy's reason): sanitised like all output.
  process.stderr.write(tty`berth: ${oneLine(err, 2000)}\n`);
  if (process.env.BERTH_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  process.exit(1);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed its own message (usage errors, --help, --version).
    process.exit(err.exitCode);
  }
  fail(err);
}
