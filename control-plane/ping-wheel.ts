// Pings every agent connection once per interval, one slice of them at a time. Pinging 10,000
// connections in one go blocked the event loop for 0.6–0.7 s, and their pongs for as long again
// (bench/control-plane-scale): every API call arriving then waited. Spread over 60 slices, a tick
// handles ~170 of them.
const SLICE_MS = 250;
const MAX_SLOTS = 60;

export class PingWheel<T> {
  private readonly slots: Array<Set<T>>;
  private readonly slotOf = new Map<T, Set<T>>();
  private readonly timer: NodeJS.Timeout;
  /** Round robin: a new item goes to the slot after the last one filled, so the slots stay even. */
  private fill = 0;
  private turn = 0;

  constructor(intervalMs: number, private readonly visit: (item: T) => void) {
    const count = Math.max(1, Math.min(MAX_SLOTS, Math.floor(intervalMs / SLICE_MS)));
    this.slots = Array.from({ length: count }, () => new Set<T>());
    this.timer = setInterval(() => this.tick(), intervalMs / count);
    this.timer.unref();
  }

  add(item: T): void {
    if (this.slotOf.has(item)) return;
    const slot = this.slots[this.fill++ % this.slots.length]!;
    slot.add(item);
    this.slotOf.set(item, slot);
  }

  delete(item: T): void {
    this.slotOf.get(item)?.delete(item);
    this.slotOf.delete(item);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Visit the next slot's items (a copy: a visit may delete its item). */
  private tick(): void {
    const slot = this.slots[this.turn++ % this.slots.length]!;
    for (const item of [...slot]) this.visit(item);
  }
}
