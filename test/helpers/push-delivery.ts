// Push webhook deliveries as GitHub, GitLab, Gitea/Forgejo and Bitbucket Cloud build and sign them,
// and a poster for them: shared by the webhook suites.
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';

export type Host = 'github' | 'gitlab' | 'gitea' | 'bitbucket';
export const HOSTS: Host[] = ['github', 'gitlab', 'gitea', 'bitbucket'];
export const ZERO = '0'.repeat(40);

export interface Delivery {
  headers: Record<string, string>;
  body: Buffer;
}

export const hmac = (algo: 'sha256' | 'sha1', secret: string, body: Buffer) => createHmac(algo, secret).update(body).digest('hex');

export interface PushSpec {
  ref: string;
  after: string;
  before?: string;
  /** GitHub/Gitea: the ping event instead of a push. */
  event?: string;
  deliveryId?: string;
}

/**
 * A push delivery as the host sends it: its JSON (pretty-printed with non-ASCII text, so only a
 * check over the raw bytes passes), its headers, and its signature made with `secret`.
 */
export function delivery(host: Host, secret: string, p: PushSpec): Delivery {
  const id = p.deliveryId ?? randomUUID();
  const before = p.before ?? 'a'.repeat(40);
  const deleted = p.after === ZERO;
  const branchOrTag = p.ref.replace(/^refs\/(heads|tags)\//, '');
  const isTag = p.ref.startsWith('refs/tags/');
  const commit = { id: p.after, message: 'déploiement ✓ — test', timestamp: new Date().toISOString(), author: { name: 'Zoë', email: 'z@example.com' } };
  let payload: unknown;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  switch (host) {
    case 'github':
      payload =
        p.event === 'ping'
          ? { zen: 'Keep it logically awesome.', hook_id: 42, hook: { type: 'Repository', events: ['push'] } }
          : {
              ref: p.ref,
              before,
              after: p.after,
              created: before === ZERO,
              deleted,
              forced: false,
              base_ref: null,
              compare: 'https://github.com/acme/web/compare/a...b',
              commits: deleted ? [] : [commit],
              head_commit: deleted ? null : commit,
              repository: { id: 1, name: 'web', full_name: 'acme/web', default_branch: 'main' },
              pusher: { name: 'zoe', email: 'z@example.com' },
              sender: { login: 'zoe', id: 7 },
            };
      Object.assign(headers, {
        'user-agent': 'GitHub-Hookshot/044aadd',
        'x-github-event': p.event ?? 'push',
        'x-github-delivery': id,
        'x-github-hook-id': '42',
        'x-github-hook-installation-target-type': 'repository',
      });
      break;
    case 'gitea':
      payload = {
        ref: p.ref,
        before,
        after: p.after,
        compare_url: 'https://gitea.example.com/acme/web/compare/a...b',
        commits: deleted ? [] : [{ ...commit, url: 'https://gitea.example.com/acme/web/commit/x' }],
        total_commits: deleted ? 0 : 1,
        head_commit: deleted ? null : commit,
        repository: { id: 1, name: 'web', full_name: 'acme/web', default_branch: 'main' },
        pusher: { login: 'zoe' },
        sender: { login: 'zoe' },
      };
      Object.assign(headers, {
        'user-agent': 'Go-http-client/1.1',
        'x-gitea-event': p.event ?? 'push',
        'x-gitea-event-type': p.event ?? 'push',
        'x-gitea-delivery': id,
        'x-gogs-event': p.event ?? 'push',
        'x-gogs-delivery': id,
        'x-forgejo-event': p.event ?? 'push',
        'x-forgejo-delivery': id,
        // Gitea sends GitHub's headers too; the GitHub ones are what a naive receiver would check.
        'x-github-event': p.event ?? 'push',
        'x-github-delivery': id,
      });
      break;
    case 'gitlab':
      payload = {
        object_kind: isTag ? 'tag_push' : 'push',
        event_name: isTag ? 'tag_push' : 'push',
        before,
        after: p.after,
        ref: p.ref,
        ref_protected: true,
        checkout_sha: deleted ? null : p.after,
        user_name: 'Zoë',
        project_id: 15,
        project: { id: 15, name: 'web', path_with_namespace: 'acme/web', default_branch: 'main' },
        commits: deleted ? [] : [commit],
        total_commits_count: deleted ? 0 : 1,
        repository: { name: 'web', homepage: 'https://gitlab.example.com/acme/web' },
      };
      Object.assign(headers, {
        'user-agent': 'GitLab/17.5.0',
        'x-gitlab-event': isTag ? 'Tag Push Hook' : 'Push Hook',
        'x-gitlab-event-uuid': id,
        'x-gitlab-webhook-uuid': 'b1d0d8e0-0000-4000-8000-000000000001',
        'x-gitlab-instance': 'https://gitlab.example.com',
        'idempotency-key': id,
        'x-gitlab-token': secret,
      });
      break;
    case 'bitbucket': {
      const ref = (name: string, hash: string) => ({ type: isTag ? 'tag' : 'branch', name, target: { type: 'commit', hash, message: commit.message } });
      payload = {
        push: {
          changes: [
            {
              new: deleted ? null : ref(branchOrTag, p.after),
              old: before === ZERO ? null : ref(branchOrTag, before),
              created: before === ZERO,
              closed: deleted,
              forced: false,
              truncated: false,
              commits: deleted ? [] : [{ hash: p.after, message: commit.message }],
            },
          ],
        },
        repository: { type: 'repository', full_name: 'acme/web', name: 'web', uuid: '{r}' },
        actor: { type: 'user', display_name: 'Zoë' },
      };
      Object.assign(headers, {
        'user-agent': 'Bitbucket-Webhooks/2.0',
        'x-event-key': p.event ?? 'repo:push',
        'x-hook-uuid': '{0b6f7bf6-0000-4000-8000-000000000002}',
        'x-request-uuid': id,
        'x-attempt-number': '1',
      });
      break;
    }
  }
  const body = Buffer.from(JSON.stringify(payload, null, 2), 'utf8');
  if (host === 'github') {
    headers['x-hub-signature'] = `sha1=${hmac('sha1', secret, body)}`;
    headers['x-hub-signature-256'] = `sha256=${hmac('sha256', secret, body)}`;
  } else if (host === 'gitea') {
    headers['x-gitea-signature'] = hmac('sha256', secret, body);
    headers['x-gogs-signature'] = hmac('sha256', secret, body);
    headers['x-forgejo-signature'] = hmac('sha256', secret, body);
    headers['x-hub-signature'] = `sha1=${hmac('sha1', secret, body)}`;
    headers['x-hub-signature-256'] = `sha256=${hmac('sha256', secret, body)}`;
  } else if (host === 'bitbucket') {
    headers['x-hub-signature'] = `sha256=${hmac('sha256', secret, body)}`;
  }
  return { headers, body };
}

/** The header that authenticates a delivery of `host`. */
export const AUTH_HEADER: Record<Host, string> = { github: 'x-hub-signature-256', gitlab: 'x-gitlab-token', gitea: 'x-gitea-signature', bitbucket: 'x-hub-signature' };

/** Every header a host uses to authenticate (Gitea sends several). */
export const AUTH_HEADERS: Record<Host, string[]> = {
  github: ['x-hub-signature-256', 'x-hub-signature'],
  gitlab: ['x-gitlab-token'],
  gitea: ['x-gitea-signature', 'x-gogs-signature', 'x-forgejo-signature', 'x-hub-signature-256', 'x-hub-signature'],
  bitbucket: ['x-hub-signature'],
};

export interface HookResponse {
  status: number;
  body: any;
}

export async function post(url: string, d: Delivery): Promise<HookResponse> {
  const res = await fetch(url, { method: 'POST', headers: d.headers, body: new Uint8Array(d.body) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`POST ${url} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body };
}

/** The same delivery (byte for byte the same body and signature) under a fresh delivery id: a replay. */
export function withFreshId(d: Delivery): Delivery {
  const id = randomUUID();
  const idHeaders = ['x-github-delivery', 'x-gitea-delivery', 'x-gogs-delivery', 'x-forgejo-delivery', 'x-gitlab-event-uuid', 'idempotency-key', 'x-request-uuid'];
  const headers = { ...d.headers };
  for (const h of idHeaders) if (h in headers) headers[h] = id;
  return { headers, body: d.body };
}
