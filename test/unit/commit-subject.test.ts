// A commit subject is the repository's text: one line, no control characters, bounded.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cleanCommitSubject, commitSubject, MAX_COMMIT_SUBJECT } from '../../shared/commit-subject.js';
import { deployProgress } from '../../shared/protocol.js';

describe('commit subjects', () => {
  it('become one line of plain text', () => {
    assert.equal(cleanCommitSubject('Fix \u001b[31mlogin\r\nform\u0007 '), 'Fix [31mlogin form');
    assert.equal(cleanCommitSubject('a\u202eb\u2028c\u0085d\u0000e'), 'a b c d e', 'bidi overrides, separators, C1 and NUL');
    assert.equal(cleanCommitSubject('<b>markup</b> stays text'), '<b>markup</b> stays text', 'escaping is the page\'s job');
    assert.equal(cleanCommitSubject('\t \n'), '');
  });

  it(`are cut at ${MAX_COMMIT_SUBJECT} characters, whole code points`, () => {
    const long = cleanCommitSubject('é'.repeat(150) + '😀'.repeat(100));
    assert.equal([...long].length, MAX_COMMIT_SUBJECT);
    assert.ok(long.endsWith('😀…'), long.slice(-4));
    assert.equal(cleanCommitSubject('x'.repeat(MAX_COMMIT_SUBJECT)), 'x'.repeat(MAX_COMMIT_SUBJECT));
  });

  it('are cleaned again where they arrive, and optional in a progress report', () => {
    assert.equal(commitSubject.parse('a\nb'), 'a b');
    assert.equal(commitSubject.safeParse('x'.repeat(5000)).success, false);
    const base = { type: 'deploy_progress', v: 1, deploymentId: 'abcdefgh', status: 'building', ts: new Date().toISOString() };
    assert.equal(deployProgress.safeParse(base).success, true, 'an older agent sends neither field');
    const parsed = deployProgress.parse({ ...base, commitMessage: 'x\u001b[2Jy', repoScale: { web: 2 } });
    assert.deepEqual({ m: parsed.commitMessage, s: parsed.repoScale }, { m: 'x [2Jy', s: { web: 2 } });
    assert.equal(deployProgress.safeParse({ ...base, repoScale: { web: 99 } }).success, false);
  });
});
