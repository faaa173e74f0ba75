// Real Git repositories for tests: a bare "remote" served as file:// and a work tree that pushes to it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'berth test',
  GIT_AUTHOR_EMAIL: 'test@berth.invalid',
  GIT_COMMITTER_NAME: 'berth test',
  GIT_COMMITTER_EMAIL: 'test@berth.invalid',
};

function git(cwd: string, args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();
}

export class TestRepo {
  readonly bare: string;
  readonly work: string;
  constructor(root: string, readonly branch = 'main') {
    this.bare = join(root, 'remote.git');
    this.work = join(root, 'work');
    mkdirSync(this.bare, { recursive: true });
    mkdirSync(this.work, { recursive: true });
    git(this.bare, ['init', '--bare', '--quiet', `--initial-branch=${branch}`]);
    git(this.work, ['init', '--quiet', `--initial-branch=${branch}`]);
    git(this.work, ['remote', 'add', 'origin', this.bare]);
  }

  get url(): string {
    return `file://${this.bare}`;
  }

  /** Replace/add files (null deletes), commit, push; returns the commit SHA. */
  commit(files: Record<string, string | null>, message = 'change'): string {
    for (const [path, content] of Object.entries(files)) {
      const full = join(this.work, path);
      if (content === null) rmSync(full, { force: true });
      else {
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, content);
      }
    }
    git(this.work, ['add', '-A']);
    git(this.work, ['commit', '--quiet', '--allow-empty', '-m', message]);
    git(this.work, ['push', '--quiet', 'origin', `HEAD:refs/heads/${this.branch}`]);
    return git(this.work, ['rev-parse', 'HEAD']);
  }
}
