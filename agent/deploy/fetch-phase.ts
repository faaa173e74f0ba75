// The fetching phase of a deploy: the commit from Git (with the app's deploy key), the push guard,
// the checkout, and the app config read before anything is built.
import { join } from 'node:path';
import { appRoot, loadAppConfig, type AppConfig } from '../config/index.js';
import { writeDeployKey } from '../build/deploy-key.js';
import { checkoutTo, fetchSource } from '../build/git.js';
import { readCommitSubject, repoScaleOf, skipUnlessWatchedChange } from './commit-info.js';
import type { DeployRun } from './deploy-run.js';
import { refuseOlderThanLive } from './push-guard.js';

export interface Fetched {
  commit: string;
  config: AppConfig;
}

/** fetching: `buildDir` holds the commit's checkout afterwards. */
export function fetchPhase(run: DeployRun, buildDir: string): Promise<Fetched> {
  const { order, app, stream } = run;
  const { settings, store } = run.deps;
  const cacheDir = join(settings.dataDir, 'git', app);
  const say = (l: string) => stream.system(l);
  return run.runPhase('fetching', {}, async (signal) => {
    say(`fetching ${order.app.repo} (branch ${order.app.branch}${order.commit ? `, commit ${order.commit}` : ''})`);
    const deployKey = order.app.deployKey ? writeDeployKey(settings.dataDir, app, order.app.deployKey, order.app.knownHosts) : undefined;
    if (deployKey) say(`using the app's deploy key ${deployKey.fingerprint}`);
    const fetched = await fetchSource({ cacheDir, repo: order.app.repo, branch: order.app.branch, commit: order.commit, log: say, signal, ...(deployKey ? { deployKey } : {}) });
    run.commit = fetched.commit;
    run.commitMessage = (await readCommitSubject(cacheDir, fetched.commit, signal)) ?? undefined;
    if (order.skipIfAncestorOfLive) {
      await refuseOlderThanLive({ cacheDir, commit: fetched.commit, live: store.releases.get(app), log: say, signal });
    }
    if (order.watch && order.watch.length > 0) {
      await skipUnlessWatchedChange({ cacheDir, commit: fetched.commit, globs: order.watch, live: store.releases.get(app), log: say, signal });
    }
    say(`deploying commit ${fetched.commit}${run.commitMessage ? ` "${run.commitMessage}"` : ''}`);
    await checkoutTo({ cacheDir, commit: fetched.commit, dest: buildDir });
    // The config is read before anything is built: a bad key fails the deploy here, named.
    const config = loadAppConfig(appRoot(buildDir, order.app.rootDir, say));
    describeConfig(config, say);
    run.repoScale = repoScaleOf(config);
    return { commit: fetched.commit, config };
  });
}

/** One summary of what the config says, plus whatever the loader inferred. */
function describeConfig(config: AppConfig, log: (line: string) => void): void {
  const img = config.build.image;
  const image = img.kind === 'dockerfile' ? `dockerfile ${config.build.dockerfile}` : img.kind === 'none' ? 'none (plain static files)' : `${img.kind}${img.version ? `-${img.version}` : ''}`;
  const procs = Object.entries(config.processes)
    .map(([n, p]) => `${n}${p.scale !== 1 ? `×${p.scale}` : ''}`)
    .join(', ');
  log(
    `config from ${config.source}: build image ${image}${config.build.static ? `, static site ${config.build.static}` : ''}${procs ? `, processes ${procs}` : ''}${config.release ? ', release command' : ''}`,
  );
  for (const note of config.notes) log(note);
  const jobs = Object.entries(config.cron);
  if (jobs.length > 0) log(`cron jobs (scheduled once this release is live): ${jobs.map(([name, j]) => `${name} "${j.schedule}"${j.timezone ? ` ${j.timezone}` : ''}`).join(', ')}`);
  const volumes = Object.entries(config.volumes);
  if (volumes.length > 0) log(`volumes (kept across deploys): ${volumes.map(([name, v]) => `${name} → ${v.target}`).join(', ')}`);
}
