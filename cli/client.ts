// A tiny typed HTTP client for the control plane API (shared/api.ts has the shapes).
import { CliError } from './errors.js';
import type { ClientConfig } from './config.js';

/** Items per request when the CLI walks a listing (the API's most is 1000). */
export const LIST_PAGE_SIZE = 500;
const NEXT_CURSOR_HEADER = 'x-next-cursor';
/** Set on every paged answer (`?limit=`) by a control plane that knows cursors, even on the last page. */
const PAGED_HEADER = 'x-page-limit';

export class ApiClient {
  constructor(private readonly config: ClientConfig) {}

  get url(): string {
    return this.config.url;
  }

  /** `timeoutMs`: cluster joins run several agent steps and take longer than the usual 30 s. */
  async request<T>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    return (await this.exchange<T>(method, path, body, timeoutMs)).data;
  }

  /**
   * Every item of a listing, fetched in pages of `pageSize` by following the X-Next-Cursor header, at
   * most `max` items. A control plane from before cursors answers a full page without the header: the
   * list is then fetched whole, as it was then.
   */
  async listAll<T>(path: string, opts: { pageSize?: number; max?: number } = {}): Promise<T[]> {
    const pageSize = opts.pageSize ?? LIST_PAGE_SIZE;
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    const sep = path.includes('?') ? '&' : '?';
    const all: T[] = [];
    let cursor: string | null = null;
    do {
      const want = Math.min(pageSize, max - all.length);
      const page: { data: T[]; headers: Headers } = await this.exchange<T[]>('GET', `${path}${sep}limit=${want}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      const next = page.headers.get(NEXT_CURSOR_HEADER);
      if (next !== null && next === cursor) throw new CliError(`the control plane answered the same page of ${path} twice (cursor "${next}")`);
      cursor = next;
      if (cursor === null && all.length === 0 && page.data.length === want && want < max && !page.headers.has(PAGED_HEADER)) return (await this.get<T[]>(path)).slice(0, max);
      all.push(...page.data);
    } while (cursor !== null && all.length < max);
    return all;
  }

  private async exchange<T>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<{ data: T; headers: Headers }> {
    let res: Response;
    try {
      res = await fetch(this.config.url + path, {
        method,
        headers: {
          authorization: `Bearer ${this.config.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiRequestError(null, `cannot reach the control plane at ${this.config.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    let data: unknown = undefined;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      // fall through: non-JSON answers are reported below
    }
    if (!res.ok) {
      const message = (data as { error?: string } | undefined)?.error ?? `HTTP ${res.status} ${res.statusText}`;
      throw new ApiRequestError(res.status, res.status === 401 && !(data as { error?: string } | undefined)?.error ? 'the control plane refused the token (401): run `berth login URL TOKEN`' : message);
    }
    if (data === undefined && text) throw new CliError(`the control plane at ${this.config.url} answered with something that is not JSON`);
    return { data: data as T, headers: res.headers };
  }

  /** Open a long-lived GET (Server-Sent Events); errors are read from the JSON body like every other call. */
  async openStream(path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    let res: Response;
    try {
      res = await fetch(this.config.url + path, {
        headers: { authorization: `Bearer ${this.config.token}`, accept: 'text/event-stream' },
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new StreamUnavailable(`cannot reach the control plane at ${this.config.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => '');
      let message = `HTTP ${res.status} ${res.statusText}`;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? message;
      } catch {
        // keep the status line
      }
      // A proxy or a restarting control plane answers 5xx: worth retrying; 4xx are final.
      if (res.status >= 500) throw new StreamUnavailable(message);
      throw new CliError(message);
    }
    return res.body;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }
  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }
  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }
}

/** Path segments are validated server-side too; encoding keeps hostile input from changing the route. */
export const seg = (s: string) => encodeURIComponent(s);

/** A failed API call: `status` is the HTTP status, null when the control plane could not be reached. */
export class ApiRequestError extends CliError {
  override name = 'ApiRequestError';
  constructor(
    readonly status: number | null,
    message: string,
  ) {
    super(message);
  }
}

/** The stream could not be opened or broke off; the caller may retry. */
export class StreamUnavailable extends Error {
  override name = 'StreamUnavailable';
}
