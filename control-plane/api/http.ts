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
