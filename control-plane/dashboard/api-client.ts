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

export type ApiCall = (<T = any>(method: string, path: string, body?: unknown) => Promise<ApiResult<T>>) & {
  /** A GET whose streamed Response (SSE) is handed on as is; `signal` ends it when the browser goes. */
  stream(path: string, signal: AbortSignal): Promise<Response>;
};

export function internalApi(app: Hono, adminToken: string): ApiCall {
  const auth = { authorization: `Bearer ${adminToken}` };
  const call = async <T>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> => {
    const headers: Record<string, string> = { ...auth };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await app.request(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const parsed = (await res.json().catch(() => ({}))) as T & { error?: string };
    return { ok: res.ok, status: res.status, body: parsed, error: res.ok ? '' : (parsed.error ?? `HTTP ${res.status}`) };
  };
  return Object.assign(call, { stream: async (path: string, signal: AbortSignal) => app.request(path, { headers: auth, signal }) });
}

/** A path segment from user-chosen names (the API validates them again). */
export const seg = (s: string) => encodeURIComponent(s);
