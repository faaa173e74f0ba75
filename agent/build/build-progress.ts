// The image build's progress stream, read into log lines and an outcome. A failing RUN does not
// reject dockerode's buildImage — its error only arrives in this stream — so the stream is the
// source of truth for success: an error in it, or an end without an image id, is a failed build.
import { outOfMemory, type ResourceLimits } from '../docker/limits.js';

export class BuildError extends Error {
  override name = 'BuildError';
}

/** One JSON message of the engine's build progress stream. */
export interface ProgressEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: { ID?: string };
}

/** What the stream said, once it has ended. */
export interface BuildReport {
  /** The image id the engine announced (`aux.ID`). */
  imageId?: string;
  /** The first error the stream carried. */
  failure?: string;
  /** Old engines only print "Successfully built <short id>". */
  successfullyBuilt?: string;
}

/**
 * Turns progress events into whole output lines for `log` (the engine splits lines across
 * messages and ends some with \r) and remembers the image id and the first error.
 */
export class BuildProgress {
  private readonly report: BuildReport = {};
  private partial = '';

  constructor(private readonly log: (line: string) => void) {}

  event(ev: ProgressEvent): void {
    if (ev.stream) this.emitLines(ev.stream, false);
    else if (ev.status && !ev.progress) this.log(ev.id ? `${ev.id}: ${ev.status}` : ev.status);
    if (ev.aux?.ID) this.report.imageId = ev.aux.ID;
    if (ev.error || ev.errorDetail) {
      const message = (ev.errorDetail?.message ?? ev.error ?? 'unknown error').trim();
      this.report.failure ??= message;
      this.emitLines('', true);
      this.log(`ERROR: ${message}`);
    }
  }

  /** The stream ended: flush the last unterminated line. */
  end(): BuildReport {
    this.emitLines('', true);
    return { ...this.report };
  }

  private emitLines(text: string, flush: boolean): void {
    this.partial += text;
    const parts = this.partial.split('\n');
    this.partial = flush ? '' : (parts.pop() ?? '');
    for (const p of parts) {
      const line = p.replace(/\r+$/, '');
      if (!line.trim()) continue;
      const built = /^Successfully built ([0-9a-f]+)$/.exec(line.trim());
      if (built) this.report.successfullyBuilt = built[1];
      this.log(line);
    }
  }
}

/**
 * The built image's id, or a BuildError. `taggedImageId` is what the build's tag points at now
 * (asked only when the stream named no id): old engines report the id only as "Successfully built
 * <short id>", so the tag is trusted only when it points at that image, never at a stale one from
 * an earlier build.
 */
export function buildOutcome(report: BuildReport, limits: ResourceLimits | undefined, taggedImageId: string | null = null): string {
  const { failure, successfullyBuilt } = report;
  if (failure) {
    // A step killed by SIGKILL under a memory cap: the kernel's OOM killer (nothing else kills a build step).
    if (limits?.memory && /returned a non-zero code: 137\b/.test(failure)) {
      throw new BuildError(`${outOfMemory(limits.memory)}: a build step was killed at the build's memory cap (raise build.memory in berth.yml or BERTH_BUILD_MEMORY): ${failure}`);
    }
    throw new BuildError(`build failed: ${failure}`);
  }
  if (report.imageId) return report.imageId;
  if (taggedImageId && successfullyBuilt && taggedImageId.replace(/^sha256:/, '').startsWith(successfullyBuilt)) return taggedImageId;
  throw new BuildError('build ended without producing an image (the build output stream stopped early)');
}
