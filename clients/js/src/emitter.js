// A small event emitter for the client's events. Portable (the browser has no
// node:events), and an event nobody listens to is simply dropped: an 'error'
// event must never throw from inside the client's frame dispatch.

export class Emitter {
  constructor() {
    this._on = new Map(); // event -> array of listeners (copied on change)
  }

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    const list = this._on.get(event) || [];
    this._on.set(event, [...list, fn]);
    this._listeners(event, list.length + 1);
    return this;
  }

  once(event, fn) {
    const wrap = (...args) => {
      this.off(event, wrap);
      fn(...args);
    };
    wrap.listener = fn;
    return this.on(event, wrap);
  }

  off(event, fn) {
    const list = this._on.get(event);
    if (!list) return this;
    const i = list.findIndex((l) => l === fn || l.listener === fn);
    if (i < 0) return this;
    const next = list.slice(0, i).concat(list.slice(i + 1));
    if (next.length) this._on.set(event, next);
    else this._on.delete(event);
    this._listeners(event, next.length);
    return this;
  }

  listenerCount(event) {
    return (this._on.get(event) || []).length;
  }

  /* A listener that throws does not stop the others, nor the client: the
   * exception is rethrown on its own, outside the client's stack. */
  emit(event, ...args) {
    const list = this._on.get(event);
    if (!list) return false;
    for (const fn of list) {
      try {
        fn(...args);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    return true;
  }

  /* Subclasses hear when an event gains or loses listeners. */
  _listeners(event, count) {
    void event;
    void count;
  }
}
