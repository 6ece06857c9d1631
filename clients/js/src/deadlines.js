// Local request deadlines: buckets of 50 ms on one timer, not a timer per
// request. A request adds itself to the bucket its deadline falls in (never
// an earlier one: a deadline is never early) and removes itself when it ends,
// both O(1), so a million requests a second cost no timer churn.

const SLOT_MS = 50;

export class Deadlines {
  /**
   * @param {(item:any)=>void} expire  called once for each item whose deadline passed
   * @param {() => number} now  milliseconds, monotonic
   */
  constructor(expire, now) {
    this.expire = expire;
    this.now = now;
    this.slots = new Map(); // slot index -> Set of items
    this.count = 0;
    this.next = Infinity; // lowest slot index that may hold items
    this.timer = null;
  }

  /** Arms item to expire at `at` (ms); returns the slot it must be removed from. */
  add(item, at) {
    const slot = Math.ceil(at / SLOT_MS);
    let set = this.slots.get(slot);
    if (set === undefined) {
      set = new Set();
      this.slots.set(slot, set);
    }
    set.add(item);
    this.count++;
    if (slot < this.next) this.next = slot;
    if (this.timer === null) this.arm();
    return slot;
  }

  remove(item, slot) {
    const set = this.slots.get(slot);
    if (set === undefined || !set.delete(item)) return;
    this.count--;
    if (set.size === 0) this.slots.delete(slot);
    if (this.count === 0) this.stop();
  }

  arm() {
    // The socket keeps a program alive, not this timer.
    this.timer = setInterval(() => this.run(), SLOT_MS);
    if (typeof this.timer === 'object' && this.timer.unref) this.timer.unref();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.next = Infinity;
  }

  run() {
    const due = Math.floor(this.now() / SLOT_MS);
    // Slots are visited in order; an event loop blocked for a while has
    // more of them to walk, never fewer. An item armed by expire() for a
    // slot already passed lowers this.next and is visited in this run.
    while (this.count > 0 && this.next <= due) {
      const s = this.next++;
      const set = this.slots.get(s);
      if (set === undefined) continue;
      this.slots.delete(s);
      this.count -= set.size;
      for (const item of set) this.expire(item);
    }
    if (this.count === 0) this.stop();
  }
}
