// Push webhooks of the Git hosts berth understands: which host sent a request, whether it is signed
// with the app's secret (over the raw body, compared in constant time), the delivery id, and what
// the event says was pushed. Pure functions of headers + body, so they are easy to test and fuzz.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { secretEquals } from '../../shared/ids.js';
import { payloadKey } from '../store/webhooks.js';

export type GitHost = 'github' | 'gitlab' | 'gitea' | 'bitbucket';
export const HOST_LABEL: Record<GitHost, string> = { github: 'GitHub', gitlab: 'GitLab', gitea: 'Gitea/Forgejo', bitbucket: 'Bitbucket Cloud' };

/** Header lookup by lower-case name. */
export type Headers = (name: string) => string | undefined;

export type Verdict = { ok: true } | { ok: false; status: 400 | 401; error: string };

/** One ref a push changed. `after` is the new commit (all zeros when the ref was deleted). */
export interface RefUpdate {
  ref: string;
  after: string;
  deleted: boolean;
}

export type PushEvent =
  | { kind: 'push'; updates: RefUpdate[] }
  /** Authenticated, understood, nothing to deploy (ping, another event type). */
  | { kind: 'ignore'; reason: string }
  | { kind: 'bad'; error: string };

const ZERO_SHA = /^0+$/;

/**
 * Gitea and Forgejo also send GitHub's headers, so their own headers are checked first; Gogs (which
 * Gitea forked from) signs the same way.
 */
export function detectHost(h: Headers): GitHost | undefined {
  if (h('x-gitea-event') !== undefined || h('x-forgejo-event') !== undefined || h('x-gogs-event') !== undefined) return 'gitea';
  if (h('x-gitlab-event') !== undefined) return 'gitlab';
  if (h('x-event-key') !== undefined) return 'bitbucket';
  if (h('x-github-event') !== undefined) return 'github';
  return undefined;
}

function hmacMatches(secret: string, body: Buffer, hex: string): boolean {
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(hex, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function checkHmacHeader(h: Headers, names: string[], prefix: 'required' | 'optional', secret: string, body: Buffer): Verdict {
  const name = names.find((n) => h(n) !== undefined);
  const shown = names.map(headerName).join(' or ');
  if (!name) return { ok: false, status: 401, error: `missing ${shown} header: set the webhook's secret to the app's push secret (berth app show)` };
  const value = h(name)!.trim();
  const m = (prefix === 'required' ? /^sha256=([0-9a-fA-F]{64})$/ : /^(?:sha256=)?([0-9a-fA-F]{64})$/).exec(value);
  if (!m) {
    return { ok: false, status: 400, error: `malformed ${headerName(name)} header: expected ${prefix === 'required' ? 'sha256=' : ''}<64 hex digits>` };
  }
  if (!hmacMatches(secret, body, m[1]!.toLowerCase())) {
    return { ok: false, status: 401, error: `${headerName(name)} does not match: the webhook's secret is not this app's push secret, or the body was altered` };
  }
  return { ok: true };
}

export function verifySignature(host: GitHost, h: Headers, body: Buffer, secret: string): Verdict {
  switch (host) {
    case 'github':
      return checkHmacHeader(h, ['x-hub-signature-256'], 'required', secret, body);
    case 'bitbucket':
      return checkHmacHeader(h, ['x-hub-signature'], 'required', secret, body);
    case 'gitea':
      return checkHmacHeader(h, ['x-gitea-signature', 'x-forgejo-signature', 'x-gogs-signature'], 'optional', secret, body);
    case 'gitlab': {
      // GitLab sends the secret itself (no signature); it is compared in constant time.
      const token = h('x-gitlab-token');
      if (token === undefined) return { ok: false, status: 401, error: "missing X-Gitlab-Token header: set the webhook's secret token to the app's push secret (berth app show)" };
      if (token.length > 1024) return { ok: false, status: 400, error: 'malformed X-Gitlab-Token header: longer than 1024 characters' };
      if (!secretEquals(token, secret)) return { ok: false, status: 401, error: "X-Gitlab-Token does not match the app's push secret" };
      return { ok: true };
    }
  }
}

/** The host's delivery id (the same on a redelivery); without one, the body's hash stands in. */
export function deliveryId(host: GitHost, h: Headers, body: Buffer): { ok: true; id: string } | { ok: false; error: string } {
  const names: Record<GitHost, string[]> = {
    github: ['x-github-delivery'],
    gitea: ['x-gitea-delivery', 'x-forgejo-delivery', 'x-gogs-delivery'],
    // Idempotency-Key stays the same across GitLab's retries (GitLab 17.4+); older ones send only the event UUID.
    gitlab: ['idempotency-key', 'x-gitlab-event-uuid'],
    bitbucket: ['x-request-uuid'],
  };
  const name = names[host].find((n) => h(n) !== undefined);
  if (!name) return { ok: true, id: payloadKey(body) };
  const value = h(name)!.trim();
  if (!/^[\x21-\x7e]{1,200}$/.test(value)) return { ok: false, error: `malformed ${headerName(name)} header: expected 1-200 printable characters` };
  return { ok: true, id: value };
}

// ---- payloads -------------------------------------------------------------------------------
const sha = z.string().max(128);
const refPush = z.object({ ref: z.string().min(1).max(1024), after: sha, deleted: z.boolean().optional() });
const gitlabPush = z.object({ object_kind: z.string().max(64), ref: z.string().min(1).max(1024), after: sha });
const bitbucketRef = z.object({ type: z.string().max(64), name: z.string().min(1).max(1024), target: z.object({ hash: sha }).optional() }).nullable().optional();
const bitbucketPush = z.object({
  push: z.object({ changes: z.array(z.object({ new: bitbucketRef, old: bitbucketRef })).max(1000) }),
});

/** Decode the body the way the host sent it: JSON, or GitHub/Gitea's form encoding (`payload=<json>`). */
export function decodeBody(h: Headers, body: Buffer): { ok: true; data: unknown } | { ok: false; error: string } {
  let text = body.toString('utf8');
  const type = (h('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    const payload = new URLSearchParams(text).get('payload');
    if (payload === null) return { ok: false, error: 'form-encoded webhook without a payload field' };
    text = payload;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { ok: false, error: 'webhook payload is not valid JSON' };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, error: 'webhook payload must be a JSON object' };
  return { ok: true, data };
}

function invalid(host: GitHost, err: z.ZodError): PushEvent {
  const issue = err.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
  return { kind: 'bad', error: `not a ${HOST_LABEL[host]} push payload${where}: ${issue?.message ?? 'invalid'}` };
}

/** Call only after verifySignature passed: nothing here is trusted before that. */
export function parsePush(host: GitHost, h: Headers, body: Buffer): PushEvent {
  const event = eventName(host, h);
  switch (host) {
    case 'github':
    case 'gitea': {
      if (event === 'ping') return { kind: 'ignore', reason: 'ping received: the webhook works' };
      if (event !== 'push') return { kind: 'ignore', reason: `${HOST_LABEL[host]} event "${event}" is not a push` };
      const decoded = decodeBody(h, body);
      if (!decoded.ok) return { kind: 'bad', error: decoded.error };
      const p = refPush.safeParse(decoded.data);
      if (!p.success) return invalid(host, p.error);
      return { kind: 'push', updates: [{ ref: p.data.ref, after: p.data.after, deleted: p.data.deleted === true || ZERO_SHA.test(p.data.after) }] };
    }
    case 'gitlab': {
      if (event !== 'Push Hook' && event !== 'Tag Push Hook' && event !== 'System Hook') {
        return { kind: 'ignore', reason: `GitLab event "${event}" is not a push` };
      }
      const decoded = decodeBody(h, body);
      if (!decoded.ok) return { kind: 'bad', error: decoded.error };
      const p = gitlabPush.safeParse(decoded.data);
      if (!p.success) return invalid(host, p.error);
      if (p.data.object_kind !== 'push' && p.data.object_kind !== 'tag_push') {
        return { kind: 'ignore', reason: `GitLab ${p.data.object_kind} event is not a push` };
      }
      return { kind: 'push', updates: [{ ref: p.data.ref, after: p.data.after, deleted: ZERO_SHA.test(p.data.after) }] };
    }
    case 'bitbucket': {
      if (event !== 'repo:push') return { kind: 'ignore', reason: `Bitbucket event "${event}" is not a push (repo:push)` };
      const decoded = decodeBody(h, body);
      if (!decoded.ok) return { kind: 'bad', error: decoded.error };
      const p = bitbucketPush.safeParse(decoded.data);
      if (!p.success) return invalid(host, p.error);
      const updates: RefUpdate[] = [];
      for (const change of p.data.push.changes) {
        const ref = change.new ?? change.old;
        if (!ref) continue;
        const prefix = ref.type === 'tag' || ref.type === 'annotated_tag' ? 'refs/tags/' : ref.type === 'branch' || ref.type === 'named_branch' ? 'refs/heads/' : null;
        if (!prefix) continue;
        if (change.new) updates.push({ ref: prefix + change.new.name, after: change.new.target?.hash ?? '', deleted: false });
        else updates.push({ ref: prefix + ref.name, after: '0'.repeat(40), deleted: true });
      }
      if (updates.length === 0) return { kind: 'ignore', reason: 'the push changed no branch or tag' };
      return { kind: 'push', updates };
    }
  }
}

function eventName(host: GitHost, h: Headers): string {
  const raw =
    host === 'github'
      ? h('x-github-event')
      : host === 'gitea'
        ? (h('x-gitea-event') ?? h('x-forgejo-event') ?? h('x-gogs-event'))
        : host === 'gitlab'
          ? h('x-gitlab-event')
          : h('x-event-key');
  // Only ever echoed back in a JSON body; kept short and printable anyway.
  return (raw ?? '').trim().slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
}

/** What a push means for an app that deploys `branch`. */
export type PushDecision = { deploy: true; commit: string } | { deploy: false; reason: string };

export function decide(updates: readonly RefUpdate[], branch: string): PushDecision {
  const ref = `refs/heads/${branch}`;
  const mine = updates.find((u) => u.ref === ref);
  if (mine) {
    if (mine.deleted) return { deploy: false, reason: `branch ${branch} was deleted: nothing to deploy` };
    return { deploy: true, commit: mine.after.toLowerCase() };
  }
  const first = updates[0];
  if (first && updates.every((u) => u.ref.startsWith('refs/tags/'))) {
    return { deploy: false, reason: `tag push (${first.ref.slice('refs/tags/'.length).slice(0, 200)}): the app deploys branch ${branch}` };
  }
  const other = updates.find((u) => u.ref.startsWith('refs/heads/'));
  const shown = other ? `branch ${other.ref.slice('refs/heads/'.length).slice(0, 200)}` : `ref ${(first?.ref ?? '?').slice(0, 200)}`;
  return { deploy: false, reason: `push to ${shown}: the app deploys branch ${branch}` };
}

/** X-Hub-Signature-256 as hosts spell it, for messages. */
function headerName(lower: string): string {
  const special: Record<string, string> = {
    'x-hub-signature-256': 'X-Hub-Signature-256',
    'x-hub-signature': 'X-Hub-Signature',
    'x-gitea-signature': 'X-Gitea-Signature',
    'x-forgejo-signature': 'X-Forgejo-Signature',
    'x-gogs-signature': 'X-Gogs-Signature',
    'x-github-delivery': 'X-GitHub-Delivery',
    'x-gitea-delivery': 'X-Gitea-Delivery',
    'x-forgejo-delivery': 'X-Forgejo-Delivery',
    'x-gogs-delivery': 'X-Gogs-Delivery',
    'idempotency-key': 'Idempotency-Key',
    'x-gitlab-event-uuid': 'X-Gitlab-Event-UUID',
    'x-request-uuid': 'X-Request-UUID',
  };
  return special[lower] ?? lower;
}
