// The app configuration every source (berth.yml, appliku.yml, Procfile, detection) is normalised
// into: the deploy only ever sees this shape.

export type LanguageKind = 'python' | 'node' | 'ruby';
export type BuildImage =
  /** `from`: why this version ("from .nvmrc", "berth.yml build.image"); absent = the server's default. */
  | { kind: LanguageKind; version: string | null; from?: string }
  | { kind: 'dockerfile' }
  /** No build at all: a static site of plain files straight from the repository. */
  | { kind: 'none' };

export type ConfigSource = 'berth.yml' | 'appliku.yml' | 'Procfile' | 'detected';

export interface ProcessConfig {
  /** Shell command (run with /bin/sh -c); null = the image's own CMD (dockerfile builds only). */
  command: string | null;
  scale: number;
  /** Memory cap in bytes (berth.yml `memory:`); absent = none. */
  memory?: number;
  /** CPU cap (berth.yml `cpus:`); absent = none. */
  cpus?: number;
}

export interface AppConfig {
  /** Where the configuration came from (the first file found). */
  source: ConfigSource;
  build: {
    image: BuildImage;
    /** Runs inside the image after dependencies and code are in, with the app's env. */
    command: string | null;
    /** Repo-relative path of the Dockerfile (dockerfile builds). */
    dockerfile: string;
    /** Repo-relative build context directory. */
    context: string;
    /** A static site: the directory (in the image, relative to its working dir, or absolute) nginx serves. */
    static: string | null;
    /** The port the web process listens on ($PORT); null = the image's EXPOSE, else 8000. */
    port: number | null;
    /** Caps of the build (image build, build command, release command); null = the server's default (BERTH_BUILD_MEMORY / _CPUS). */
    memory: number | null;
    cpus: number | null;
  };
  release: string | null;
  processes: Record<string, ProcessConfig>;
  /**
   * HTTP check of every new web container: GET `path` with the app's Host header must answer 2xx/3xx
   * within `timeoutS` (the whole budget), probing every `intervalS` (default BERTH_HEALTH_INTERVAL_MS),
   * failing early after `attempts` failed probes when set.
   */
  healthcheck: { path: string; timeoutS: number; intervalS?: number; attempts?: number } | null;
  /** Scheduled one-off runs of the current release; `timeoutS` defaults to DEFAULT_CRON_TIMEOUT_S. */
  cron: Record<string, CronJobConfig>;
  /** Named Docker volumes (berth-APP_NAME) mounted at `target` in every process, release and cron container. */
  volumes: Record<string, { target: string }>;
  /** Things the loader inferred or ignored, shown in the deploy log. */
  notes: string[];
}

export interface CronJobConfig {
  /** Standard 5-field cron expression (a leading seconds field is refused). */
  schedule: string;
  command: string;
  /** IANA time zone the schedule is read in; null = the server's. */
  timezone: string | null;
  /** A run still going after this many seconds is killed and recorded as timed out. */
  timeoutS: number;
}

export const DEFAULT_CRON_TIMEOUT_S = 3600;

/** The app's config in its repository is invalid (the message names the file and key): a deploy failure, not a bug. */
export class AppConfigError extends Error {
  override name = 'AppConfigError';
}

export const DEFAULT_PORT = 8000;
