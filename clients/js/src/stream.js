// Async iterators over what arrives: the replies of one streamed request
// (progress, chunks, the final reply, in order, pulled with flow control) and
// presence events.

/**
 * The replies of one request, as `for await` reads them. Parts wait in a
 * queue; the client counts their bytes against its high-water mark and stops
 * reading from the router while too many wait, so a slow consumer slows its
 * producer down instead of filling memory (docs: "Flow control").
 */
export class ReplyStream {
  constructor(client) {
    this._client = client;
    this._q = []; // parts not yet read, each {value, size}
    this._head = 0; // index of the next part in _q
    this._bytes = 0; // their sizes, counted by the client while the request is open
    this._open = true; // the router may still send parts
    this._err = null; // the error that ends the iteration, after the queued parts
    this._done = false; // the iteration has ended
    this._waiter = null; // {resolve, reject} of a next() waiting for a part
    this._req = null; // set by the client: the request, to cancel
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** Stops the request (CANCEL to the handler) and ends the iteration. */
  cancel() {
    this._stop();
  }

  next() {
    if (this._head < this._q.length) {
      const part = this._q[this._head];
      this._q[this._head++] = undefined;
      if (this._head > 64 && this._head * 2 > this._q.length) {
        this._q = this._q.slice(this._head);
        this._head = 0;
      }
      if (this._open) {
        this._bytes -= part.size;
        this._client._unbuffer(part.size);
      }
      return Promise.resolve({ value: part.value, done: false });
    }
    if (this._err !== null) {
      const e = this._err;
      this._err = null;
      this._done = true;
      return Promise.reject(e);
    }
    if (this._done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this._waiter = { resolve, reject };
    });
  }

  /* `break` or `return` inside the loop: the request is cancelled if it
   * is still open, and what was queued is dropped. */
  return() {
    this._stop();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(e) {
    this._stop();
    return Promise.reject(e);
  }

  _stop() {
    if (!this._done && this._req !== null) this._client._cancelReq(this._req, null);
    this._drop();
    this._done = true;
    this._err = null;
  }

  _drop() {
    if (this._open) this._client._unbuffer(this._bytes);
    this._bytes = 0;
    this._q = [];
    this._head = 0;
  }

  /* From the client: one part, and whether it is the last. */
  _push(value, size, last) {
    if (this._done) return;
    if (last) {
      this._close();
      this._done = true;
    }
    if (this._waiter !== null) {
      const w = this._waiter;
      this._waiter = null;
      w.resolve({ value, done: false });
      return;
    }
    this._q.push({ value, size: last ? 0 : size });
    if (!last) {
      this._bytes += size;
      this._client._buffer(size);
    }
  }

  /* From the client: the request ended with an error. Parts already queued
   * are read first; a cancel drops them (the consumer asked to stop). */
  _fail(err) {
    if (this._done) return;
    this._close();
    if (err.code === 'CANCELLED') this._drop();
    if (this._waiter !== null) {
      const w = this._waiter;
      this._waiter = null;
      this._done = true;
      w.reject(err);
      return;
    }
    this._err = err;
  }

  /* The router will send no more: its parts no longer hold the connection's
   * reading back (they stay readable). */
  _close() {
    if (!this._open) return;
    this._client._unbuffer(this._bytes);
    this._bytes = 0;
    this._open = false;
  }
}

/** Presence events as an async iterator; `ready` resolves once the router
 * has acknowledged the subscription. */
export class PresenceWatch {
  constructor(client, max) {
    this._client = client;
    this._q = [];
    this._max = max;
    this._waiter = null;
    this._closed = false;
    /** Events dropped because more than `max` waited unread. */
    this.dropped = 0;
    this.ready = null; // set by the client
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    if (this._q.length > 0) return Promise.resolve({ value: this._q.shift(), done: false });
    if (this._closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this._waiter = resolve;
    });
  }

  return() {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Ends the watch (the subscription ends with the last watcher). */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._client._presenceUser(-1);
    if (this._waiter !== null) {
      const w = this._waiter;
      this._waiter = null;
      w({ value: undefined, done: true });
    }
  }

  _push(ev) {
    if (this._closed) return;
    if (this._waiter !== null) {
      const w = this._waiter;
      this._waiter = null;
      w({ value: ev, done: false });
      return;
    }
    if (this._q.length >= this._max) {
      this._q.shift();
      this.dropped++;
    }
    this._q.push(ev);
  }
}
