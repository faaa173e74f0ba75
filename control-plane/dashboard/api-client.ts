// The dashboard reads and changes everything through the same HTTP API the CLI uses, called
// in-process: the same validation, the same store functions, the same pushes to agents, the same
// error messages. The dashboard itself keeps no data.
import type { Hono } from 'hono';

export interface ApiResult<T> {
  ok: boolean;
  status: number;
  body: T;
  /** The API's one-line error when !ok. */
  error: string;
}

export type ApiCall = <T = any>(method: string, path: string, body?: unknown) => Promise<ApiResult<T>>;

export function internalApi(app: Hono, adminToken: string): ApiCall {
  return async <T>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> => {
    const headers: Record<string, string> = { authorization: `Bearer ${adminToken}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await app.request(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const parsed = (await res.json().catch(() => ({}))) as T & { error?: string };
    return { ok: res.ok, status: res.status, body: parsed, error: res.ok ? '' : (parsed.error ?? `HTTP ${res.status}`) };
  };
}

/** A path segment from user-chosen names (the API validates them again). */
export const seg = (s: string) => encodeURIComponent(s);
