// A deploy's log as the control plane receives it: lines numbered per deployment and sent in
// batches (one message per ~150 ms instead of one per build line).
import type { AgentMessage, LogLine } from '../../shared/protocol.js';
import { PROTOCOL_VERSION } from '../../shared/protocol.js';

const MAX_TEXT = 16_384;
const MAX_LINES_PER_MESSAGE = 1000;
export const LOG_FLUSH_MS = 150;

/** Hide `user:password@` in URLs: repo URLs may carry credentials and logs are shown to users. */
export function redactUrls(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, '$1***@');
}

export class DeployLogStream {
  private pending: LogLine[] = [];
  private timer: NodeJS.Timeout | null = null;
  private nextSeq: number;
  private mask: (text: string) => string = (t) => t;

  constructor(
    private readonly deploymentId: string,
    startSeq: number,
    private readonly send: (msg: AgentMessage) => void,
    /** Persist the next seq so a restarted agent continues numbering after the last line sent. */
    private readonly saveSeq: (nextSeq: number) => void,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly flushMs = LOG_FLUSH_MS,
  ) {
    this.nextSeq = startSeq;
  }

  /** Hide these secrets (the app's env values) in every line added from now on. */
  setMask(mask: (text: string) => string): void {
    this.mask = mask;
  }

  /** berth's own narration of the deploy. */
  system(text: string): void {
    this.add('system', text);
  }

  /** Output of the build (and of git while fetching). */
  build(text: string): void {
    this.add('build', text);
  }

  /** Output of the release command. */
  release(text: string): void {
    this.add('release', text);
  }

  add(stream: LogLine['stream'], text: string): void {
    // Build output arrives with \r progress updates and embedded newlines: one entry per real line.
    for (const raw of text.split('\n')) {
      const line = this.mask(redactUrls(raw.replace(/\r+$/, '').replace(/^.*\r/, '')));
      if (line.trim() === '') continue;
      this.pending.push({ seq: this.nextSeq++, ts: new Date().toISOString(), stream, text: line.length > MAX_TEXT ? line.slice(0, MAX_TEXT) : line });
    }
    if (this.pending.length >= MAX_LINES_PER_MESSAGE) this.flush();
    else if (this.pending.length > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        try {
          this.flush();
        } catch (err) {
          this.onError(err); // a timer callback must never throw: it would crash the agent
        }
      }, this.flushMs);
    }
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.length === 0) return;
    // Seq first: a crash between the two may skip numbers, never reuse one.
    this.saveSeq(this.nextSeq);
    while (this.pending.length > 0) {
      const lines = this.pending.splice(0, MAX_LINES_PER_MESSAGE);
      this.send({ type: 'deploy_log', v: PROTOCOL_VERSION, deploymentId: this.deploymentId, lines });
    }
  }
}
