// `berth scale`: the app's scale override (replicas per process, from the control plane) wins over
// the repo's `scale:` in every deploy — a build, a rollback, or a scale deployment, which brings the
// live release back at the new counts through the same start, health gate and switch (no rebuild).
// The release records the counts it ran with, so the reconciler keeps them (it never reads the repo's).
import type { ScaleOverride } from '../../shared/spec.js';
import type { ReleaseProcess } from '../store/index.js';

/** A scale deployment that cannot be applied to the live release (nothing was started). */
export class ScaleError extends Error {
  override name = 'ScaleError';
}

export interface ScaleOptions {
  /** A scale deployment: a process the override names must be in the release (else a clear failure). */
  rescale: boolean;
  /** A static site's release: it runs no processes. */
  staticSite: boolean;
  log: (line: string) => void;
}

/** The release's processes with the override applied; the repo's scale for the processes it does not name. */
export function applyScale(processes: readonly ReleaseProcess[], override: ScaleOverride | undefined, o: ScaleOptions): ReleaseProcess[] {
  const wanted = Object.entries(override ?? {});
  if (o.rescale && o.staticSite) throw new ScaleError('the live release is a static site: it has no processes to scale');
  const names = new Set(processes.map((p) => p.name));
  const unknown = wanted.filter(([name]) => !names.has(name)).map(([name]) => name);
  if (unknown.length > 0) {
    const has = processes.length > 0 ? `it has ${processes.map((p) => p.name).join(', ')}` : 'it has none';
    const which = unknown.map((n) => `"${n}"`).join(', ');
    // A build or rollback whose release dropped a process keeps going: the override just has nothing to apply to.
    if (o.rescale) throw new ScaleError(`the live release has no process ${which} (${has}); scale one of those, or reset with berth scale --reset`);
    o.log(`the scale set with berth scale for ${which} does not apply: this release has no such process (${has})`);
  }
  const counts = new Map(wanted);
  return processes.map((p) => {
    const n = counts.get(p.name);
    if (n === undefined || n === p.scale) return p;
    o.log(`${p.name}: ${n} ${n === 1 ? 'container' : 'containers'} (set with berth scale; the repo says ${p.scale})`);
    return { ...p, scale: n };
  });
}
