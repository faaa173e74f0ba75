// agent/build/build-progress.ts: the image build's progress stream read into log lines and an
// outcome, with no Docker engine. The stream is the only place a failing RUN shows up, so an error
// in it, or an end without an image id, must be a failed build.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BuildError, buildOutcome, BuildProgress, type ProgressEvent } from '../../agent/build/build-progress.js';

const ID = `sha256:${'ab12'.repeat(16)}`;

/** Feed `events` through a BuildProgress; the lines it logged and what it reported at the end. */
function read(events: ProgressEvent[]) {
  const lines: string[] = [];
  const progress = new BuildProgress((l) => lines.push(l));
  for (const ev of events) progress.event(ev);
  return { lines, report: progress.end() };
}

function assertBuildError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BuildError, `expected a BuildError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('build progress: stream to outcome', () => {
  it('a stream announcing the image id succeeds with that id', () => {
    const { report } = read([{ stream: 'Step 1/1 : FROM base\n' }, { aux: { ID } }, { stream: `Successfully built ${ID.slice(7, 19)}\n` }]);
    assert.equal(buildOutcome(report, undefined), ID);
  });

  it('an errorDetail in the stream is a failure, even when an image id was announced before it', () => {
    const { report, lines } = read([
      { stream: 'Step 2/3 : RUN false\n' },
      { aux: { ID } },
      { errorDetail: { code: 1, message: "The command '/bin/sh -c false' returned a non-zero code: 1" }, error: 'ignored' },
    ]);
    assertBuildError(() => buildOutcome(report, undefined), /^build failed: The command '\/bin\/sh -c false' returned a non-zero code: 1$/);
    assert.equal(lines.at(-1), "ERROR: The command '/bin/sh -c false' returned a non-zero code: 1");
  });

  it('an error without errorDetail is a failure too, and the first error is the one reported', () => {
    const { report } = read([{ error: 'first problem\n' }, { error: 'second problem' }]);
    assertBuildError(() => buildOutcome(report, undefined), /^build failed: first problem$/);
  });

  it('a stream that ends without an image id is a failure', () => {
    const { report } = read([{ stream: 'Step 1/2 : FROM base\n' }, { stream: ' ---> 0123456789ab\n' }]);
    assertBuildError(() => buildOutcome(report, undefined), /ended without producing an image/);
  });

  it('old engines: the tag is trusted only when it points at the image the stream said it built', () => {
    const { report } = read([{ stream: `Successfully built ${ID.slice(7, 19)}\n` }]);
    assert.equal(buildOutcome(report, undefined, ID), ID);
    // A stale tag from an earlier build is not this build's image.
    assertBuildError(() => buildOutcome(report, undefined, `sha256:${'cd34'.repeat(16)}`), /ended without producing an image/);
    // Nothing said what was built: a tag alone proves nothing.
    assertBuildError(() => buildOutcome(read([]).report, undefined, ID), /ended without producing an image/);
  });

  it('a step killed with code 137 under a memory cap is reported as out of memory', () => {
    const failure = { errorDetail: { message: "The command '/bin/sh -c make' returned a non-zero code: 137" } };
    assertBuildError(() => buildOutcome(read([failure]).report, { memory: 64 * 1024 ** 2, cpus: null }), /build's memory cap.*returned a non-zero code: 137$/);
    // Without a cap, 137 is an ordinary failure.
    assertBuildError(() => buildOutcome(read([failure]).report, undefined), /^build failed: /);
  });

  it('log lines are whole lines: split across messages, \\r trimmed, blank lines and progress bars left out', () => {
    const { lines } = read([
      { stream: 'Step 1/2 : FR' },
      { stream: 'OM base\r\n\n   \n' },
      { status: 'Downloading', id: 'abc', progress: '[==>   ]' },
      { status: 'Pulling fs layer', id: 'abc' },
      { stream: 'last line without newline' },
    ]);
    assert.deepEqual(lines, ['Step 1/2 : FROM base', 'abc: Pulling fs layer', 'last line without newline']);
  });
});
