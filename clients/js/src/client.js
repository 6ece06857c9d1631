// The client core: one connection to a router through a pluggable transport,
// with the handshake (and shared-secret AUTH), handlers, requests, streams,
// broadcasts, presence, local deadlines and reconnects. It knows nothing of
// sockets or of node:crypto: src/index.js gives it Node's TCP/TLS transport
// and HMAC; a browser build gives it a WebSocket transport and WebCrypto.

import { SwitchboardError, WIRE, wireError } from './errors.js';
import {
  K, F, VERSION, PREFIX, BODY_MIN, FRAME_MAX_DEFAULT, FRAME_MAX_LIMIT, FrameWriter, FrameFault,
  readFrame, checkStr, textStr, packStr, packUint, binBytes, NIL_FIELD, NIL_PAYLOAD,
} from './frame.js';
import { encodePayload, decodePayload } from './payload.js';
import { Call } from './call.js';
import { ReplyStream, PresenceWatch } from './stream.js';
import { Emitter } from './emitter.js';
import { Deadlines } from './deadlines.js';

const GRACE_MS = 1000; // local deadline: the request's timeout plus this
const ROUTER_TIMEOUT_MS = 30000; // the router's default timeout (docs/architecture.md)
const DRAIN_GRACE_MS = 2000; // after GOODBYE's deadline, close if the router has not
const CTL_HI = 0x80000000; // high word of REGISTER/UNREGISTER/SUBSCRIBE ids
const IDENT_WINDOW = 1024; // senders kept: the router's window (protocol.md)
const FLUSH_NOW = 256 * 1024; // a batch this large goes out without waiting for the turn's end
const TIMEOUT_MAX = 0xffffffff;
const HELLO_INFO = encodePayload({ lib: 'sb-js 0.1' }).slice();
const MECH = 'hmac-sha256';
const PRESENCE_EVENTS = { 1: 'connected', 2: 'disconnected', 3: 'draining' };

const DEFAULTS = {
  host: '127.0.0.1',
  port: 7400,
  name: null,
  role: 'client',
  secret: null,
  tls: null,
  timeout: 0, // requests: 0 is the router's default
  reconnect: true,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
  waitOnFirstConnect: false,
  connectTimeout: 0, // with waitOnFirstConnect: give up after this (0: never)
  handshakeTimeout: 5000,
  highWaterMark: 1 << 20, // stream bytes waiting unread before reading pauses
  outHighWaterMark: 1 << 20, // output bytes queued before chunk() waits
  presenceMax: 10000, // events a presence watch keeps unread
  keepAliveMs: 5000, // while reading is paused, a PING this often
  info: null, // merged into HELLO's payload
};

const noop = () => {};

function idOf(hi, lo) {
  return hi * 4294967296 + lo;
}

/* The router's ids are any 64 bits: a 4-character key holds them exactly. */
function keyOf(hi, lo) {
  return String.fromCharCode(hi >>> 16, hi & 0xffff, lo >>> 16, lo & 0xffff);
}

function checkTimeout(t) {
  if (t === undefined || t === null) return 0;
  if (!Number.isInteger(t) || t < 0 || t > TIMEOUT_MAX)
    throw new SwitchboardError('INVAL', `timeout must be a whole number of milliseconds from 0 to ${TIMEOUT_MAX}, not ${t}`);
  return t;
}

function aborted(signal) {
  const r = signal.reason;
  return r instanceof SwitchboardError ? r : new SwitchboardError('CANCELLED', 'cancelled by this client', { cause: r });
}

/**
 * Connects through the transport and crypto of env (see the Client
 * constructor) and resolves with the client once it is online: how a
 * transport other than Node's TCP/TLS plugs in (docs/js-client.md).
 */
export async function connectWith(opts, env) {
  const c = new Client(opts, env);
  await c._start();
  return c;
}

export class Client extends Emitter {
  /**
   * @param {object} opts see DEFAULTS and index.d.ts
   * @param {object} env  connect(opts, sink) -> transport; hmacSha256(key, data)
   *        -> bytes or a promise of them; random(n) -> bytes; alloc(n); now()
   */
  constructor(opts, env) {
    super();
    const o = { ...DEFAULTS, ...opts };
    // A compact JWS, as the router bounds it: a wrong string (a file name,
    // "Bearer ...") is refused here rather than sent.
    if (o.token !== undefined && o.token !== null &&
        (typeof o.token !== 'string' || !/^[A-Za-z0-9_.-]{1,8192}$/.test(o.token)))
      throw new SwitchboardError('INVAL', 'token must be a JWT: base64url parts joined by dots, 1 to 8192 bytes');
    if (o.role !== 'client' && o.role !== 'service')
      throw new SwitchboardError('INVAL', `role must be "client" or "service", not ${JSON.stringify(o.role)}`);
    this._nameB = o.name === null || o.name === undefined ? NIL_FIELD : checkStr(o.name, 'peer');
    this._roleB = checkStr(o.role, 'token');
    if (o.secret !== null && o.secret !== undefined) {
      const s = typeof o.secret === 'string' ? new TextEncoder().encode(o.secret) : o.secret;
      if (!(s instanceof Uint8Array) || s.length === 0 || s.length > 4096)
        throw new SwitchboardError('INVAL', 'secret must be a string or bytes, 1 to 4096 bytes long');
      this._secret = s;
    } else this._secret = null;
    if (!(o.reconnectMinMs > 0) || !(o.reconnectMaxMs >= o.reconnectMinMs))
      throw new SwitchboardError('INVAL', 'reconnectMinMs must be > 0 and reconnectMaxMs >= reconnectMinMs');
    checkTimeout(o.timeout);
    // The token rides in HELLO's payload (docs/protocol.md, "A bearer token in HELLO").
    const tok = typeof o.token === 'string' ? { token: o.token } : null;
    this._info = o.info || tok ? encodePayload({ lib: 'sb-js 0.1', ...o.info, ...tok }).slice() : HELLO_INFO;
    this._o = o;
    this._env = env;
    this._now = env.now;
    this._state = 'idle'; // idle connecting hello registering online draining waiting closed
    this._conn = null; // the transport of this connection
    this._gen = 0; // changes with every connection: dispatch stops when it does
    this._out = new FrameWriter(env.alloc);
    this._flushing = false; // a flush is queued for the end of this turn
    this._maxFrame = FRAME_MAX_DEFAULT; // the router's body limit, from WELCOME
    this._part = null; // a frame arriving in pieces: its bytes so far
    this._partLen = 0;
    this._headB = null; // fewer than 4 bytes of a length prefix
    this._reqs = new Map(); // our request id -> request
    this._nextId = 1;
    this._ctls = new Map(); // control id (low word) -> pending REGISTER/UNREGISTER/SUBSCRIBE
    this._nextCtl = 1;
    this._handlers = new Map(); // name -> handler
    this._catchAll = null; // the handler registered with name null
    this._calls = new Map(); // router id key -> Call (requests not yet answered)
    this._idents = new Map(); // peer id -> {peer, role, subject}
    this._presence = { users: 0, watches: new Set(), on: false, id: 0, ready: [] };
    this._buffered = 0; // stream bytes waiting unread, of requests still open
    this._paused = false; // reading stopped for flow control
    this._keepAlive = null; // its PING timer
    this._drain = null; // {promise, resolve}: output drained below the mark
    this._deadlines = new Deadlines((r) => this._expire(r), env.now);
    this._attempt = 0; // failed attempts since last online: the backoff exponent
    this._everOnline = false;
    this._timer = null; // handshake, reconnect or drain deadline
    this._closedP = null;
    this._closedResolve = null;
    this._first = null; // {resolve, reject} of connect()
    this._challenged = false; // this connection answered a CHALLENGE
    this._presenceListeners = 0; // 'presence' listeners, each a subscription user
    /** This connection's peer name (assigned by the router if none was asked). */
    this.name = o.name ?? null;
    /** The router's id for this connection (0 while not connected). */
    this.peerId = 0;
  }

  /* ---- lifecycle -------------------------------------------------------- */

  _start() {
    const p = new Promise((resolve, reject) => {
      this._first = { resolve, reject };
    });
    this._closedP = new Promise((resolve) => {
      this._closedResolve = resolve;
    });
    if (this._o.waitOnFirstConnect && this._o.connectTimeout > 0) {
      const t = setTimeout(() => {
        if (this._first !== null)
          this._stop(new SwitchboardError('OFFLINE', `not connected within ${this._o.connectTimeout} ms`));
      }, this._o.connectTimeout);
      p.then(() => clearTimeout(t), () => clearTimeout(t));
    }
    this._connect();
    return p;
  }

  /** True while requests can be made. */
  get online() {
    return this._state === 'online';
  }

  /** Resolves when the client has closed for good: undefined after close(),
   * or the SwitchboardError that made it give up. */
  closed() {
    return this._closedP;
  }

  /**
   * Closes the connection and stops reconnecting. Open requests fail with
   * OFFLINE, handlers' calls are aborted. Replies already written go out first.
   */
  close() {
    if (this._state !== 'closed') this._stop(null);
    return this._closedP;
  }

  _stop(why) {
    const conn = this._conn;
    this._clearTimer();
    if (conn !== null) {
      this._flush();
      conn.close();
    }
    this._lose(why ?? new SwitchboardError('OFFLINE', 'the client was closed'), 'closed', why, why === null);
    const regs = [...this._handlers.values(), this._catchAll];
    for (const h of regs)
      if (h && h.pending) {
        h.pending.reject(why ?? new SwitchboardError('OFFLINE', 'the client was closed'));
        h.pending = null;
      }
    if (this._first !== null) {
      const f = this._first;
      this._first = null;
      f.reject(why ?? new SwitchboardError('OFFLINE', 'the client was closed'));
    }
    for (const c of this._ctls.values())
      if (c.reject) c.reject(new SwitchboardError('OFFLINE', 'the client was closed'));
    this._ctls.clear();
    this._deadlines.stop();
    this._closedResolve(why ?? undefined);
  }

  _clearTimer() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  _connect() {
    this._state = 'connecting';
    const gen = ++this._gen;
    this._timer = setTimeout(() => {
      if (gen === this._gen) this._drop(new SwitchboardError('TIMEOUT', `no WELCOME within ${this._o.handshakeTimeout} ms`));
    }, this._o.handshakeTimeout);
    this._part = null;
    this._headB = null;
    this._maxFrame = FRAME_MAX_DEFAULT;
    this._challenged = false;
    const sink = {
      open: () => gen === this._gen && this._hello(),
      data: (b) => gen === this._gen && this._feed(b),
      drain: () => gen === this._gen && this._wakeDrain(),
      closed: (err) => gen === this._gen && this._transportClosed(err),
    };
    try {
      this._conn = this._env.connect(this._o, sink);
    } catch (e) {
      this._conn = null;
      this._drop(new SwitchboardError('OFFLINE', `cannot connect: ${e.message}`, { cause: e }));
    }
  }

  _hello() {
    this._state = 'hello';
    this._frame(K.HELLO, 0, 0, 0, [Uint8Array.of(VERSION), this._nameB, this._roleB], this._info);
  }

  _transportClosed(err) {
    if (err && err.code === 'UNAUTHORIZED') {
      // A certificate refused by either side is refused again next time.
      this.emit('error', err);
      this._stop(err);
      return;
    }
    if (err === null && this._state === 'draining') {
      this._drop(null); // the close GOODBYE announced
      return;
    }
    this._drop(err || new SwitchboardError('OFFLINE', 'the router closed the connection'));
  }

  /* Ends this connection: OFFLINE if it was online, every request fails
   * once, every call is aborted, and a reconnect is scheduled. */
  _drop(why) {
    if (this._state === 'closed' || this._state === 'waiting') return;
    const conn = this._conn;
    this._clearTimer();
    if (conn !== null) conn.destroy();
    this._conn = null; // nothing more is written to it
    const first = this._first !== null && !this._everOnline;
    if (first && !this._o.waitOnFirstConnect) {
      this._stop(why || new SwitchboardError('OFFLINE', 'the router closed the connection'));
      return;
    }
    if (!this._o.reconnect && this._everOnline) {
      // Closed for good: with the reason, or undefined after a planned close.
      this._lose(why || new SwitchboardError('OFFLINE', 'the router closed the connection'), 'waiting', why, false);
      this._stop(why);
      return;
    }
    this._lose(why || new SwitchboardError('OFFLINE', 'the router closed the connection'), 'waiting', why, false);
    const delay = this._backoff();
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._state === 'waiting') this._connect();
    }, delay);
  }

  /* The connection is gone: what it carried ends. 'offline' is reported
   * unless the program itself closed the client (quiet). */
  _lose(err, next, why, quiet) {
    const wasOnline = this._state === 'online' || this._state === 'draining';
    this._gen++;
    this._conn = null;
    this._state = next;
    this._out.reset();
    this.peerId = 0;
    this._idents.clear();
    this._presence.on = false;
    this._presence.id = 0;
    if (this._paused) this._resume();
    for (const h of this._handlers.values()) h.ctl = 0;
    if (this._catchAll !== null) this._catchAll.ctl = 0;
    // Registrations are sent again on the next WELCOME; an UNREGISTER in
    // flight is done, since the router forgets the connection's names.
    for (const c of this._ctls.values()) if (c.kind === 'unregister') c.resolve();
    this._ctls.clear();
    if (wasOnline && !quiet) this.emit('offline', why);
    const offline = new SwitchboardError('OFFLINE', err.code === 'OFFLINE' ? err.message : `the connection to the router was lost: ${err.message}`, { cause: err });
    const reqs = [...this._reqs.values()];
    this._reqs.clear();
    for (const r of reqs) this._end(r, offline, true);
    const calls = [...this._calls.values()];
    this._calls.clear();
    for (const k of calls) k._kill(new SwitchboardError('OFFLINE', 'the connection to the router was lost'));
    this._wakeDrain();
  }

  /* Full jitter between the minimum and a ceiling that doubles per failed
   * attempt, so clients cut off by one router restart do not all come back
   * in the same millisecond (the C client's rule). */
  _backoff() {
    const lo = this._o.reconnectMinMs;
    let hi = lo;
    for (let i = 0; i <= this._attempt && hi < this._o.reconnectMaxMs; i++) hi *= 2;
    hi = Math.min(hi, this._o.reconnectMaxMs);
    if (this._attempt < 64) this._attempt++;
    return lo + Math.floor(Math.random() * (hi - lo + 1));
  }

  /* ---- output ----------------------------------------------------------- */

  _frame(kind, flags, hi, lo, fields, payload) {
    this._out.frame(kind, flags, hi, lo, fields, payload, this._maxFrame);
    if (this._out.pending >= FLUSH_NOW) this._flush();
    else if (!this._flushing) {
      this._flushing = true;
      queueMicrotask(() => this._flush());
    }
  }

  /* Everything written this turn goes out in one write. */
  _flush() {
    this._flushing = false;
    const bytes = this._out.take();
    if (bytes !== null && this._conn !== null) this._conn.write(bytes);
  }

  /* Output queued past the mark: chunk() and progress() wait. */
  _congested() {
    const c = this._conn;
    return c !== null && this._out.pending + c.pending > this._o.outHighWaterMark;
  }

  /* A promise resolved when the transport says its output has drained (or
   * the connection ends): what a congested chunk() waits for. */
  _drained() {
    if (this._drain === null) {
      let resolve;
      const promise = new Promise((r) => {
        resolve = r;
      });
      this._drain = { promise, resolve };
    }
    return this._drain.promise;
  }

  _wakeDrain() {
    if (this._drain === null) return;
    const d = this._drain;
    this._drain = null;
    d.resolve();
  }

  _canSend() {
    return this._state === 'online' || this._state === 'draining';
  }

  /* ---- input ------------------------------------------------------------ */

  /* Cuts received bytes into frames. A frame that arrives whole is read in
   * place; one split across reads is gathered into a buffer of its own size
   * (payload values never point into a buffer that is reused). */
  _feed(b) {
    const gen = this._gen;
    let off = 0;
    const n = b.length;
    if (this._headB !== null) {
      const need = PREFIX - this._headB.length;
      const take = Math.min(need, n);
      const hb = new Uint8Array(this._headB.length + take);
      hb.set(this._headB, 0);
      hb.set(b.subarray(0, take), this._headB.length);
      off = take;
      if (hb.length < PREFIX) {
        this._headB = hb;
        return;
      }
      this._headB = null;
      const len = this._frameLen(hb, 0);
      if (len < 0) return;
      this._part = this._env.alloc(PREFIX + len);
      this._part.set(hb, 0);
      this._partLen = PREFIX;
    }
    if (this._part !== null) {
      const part = this._part;
      const take = Math.min(part.length - this._partLen, n - off);
      part.set(b.subarray(off, off + take), this._partLen);
      this._partLen += take;
      off += take;
      if (this._partLen < part.length) return;
      this._part = null;
      this._onFrame(part, PREFIX, part.length);
      if (gen !== this._gen) return;
    }
    while (n - off >= PREFIX) {
      const len = this._frameLen(b, off);
      if (len < 0) return;
      if (n - off - PREFIX < len) break;
      this._onFrame(b, off + PREFIX, off + PREFIX + len);
      if (gen !== this._gen) return;
      off += PREFIX + len;
    }
    if (off < n) {
      if (n - off < PREFIX) {
        this._headB = b.slice(off, n);
        return;
      }
      const len = this._frameLen(b, off);
      if (len < 0) return;
      this._part = this._env.alloc(PREFIX + len);
      this._part.set(b.subarray(off, n), 0);
      this._partLen = n - off;
    }
  }

  _frameLen(b, off) {
    const len = ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
    if (len < BODY_MIN) {
      this._drop(new SwitchboardError('BAD_FRAME', `the router sent a frame too short (${len} bytes)`));
      return -1;
    }
    if (len > this._maxFrame) {
      this._drop(new SwitchboardError('TOO_LARGE', `the router sent a frame of ${len} bytes, over its limit of ${this._maxFrame}`));
      return -1;
    }
    return len;
  }

  _onFrame(b, start, end) {
    let m;
    try {
      m = readFrame(b, start, end);
    } catch (e) {
      if (!(e instanceof FrameFault)) throw e;
      this._drop(new SwitchboardError('BAD_FRAME', `the router sent a bad frame: ${e.message}`));
      return;
    }
    if (m === null || m.ignored) return; // a kind from a newer router, or one only peers send
    if (this._state === 'hello' && m.kind !== K.WELCOME && m.kind !== K.ERROR && m.kind !== K.CHALLENGE &&
        m.kind !== K.PING && m.kind !== K.GOODBYE) {
      this._drop(new SwitchboardError('BAD_FRAME', `the router sent kind ${m.kind} before WELCOME`));
      return;
    }
    switch (m.kind) {
      case K.REPLY: this._onReply(m); break;
      case K.REQUEST:
      case K.SEND: this._onMessage(m); break;
      case K.ERROR: this._onError(m); break;
      case K.ACK: this._onAck(m); break;
      case K.CANCEL: this._onCancel(m); break;
      case K.PRESENCE: this._onPresence(m); break;
      case K.WELCOME: this._onWelcome(m); break;
      case K.CHALLENGE: this._onChallenge(m); break;
      case K.PING: this._frame(K.PONG, 0, m.hi, m.lo, [], NIL_PAYLOAD); break;
      case K.GOODBYE: this._onGoodbye(m); break;
      default: break; // PONG
    }
  }

  /* ---- handshake -------------------------------------------------------- */

  _onWelcome(m) {
    if (this._state !== 'hello') {
      this._drop(new SwitchboardError('BAD_FRAME', 'WELCOME out of turn'));
      return;
    }
    this.name = m.peer;
    this.peerId = m.peerId;
    this._maxFrame = m.maxFrame >= BODY_MIN && m.maxFrame <= FRAME_MAX_LIMIT ? m.maxFrame : FRAME_MAX_DEFAULT;
    // A message-based transport cuts our batches to what the router takes.
    if (this._conn !== null) this._conn.frameMax = this._maxFrame;
    this._state = 'registering';
    const regs = [...this._handlers.values()];
    if (this._catchAll !== null) regs.push(this._catchAll);
    for (const h of regs) {
      try {
        this._sendRegister(h);
      } catch (e) {
        // A schema over this router's frame limit would close the
        // connection on every attempt: the registration goes.
        this._removeHandler(h);
        this._refused(h.pending, e);
      }
    }
    if (this._presence.users > 0) this._subscribe(false);
    this._maybeOnline();
  }

  /* Proves the secret without sending it: HMAC-SHA256(secret, router nonce
   * || our nonce || the name asked for in HELLO), docs/protocol.md. */
  _onChallenge(m) {
    if (this._challenged) {
      this._drop(new SwitchboardError('BAD_FRAME', 'a second CHALLENGE'));
      return;
    }
    this._challenged = true;
    if (this._secret === null || m.mech !== MECH) {
      const err = new SwitchboardError('UNAUTHORIZED', this._secret === null
        ? 'the router requires a secret and none was given' : `the router asks for mechanism ${m.mech}, not ${MECH}`);
      this.emit('error', err);
      this._stop(err);
      return;
    }
    const gen = this._gen;
    const nonce = this._env.random(32);
    const name = this._o.name != null ? new TextEncoder().encode(this._o.name) : new Uint8Array(0);
    const msg = new Uint8Array(m.nonce.length + nonce.length + name.length);
    msg.set(m.nonce, 0);
    msg.set(nonce, m.nonce.length);
    msg.set(name, m.nonce.length + nonce.length);
    Promise.resolve(this._env.hmacSha256(this._secret, msg)).then((proof) => {
      if (gen !== this._gen) return;
      this._frame(K.AUTH, 0, m.hi, m.lo, [binBytes(nonce), binBytes(new Uint8Array(proof))], NIL_PAYLOAD);
    }, (e) => {
      if (gen === this._gen) this._drop(new SwitchboardError('INTERNAL', `HMAC failed: ${e.message}`, { cause: e }));
    });
  }

  /* ONLINE (or RECONNECTED) once WELCOME is in and every registration and
   * the presence subscription are acknowledged: a request made by anyone
   * after that can reach every handler. */
  _maybeOnline() {
    if (this._state !== 'registering') return;
    for (const c of this._ctls.values()) if (c.sent && c.kind === 'register') return;
    if (this._presence.users > 0 && !this._presence.on) return;
    this._state = 'online';
    this._attempt = 0;
    this._clearTimer();
    if (!this._everOnline) {
      this._everOnline = true;
      const f = this._first;
      this._first = null;
      this.emit('online');
      if (f !== null) f.resolve(this);
    } else this.emit('reconnected');
  }

  _onGoodbye(m) {
    if (this._state !== 'online' && this._state !== 'registering') return;
    this._state = 'draining';
    this.emit('draining', m.reason);
    // Should the router's close never come, requests would be refused for
    // good: close ourselves a little after the deadline it announced.
    const gen = this._gen;
    this._clearTimer();
    this._timer = setTimeout(() => {
      if (gen === this._gen) this._drop(new SwitchboardError('TIMEOUT', 'the router did not close after its GOODBYE'));
    }, m.deadline + DRAIN_GRACE_MS);
  }

  /* ---- registrations ---------------------------------------------------- */

  /**
   * Registers a handler for name (null: the catch-all). Resolves once the
   * router has acknowledged it; it is registered again after every
   * reconnect. A refusal rejects the promise and is also an 'error' event.
   */
  register(name, fn, opts = {}) {
    const p = new Promise((resolve, reject) => {
      if (this._o.role !== 'service') throw new SwitchboardError('FORBIDDEN', 'a client may not register handlers (role "service" may)');
      const nameB = name === null ? NIL_FIELD : checkStr(name, 'name');
      if (name !== null && name[0] === '$') throw new SwitchboardError('INVAL', `${name}: names starting with $ are the router's`);
      if (typeof fn !== 'function') throw new SwitchboardError('INVAL', 'the handler must be a function');
      if (name === null ? this._catchAll !== null : this._handlers.has(name))
        throw new SwitchboardError('INVAL', `${name === null ? 'the catch-all' : name} is registered already`);
      let schema = NIL_PAYLOAD;
      if (opts.schema !== undefined && opts.schema !== null) {
        if (typeof opts.schema !== 'object' || Array.isArray(opts.schema) || opts.schema instanceof Uint8Array)
          throw new SwitchboardError('INVAL', 'schema must be an object (docs/protocol.md, "Argument schemas")');
        schema = encodePayload(opts.schema).slice();
      }
      if (this._state === 'closed') throw new SwitchboardError('OFFLINE', 'the client was closed');
      const h = { name, nameB, fn, flags: opts.internal ? F.INTERNAL : 0, schema, ctl: 0, pending: { resolve, reject } };
      if (name === null) this._catchAll = h;
      else this._handlers.set(name, h);
      if (this._state === 'registering' || this._canSend()) {
        try {
          this._sendRegister(h);
        } catch (e) {
          this._removeHandler(h);
          throw e;
        }
      }
    });
    p.catch(noop);
    return p;
  }

  _sendRegister(h) {
    const id = this._nextCtl++;
    this._frame(K.REGISTER, h.flags, CTL_HI, id, [h.nameB], h.schema);
    h.ctl = id;
    this._ctls.set(id, { kind: 'register', h, sent: true });
  }

  _removeHandler(h) {
    if (h.name === null) {
      if (this._catchAll === h) this._catchAll = null;
    } else if (this._handlers.get(h.name) === h) this._handlers.delete(h.name);
    if (h.ctl !== 0) this._ctls.delete(h.ctl);
    h.ctl = 0;
  }

  _refused(pending, err) {
    this.emit('error', err);
    if (pending) pending.reject(err);
  }

  /** Removes the handler for name (null: the catch-all); resolves once the
   * router has acknowledged it. Requests arriving meanwhile get NO_HANDLER. */
  unregister(name) {
    const p = new Promise((resolve, reject) => {
      const h = name === null ? this._catchAll : this._handlers.get(name);
      if (h === undefined || h === null) throw new SwitchboardError('INVAL', `${name === null ? 'the catch-all' : name} is not registered`);
      const wasPending = h.pending;
      this._removeHandler(h);
      if (wasPending) wasPending.reject(new SwitchboardError('CANCELLED', 'unregistered before the router acknowledged it'));
      if (!this._canSend() && this._state !== 'registering') {
        resolve();
        return;
      }
      const id = this._nextCtl++;
      this._frame(K.UNREGISTER, 0, CTL_HI, id, [h.nameB], NIL_PAYLOAD);
      this._ctls.set(id, { kind: 'unregister', resolve, reject });
      this._maybeOnline();
    });
    p.catch(noop);
    return p;
  }

  _onAck(m) {
    if (m.hi !== CTL_HI) return;
    const c = this._ctls.get(m.lo);
    if (c === undefined) return;
    this._ctls.delete(m.lo);
    if (c.kind === 'register') {
      c.h.ctl = 0;
      if (c.h.pending) {
        c.h.pending.resolve();
        c.h.pending = null;
      }
    } else if (c.kind === 'subscribe') {
      if (this._presence.id === m.lo) {
        this._presence.on = true;
        this._presence.id = 0;
        const ready = this._presence.ready;
        this._presence.ready = [];
        for (const r of ready) r();
      }
    } else if (c.resolve) c.resolve();
    this._maybeOnline();
  }

  /* ---- handlers: messages in -------------------------------------------- */

  _onMessage(m) {
    const isReq = m.kind === K.REQUEST;
    const h = this._handlers.get(m.name) || this._catchAll;
    if (!h) {
      if (isReq) this._answerError(m, 'NO_HANDLER', 'no handler for this name on this peer');
      return;
    }
    let args;
    try {
      args = decodePayload(m.b, m.p, m.end);
    } catch {
      if (isReq) this._answerError(m, 'BAD_FRAME', 'the payload is not one MessagePack value');
      return;
    }
    let key = null;
    if (isReq) key = keyOf(m.hi, m.lo);
    const call = new Call(this, m, key, this._idents.get(m.from) || null);
    if (isReq) this._calls.set(key, call);
    let r;
    try {
      r = h.fn(args, call);
    } catch (e) {
      call._fail(e);
      return;
    }
    if (r !== null && typeof r === 'object' && typeof r.then === 'function')
      r.then((v) => call._done(v), (e) => call._fail(e));
    else call._done(r);
  }

  _answerError(m, code, text) {
    this._frame(K.ERROR, 0, m.hi, m.lo, [packUint(WIRE[code]), textStr(text), NIL_FIELD], NIL_PAYLOAD);
  }

  _callDone(call) {
    if (call._key !== null && this._calls.get(call._key) === call) this._calls.delete(call._key);
  }

  _onCancel(m) {
    const key = keyOf(m.hi, m.lo);
    const call = this._calls.get(key);
    if (call === undefined) return;
    this._calls.delete(key);
    call._kill(new SwitchboardError('CANCELLED', 'the requester cancelled the request'));
  }

  _handlerError(call, e) {
    const err = e instanceof SwitchboardError ? e
      : new SwitchboardError('INTERNAL', `the handler for ${call.name} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    this.emit('error', err);
  }

  /* ---- requests --------------------------------------------------------- */

  /** Fire-and-forget to one handler of name (opts.to: to that peer). */
  send(name, args, opts = {}) {
    this._sendFrame(name, args, opts.to, 0);
  }

  /** send() to the peer named peer (its handler for name, or its catch-all). */
  sendTo(peer, name, args) {
    if (peer === null || peer === undefined) throw new SwitchboardError('INVAL', 'sendTo needs a peer name');
    this._sendFrame(name, args, peer, 0);
  }

  /** send() to every handler of name. */
  sendAll(name, args) {
    this._sendFrame(name, args, null, F.BROADCAST);
  }

  _sendFrame(name, args, to, flags) {
    const nameB = checkStr(name, 'name');
    const toB = to === null || to === undefined ? NIL_FIELD : checkStr(to, 'peer');
    const payload = encodePayload(args);
    if (!this._canSend()) throw this._notOnline(false);
    this._frame(K.SEND, flags, 0, 0, [nameB, toB, 0], payload);
  }

  _notOnline(isRequest) {
    if (this._state === 'draining' && isRequest) return new SwitchboardError('DRAINING', 'the router is shutting down');
    if (this._state === 'closed') return new SwitchboardError('OFFLINE', 'the client was closed');
    return new SwitchboardError('OFFLINE', 'not connected to the router');
  }

  /**
   * A request; resolves with the final reply {outcome, data}, rejects with a
   * SwitchboardError. Progress and chunks are skipped (stream() has them).
   */
  request(name, args, opts = {}) {
    return new Promise((resolve, reject) => {
      this._request('request', name, args, opts, opts.to, 0, { resolve, reject });
    });
  }

  /** request() to the peer named peer. */
  requestTo(peer, name, args, opts = {}) {
    return new Promise((resolve, reject) => {
      if (peer === null || peer === undefined) throw new SwitchboardError('INVAL', 'requestTo needs a peer name');
      this._request('request', name, args, opts, peer, 0, { resolve, reject });
    });
  }

  /**
   * Asks every handler of name. Resolves with {results, counts}: results is
   * a Map from peer name to {ok: true, outcome, data} or {ok: false, error},
   * counts the router's tally {peers, ok, errors, timeouts, gone}.
   */
  requestAll(name, args, opts = {}) {
    return new Promise((resolve, reject) => {
      this._request('all', name, args, opts, null, F.BROADCAST, { resolve, reject });
    });
  }

  /**
   * The replies of a request as an async iterator: {type: 'progress' |
   * 'chunk' | 'reply', outcome, data}, the final reply last. Stops reading
   * from the router while highWaterMark bytes wait unread. Breaking out of
   * the loop or aborting opts.signal cancels the request.
   */
  stream(name, args, opts = {}) {
    const s = new ReplyStream(this);
    s._req = this._request('stream', name, args, opts, opts.to, 0, s);
    return s;
  }

  _request(type, name, args, opts, to, flags, sink) {
    const nameB = checkStr(name, 'name');
    const toB = to === null || to === undefined ? NIL_FIELD : checkStr(to, 'peer');
    const timeout = checkTimeout(opts.timeout ?? this._o.timeout);
    const payload = encodePayload(args);
    const signal = opts.signal;
    if (signal !== undefined && signal !== null && signal.aborted) throw aborted(signal);
    if (this._state !== 'online') throw this._notOnline(true);
    const id = this._nextId++;
    const hi = Math.floor(id / 4294967296);
    const lo = id >>> 0;
    this._frame(K.REQUEST, flags, hi, lo, [nameB, toB, 0, timeout], payload);
    const r = { id, hi, lo, type, sink, signal: null, onAbort: null, slot: 0, results: null };
    if (type === 'all') r.results = new Map();
    this._reqs.set(id, r);
    r.slot = this._deadlines.add(r, this._now() + (timeout || ROUTER_TIMEOUT_MS) + GRACE_MS);
    if (signal !== undefined && signal !== null) {
      r.signal = signal;
      r.onAbort = () => this._cancelReq(r, aborted(signal));
      signal.addEventListener('abort', r.onAbort, { once: true });
    }
    return r;
  }

  /* The terminal event of a request: it leaves the table first, so nothing
   * it triggers (a cancel, a deadline, a lost connection) reaches it again. */
  _end(r, err, skipMap, value) {
    if (!skipMap) this._reqs.delete(r.id);
    this._deadlines.remove(r, r.slot);
    if (r.onAbort !== null) r.signal.removeEventListener('abort', r.onAbort);
    if (r.type === 'stream') {
      if (err !== null) r.sink._fail(err);
      else r.sink._push(value, 0, true);
    } else if (err !== null) r.sink.reject(err);
    else r.sink.resolve(value);
  }

  _cancelReq(r, err) {
    if (this._reqs.get(r.id) !== r) return;
    if (this._canSend()) this._frame(K.CANCEL, 0, r.hi, r.lo, [], NIL_PAYLOAD);
    this._end(r, err || new SwitchboardError('CANCELLED', 'cancelled by this client'), false);
  }

  _expire(r) {
    if (this._reqs.get(r.id) !== r) return;
    r.slot = 0;
    // The router, if it still has the request, frees it and its handler.
    if (this._canSend()) this._frame(K.CANCEL, 0, r.hi, r.lo, [], NIL_PAYLOAD);
    this._reqs.delete(r.id);
    if (r.onAbort !== null) r.signal.removeEventListener('abort', r.onAbort);
    const err = new SwitchboardError('TIMEOUT', 'no answer from the router within the timeout plus 1 s');
    if (r.type === 'stream') r.sink._fail(err);
    else r.sink.reject(err);
  }

  _onReply(m) {
    if (m.hi >= CTL_HI) return;
    const r = this._reqs.get(idOf(m.hi, m.lo));
    if (r === undefined) return; // ended already, locally or before
    const more = (m.flags & F.MORE) !== 0;
    if (more) {
      const chunk = (m.flags & F.CHUNK) !== 0;
      if (r.type === 'request') return;
      if (r.type === 'all' && (chunk || m.peer === null)) return;
    }
    let data;
    try {
      data = decodePayload(m.b, m.p, m.end);
    } catch (e) {
      // The stream goes on at the router: stop it.
      if (more && this._canSend()) this._frame(K.CANCEL, 0, r.hi, r.lo, [], NIL_PAYLOAD);
      this._end(r, new SwitchboardError('BAD_FRAME', 'a reply\'s payload is not one MessagePack value', { cause: e }), false);
      return;
    }
    if (!more) {
      if (r.type === 'all') this._end(r, null, false, { results: r.results, counts: data });
      else if (r.type === 'stream') this._end(r, null, false, { type: 'reply', outcome: m.outcome, data });
      else this._end(r, null, false, { outcome: m.outcome, data });
      return;
    }
    if (r.type === 'all') {
      r.results.set(m.peer, { ok: true, outcome: m.outcome, data });
      return;
    }
    const type = (m.flags & F.CHUNK) !== 0 ? 'chunk' : 'progress';
    r.sink._push({ type, outcome: m.outcome, data }, m.end - m.p + 16, false);
  }

  _onError(m) {
    if (m.hi === 0 && m.lo === 0) {
      this._connError(m);
      return;
    }
    if (m.hi >= CTL_HI) {
      this._ctlError(m);
      return;
    }
    const r = this._reqs.get(idOf(m.hi, m.lo));
    if (r === undefined) return;
    let data = null;
    try {
      data = decodePayload(m.b, m.p, m.end);
    } catch {
      data = null;
    }
    const err = wireError(m.code, m.text, data, m.peer, m.appCode);
    // With MORE it is one peer's part of a broadcast, never the end.
    if (m.flags & F.MORE) {
      if (r.type === 'all' && m.peer !== null) r.results.set(m.peer, { ok: false, error: err });
      return;
    }
    this._end(r, err, false);
  }

  /* An error about the connection as a whole. */
  _connError(m) {
    const err = wireError(m.code, m.text, null, null);
    this.emit('error', err);
    if (!(m.flags & F.FATAL)) return;
    // Refused the same way forever: stop.
    if (err.code === 'DUP_NAME' || err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN') this._stop(err);
    else this._drop(err);
  }

  _ctlError(m) {
    const c = this._ctls.get(m.lo);
    const err = wireError(m.code, m.text, null, null);
    if (c === undefined) return;
    this._ctls.delete(m.lo);
    if (c.kind === 'register') {
      const h = c.h;
      h.ctl = 0;
      this._removeHandler(h); // not registered: never registered again either
      err.message = `${h.name === null ? 'the catch-all' : h.name}: ${err.message}`;
      this._refused(h.pending, err);
      h.pending = null;
    } else if (c.kind === 'subscribe') {
      this.emit('error', err);
    } else {
      this.emit('error', err);
      if (c.reject) c.reject(err);
    }
    this._maybeOnline();
  }

  /* ---- stream flow control ---------------------------------------------- */

  _buffer(n) {
    this._buffered += n;
    if (!this._paused && this._buffered > this._o.highWaterMark && this._conn !== null) {
      this._paused = true;
      this._conn.pause();
      // The router closes a connection it hears nothing from (its idle
      // time, then the PONG timeout), and while we read nothing we answer
      // none of its PINGs: our own PINGs tell it we are alive.
      this._keepAlive = setInterval(() => {
        if (this._canSend()) this._frame(K.PING, 0, 0, 0, [], NIL_PAYLOAD);
      }, this._o.keepAliveMs);
      if (this._keepAlive.unref) this._keepAlive.unref();
    }
  }

  _unbuffer(n) {
    this._buffered -= n;
    if (this._paused && this._buffered <= this._o.highWaterMark / 2) {
      this._resume();
      if (this._conn !== null) this._conn.resume();
    }
  }

  _resume() {
    this._paused = false;
    clearInterval(this._keepAlive);
    this._keepAlive = null;
  }

  /* ---- presence --------------------------------------------------------- */

  _listeners(event, count) {
    if (event !== 'presence') return;
    const had = this._presenceListeners;
    this._presenceListeners = count;
    if (count > had) this._presenceUser(1);
    else if (count < had) this._presenceUser(-1);
  }

  /**
   * Presence events as an async iterator of {event: 'connected' |
   * 'disconnected' | 'draining', peer, peerId, role, subject}; its ready
   * promise resolves once the router has acknowledged the subscription.
   */
  presence() {
    const w = new PresenceWatch(this, this._o.presenceMax);
    this._presence.watches.add(w);
    w.ready = new Promise((resolve) => {
      if (this._presence.on) resolve();
      else this._presence.ready.push(resolve);
    });
    this._presenceUser(1);
    const close = w.close.bind(w);
    w.close = () => {
      this._presence.watches.delete(w);
      close();
    };
    return w;
  }

  _presenceUser(d) {
    const p = this._presence;
    p.users += d;
    if (!(this._canSend() || this._state === 'registering')) return;
    if (d > 0 && p.users === 1 && !p.on && p.id === 0) this._subscribe(false);
    else if (d < 0 && p.users === 0 && (p.on || p.id !== 0)) this._subscribe(true);
  }

  _subscribe(off) {
    const id = this._nextCtl++;
    this._frame(K.SUBSCRIBE, off ? F.OFF : 0, CTL_HI, id, [PRESENCE_TOPIC], NIL_PAYLOAD);
    this._ctls.set(id, { kind: 'subscribe' });
    this._presence.id = off ? 0 : id;
    if (off) this._presence.on = false;
  }

  _onPresence(m) {
    let info = {};
    try {
      info = decodePayload(m.b, m.p, m.end) || {};
    } catch {
      info = {};
    }
    const ident = { peer: m.peer, role: typeof info.role === 'string' ? info.role : null,
      subject: typeof info.subject === 'string' ? info.subject : null };
    if (m.event === 4) {
      // Its bearer token's claims: the router's copy of a verified token.
      const c = info.claims;
      ident.claims = c !== null && typeof c === 'object' && !Array.isArray(c) ? c : null;
      // The router's window: it forgets every sender when it must
      // introduce one past IDENT_WINDOW, and will introduce them again.
      if (this._idents.size >= IDENT_WINDOW && !this._idents.has(m.peerId)) this._idents.clear();
      this._idents.set(m.peerId, ident);
      return;
    }
    const event = PRESENCE_EVENTS[m.event];
    if (event === undefined) return; // later events are for later libraries
    const ev = { event, peer: m.peer, peerId: m.peerId, role: ident.role, subject: ident.subject };
    this.emit('presence', ev);
    for (const w of this._presence.watches) w._push(ev);
  }
}

const PRESENCE_TOPIC = packStr('presence');
