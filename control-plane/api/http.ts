// Request parsing for the API: JSON bodies and path/query params are validated here and every
// failure becomes a 400 naming the field, never a 500 or a stack trace.
import type { Context } from 'hono';
import type { z } from 'zod';
import { BadRequestError } from '../errors.js';

/** Field name → how errors call it, e.g. `name` → `app name`. */
export type FieldLabels = Record<string, string>;

export async function readJson<T>(
  c: Context,
  schema: z.ZodType<T>,
  labels: FieldLabels,
  opts: { optional?: boolean; precheck?: (body: Record<string, unknown>) => void } = {},
): Promise<T> {
  const text = await c.req.text();
  let data: unknown;
  if (text.trim() === '' && opts.optional) {
    data = {};
  } else {
    try {
      data = JSON.parse(text);
    } catch {
      throw new BadRequestError('request body is not valid JSON');
    }
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new BadRequestError('request body must be a JSON object');
  }
  opts.precheck?.(data as Record<string, unknown>);
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = String(issue?.path[0] ?? '');
  const label = labels[field] ?? (field || 'request body');
  if (field && (data as Record<string, unknown>)[field] === undefined) throw new BadRequestError(`missing ${label}`);
  throw new BadRequestError(`invalid ${label}: ${issue?.message ?? 'invalid value'}`);
}

/** Validate one path or query value. */
export function validParam<T>(schema: z.ZodType<T>, value: string | undefined, label: string): T {
  const result = schema.safeParse(value ?? '');
  if (result.success) return result.data;
  throw new BadRequestError(`invalid ${label}: ${result.error.issues[0]?.message ?? 'invalid value'}`);
}

/** The most items one page of a listing holds (`?limit=`). */
export const MAX_PAGE_LIMIT = 1000;

/** `?limit=N` of a listing: absent means everything (what clients before pagination got). */
export function pageLimit(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d{1,7}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= MAX_PAGE_LIMIT)) throw new BadRequestError(`invalid limit: must be a whole number from 1 to ${MAX_PAGE_LIMIT}`);
  return n;
}

/** The response header naming the next page's cursor; absent on the last page (or an unpaged answer). */
export const NEXT_CURSOR_HEADER = 'X-Next-Cursor';
/** Set on every paged answer, the last page too: tells a client that this control plane sends cursors. */
export const PAGE_LIMIT_HEADER = 'X-Page-Limit';

export interface PageRequest {
  limit?: number;
  /** The key of the last item of the previous page: this page starts after it. */
  cursor?: string;
}

/**
 * `?limit=N&cursor=KEY` of a listing. The cursor is the key (name, id) of the previous page's last
 * item, as the previous answer's X-Next-Cursor header gave it; `legacy` is the name the same cursor
 * had before (`after`, `before`), still accepted. Both given and different: refused.
 */
export function pageRequest<K extends string>(
  query: (name: string) => string | undefined,
  key: z.ZodType<K>,
  legacy: 'after' | 'before',
): PageRequest {
  const limit = pageLimit(query('limit'));
  const raw = query('cursor');
  const old = query(legacy);
  if (raw !== undefined && old !== undefined && raw !== old) throw new BadRequestError(`invalid cursor: give cursor or ${legacy}, not both`);
  const given = raw ?? old;
  const cursor = given === undefined ? undefined : validParam(key, given, raw !== undefined ? 'cursor' : legacy);
  return { ...(limit !== undefined ? { limit } : {}), ...(cursor !== undefined ? { cursor } : {}) };
}

/**
 * One page out of the rows a store returned for `limit + 1` (the extra row only tells that there is a
 * next page): the items to answer, and the cursor of the next page when there is one.
 */
export function pageOf<T>(rows: T[], limit: number | undefined, keyOf: (row: T) => string): { items: T[]; next: string | null } {
  if (limit === undefined || rows.length <= limit) return { items: rows, next: null };
  const items = rows.slice(0, limit);
  return { items, next: keyOf(items[limit - 1]!) };
}

/** Fetch a page through `fetchRows(limit + 1)` and set X-Next-Cursor and `Link: <…>; rel="next"` when there is more. */
export function answerPage<T>(c: Context, page: PageRequest, fetchRows: (limit: number | undefined) => T[], keyOf: (row: T) => string): T[] {
  const { items, next } = pageOf(fetchRows(page.limit === undefined ? undefined : page.limit + 1), page.limit, keyOf);
  if (page.limit !== undefined) c.header(PAGE_LIMIT_HEADER, String(page.limit));
  if (next !== null) {
    c.header(NEXT_CURSOR_HEADER, next);
    const url = new URL(c.req.url);
    url.searchParams.delete('after');
    url.searchParams.delete('before');
    url.searchParams.set('cursor', next);
    c.header('Link', `<${url.pathname}${url.search}>; rel="next"`);
  }
  return items;
}
