// A loop the cluster runs on a timer (the manager's upstream watcher, every node's image pruner):
// one pass per interval, never two at once, stopped on close after the running pass ends.
export abstract class PeriodicPass {
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  protected closed = false;

  constructor(private readonly intervalMs: number) {}

  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.pass;
  }

  /** One pass unless one is running (passes never overlap). */
  tick(): Promise<void> {
    if (this.closed || this.pass) return this.pass ?? Promise.resolve();
    this.pass = this.runPass().finally(() => (this.pass = null));
    return this.pass;
  }

  protected abstract runPass(): Promise<void>;
}
