// One deploy while it runs: its order, its log, the phase it is in, the deadline of each phase, and
// what a failure must undo. The phases (fetch-phase.ts … switch-phase.ts) read and fill it in.
import type Docker from 'dockerode';
import type { BuiltImage } from '../../shared/cluster-build.js';
import type { DeployStatus } from '../../shared/deploy-status.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMessage, DeployOrder } from '../../shared/protocol.js';
import { makeMasker } from '../../shared/secret-mask.js';
import type { AppSpec, ClusterSpec, ScaleOverride } from '../../shared/spec.js';
import type { AppSite } from '../nginx/index.js';
import type { StartedContainer } from '../docker/containers.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore, DeployPatch, Release } from '../store/index.js';
import { withDeadline, type PhaseLimit } from './deadline.js';
import { DeployLogStream } from './log-stream.js';
import { recordTransition } from './transition.js';

/** The part of Nginx a deploy needs. */
export interface NginxApplier {
  applyApp(app: string, site: AppSite | null): Promise<void>;
}

export interface RunnerDeps {
  docker: Docker;
  nginx: NginxApplier;
  store: AgentStore;
  settings: AgentSettings;
  logger: Logger;
  send: (msg: AgentMessage) => void;
  /** The app's domains now (from the latest desired state), falling back to the order's snapshot. */
  domainsFor: (app: AppSpec) => string[];
  /** This server's place in a cluster now (from the latest desired state); absent: standalone only. */
  cluster?: () => ClusterSpec | undefined;
}

/** The tag of the image a deploy builds. */
export function imageTag(app: string, deploymentId: string): string {
  return `berth/${app}:${deploymentId}`;
}

/** Slack on top of a phase's own budget (a one-off's timeout, the health budget) for cleaning up. */
const PHASE_SLACK_MS = 30_000;

/** A signal that never aborts: for work a cancel must not interrupt halfway (the switch). */
export const NEVER = new AbortController().signal;

export class DeployRun {
  readonly id: string;
  readonly app: string;
  readonly log: Logger;
  readonly stream: DeployLogStream;
  /** The phase the journal has the deploy in. */
  phase: DeployStatus;
  /** The commit being deployed, once known (the order's, then the fetched one). */
  commit: string | undefined;
  /** Issue 16: the commit's subject line and the repo's `scale:`, once known; sent with every progress report. */
  commitMessage: string | undefined;
  repoScale: ScaleOverride | undefined;
  /** A build-only order on a cluster's builder: the pushed image, reported with `done`. */
  built: BuiltImage | undefined;
  /** The env the release runs with (orders journaled before env existed carry none). */
  env: Record<string, string>;
  /** Hides the env's values in everything written to the deploy log and in reasons. */
  mask: (text: string) => string;
  /** The health gate's budget: the health_checking deadline derives from it (set from the config). */
  healthBudgetMs: number;

  // What a failure must undo.
  /** Containers started so far. */
  readonly started: StartedContainer[] = [];
  /** A static site's published release directory. */
  staticRoot: string | null = null;
  /** Once the switch recorded this release as current: what to put back if the switch fails. */
  readonly switched: { previous: Release | null; activated: boolean } = { previous: null, activated: false };

  constructor(
    readonly deps: RunnerDeps,
    readonly order: DeployOrder,
    /** Aborted when the deploy is cancelled or the agent stops. */
    readonly signal: AbortSignal,
  ) {
    const { store, settings } = deps;
    this.id = order.deploymentId;
    this.app = order.app.name;
    this.log = deps.logger.child({ deploymentId: this.id, app: this.app });
    const record = store.deploys.get(this.id);
    if (!record) throw new Error(`deploy ${this.id} is not in the journal`);
    this.phase = record.status;
    this.commit = record.commit ?? order.commit;
    this.env = order.app.env ?? {};
    this.mask = makeMasker(this.env);
    this.healthBudgetMs = settings.healthTimeoutMs + settings.healthStableMs;
    this.stream = new DeployLogStream(
      this.id,
      record.logSeq,
      deps.send,
      (next) => store.deploys.setLogSeq(this.id, next),
      (err) => this.log.warn({ err }, 'could not send deploy log lines'),
    );
    this.stream.setMask(this.mask);
  }

  /** A rollback runs with the env its release was deployed with: mask those values too. */
  useEnv(env: Record<string, string>): void {
    if (env === this.env) return;
    this.env = env;
    this.mask = makeMasker({ ...(this.order.app.env ?? {}), ...env });
    this.stream.setMask(this.mask);
  }

  /** Enter `status`: journaled with its deadline, reported and logged (recordTransition). */
  transition(status: DeployStatus, patch: DeployPatch = {}): void {
    this.stream.flush(); // the log lines of a phase reach the control plane before its end
    const limit = this.limit(status);
    recordTransition(this.deps, this.id, status, {
      // The commit as far as it is known: a deploy that ends while fetching still reports what it fetched.
      ...(this.commit ? { commit: this.commit } : {}),
      ...patch,
      deadlineAt: limit ? new Date(Date.now() + limit.ms).toISOString() : null,
    }, {
      ...(this.commitMessage ? { commitMessage: this.commitMessage } : {}),
      ...(this.repoScale ? { repoScale: this.repoScale } : {}),
      ...(this.built && status === 'done' ? { built: this.built } : {}),
    });
    this.phase = status;
  }

  /** Enter `status` and run its work under the phase's deadline (aborted too when `parent` aborts). */
  runPhase<T>(status: DeployStatus, patch: DeployPatch, work: (signal: AbortSignal) => Promise<T>, parent: AbortSignal = this.signal): Promise<T> {
    this.transition(status, patch);
    return withDeadline(this.limit(status)!, parent, work);
  }

  /** Each phase's deadline and the setting that configures it; null for states without one. */
  private limit(status: DeployStatus): PhaseLimit | null {
    const s = this.deps.settings;
    switch (status) {
      case 'fetching':
        return { phase: status, ms: s.fetchTimeoutMs, setting: 'BERTH_FETCH_TIMEOUT_S' };
      case 'building':
        return { phase: status, ms: s.buildTimeoutMs, setting: 'BERTH_BUILD_TIMEOUT_S' };
      case 'releasing':
        return { phase: status, ms: s.releaseTimeoutMs + PHASE_SLACK_MS, setting: 'BERTH_RELEASE_TIMEOUT_S' };
      case 'starting':
        return { phase: status, ms: s.startTimeoutMs, setting: 'BERTH_START_TIMEOUT_S' };
      case 'health_checking':
        return { phase: status, ms: this.healthBudgetMs + PHASE_SLACK_MS, setting: 'healthcheck.timeout in berth.yml, or BERTH_HEALTH_TIMEOUT_MS' };
      case 'switching':
        return { phase: status, ms: s.switchTimeoutMs, setting: 'BERTH_SWITCH_TIMEOUT_S' };
      default:
        return null;
    }
  }
}
