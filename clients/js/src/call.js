// A message delivered to a handler: its arguments' metadata, the sender the
// router vouches for, and the ways to answer (final reply, progress, stream
// chunks with flow control, an error), plus an AbortSignal for the cancel.

import { SwitchboardError, WIRE } from './errors.js';
import { K, F, checkStr, textStr, NIL_FIELD } from './frame.js';
import { encodePayload } from './payload.js';

const OPEN = 0;
const FINISHED = 1; // the final answer went out
const DEAD = 2; // cancelled, or the connection is gone: nobody hears an answer

const noop = () => {};

/* A rejected promise nobody awaits must not crash the program: the handler
 * that ignores call.chunk()'s promise still sees the cancel in call.signal. */
function handled(p) {
  p.catch(noop);
  return p;
}

/* What a handler threw, as an application error, or null: a
 * SwitchboardError of code APP with its appCode, or anything else (an
 * Error, a plain object as in `throw {code: 'MYERRCODE', msg}`) whose `code`
 * is a string that is not a SwitchboardError's. Its message is `message`
 * (or `msg`), its details `details`. A code the protocol cannot carry (too
 * long, a space) is no application error: the throw is an INTERNAL one. */
function appErrorOf(e) {
  if (e === null || typeof e !== 'object') return null;
  let code;
  if (e instanceof SwitchboardError) {
    if (e.code !== 'APP' || typeof e.appCode !== 'string') return null;
    code = e.appCode;
  } else if (typeof e.code === 'string') code = e.code;
  else return null;
  let bytes, details;
  try {
    bytes = checkStr(code, 'app');
    details = encodePayload(e.details);
  } catch {
    return null;
  }
  const message = typeof e.message === 'string' ? e.message : typeof e.msg === 'string' ? e.msg : '';
  return { code: bytes, message, details };
}

export class Call {
  constructor(client, m, key, identity) {
    this._client = client;
    this._hi = m.hi;
    this._lo = m.lo;
    this._key = key; // the router's id as a map key; null for a send
    this._state = OPEN;
    this._reason = null; // why it died (SwitchboardError)
    this._ac = null; // AbortController, made when signal is first read
    this._wake = null; // ends a chunk() waiting for the output to drain
    /** The message name it was sent to. */
    this.name = m.name;
    /** True for a request (it expects an answer), false for a send. */
    this.isRequest = m.kind === K.REQUEST;
    /** The sender's peer id on this router (0: the program embedding the router). */
    this.from = m.from;
    /** The message's headers, {key: value} ({} for none): docs/protocol.md, "Headers". */
    this.headers = m.headers || {};
    /** The sender as the router introduced it: {peer, role, subject, claims}, or null. */
    this.identity = identity;
    /** Milliseconds the router gives this request (its timeout, less time spent). */
    this.timeout = this.isRequest ? m.timeout : 0;
    this._deadline = this.isRequest ? client._now() + m.timeout : 0;
  }

  /** The sender's peer name, or null (a sender the router did not introduce). */
  get peer() {
    return this.identity ? this.identity.peer : null;
  }

  /** Aborted when the requester cancels, the router gives up on the
   * request, or the connection is lost; its reason is a SwitchboardError. */
  get signal() {
    if (this._ac === null) {
      this._ac = new AbortController();
      if (this._state === DEAD) this._ac.abort(this._reason);
    }
    return this._ac.signal;
  }

  /** True once an answer can no longer reach the requester. */
  get cancelled() {
    return this._state === DEAD;
  }

  /**
   * The final reply. Returns true if it was sent, false if the request had
   * already been cancelled or lost (nothing is sent then).
   * @throws SwitchboardError INVAL (a send, a second final answer, a bad
   *         outcome or value), TOO_LARGE
   */
  reply(outcome, data) {
    const payload = this._check(outcome, data);
    if (this._state === DEAD) return false;
    this._answer(K.REPLY, 0, [checkStr(outcome, 'label'), NIL_FIELD], payload);
    return true;
  }

  /** A progress update (MORE): resolves once the output has room, like chunk(). */
  progress(outcome, data) {
    return this._more(outcome, data, F.MORE);
  }

  /**
   * One chunk of a stream (MORE|CHUNK), delivered in order. Resolves when the
   * connection's output has room for more (flow control: await it), rejects
   * with CANCELLED or OFFLINE once nobody is listening.
   */
  chunk(outcome, data) {
    return this._more(outcome, data, F.MORE | F.CHUNK);
  }

  /**
   * Ends the request with an error the requester receives as a
   * SwitchboardError of that code and message (data: its details).
   * Returns false if the request was already cancelled or lost.
   */
  error(code, message, data) {
    if (!this.isRequest) throw new SwitchboardError('INVAL', 'a send has no reply');
    if (this._state === FINISHED) throw new SwitchboardError('INVAL', `${this.name}: the request was already answered`);
    const wire = typeof code === 'number' ? code : WIRE[code];
    if (!Number.isInteger(wire) || wire < 1 || wire > 63) throw new SwitchboardError('INVAL', `not an error code: ${code}`);
    if (wire === WIRE.APP) throw new SwitchboardError('INVAL', 'an application error has a code of its own: call.appError(code, message, details)');
    const payload = encodePayload(data);
    if (this._state === DEAD) return false;
    this._answer(K.ERROR, 0, [Uint8Array.of(wire), textStr(message ?? ''), NIL_FIELD], payload);
    return true;
  }

  /**
   * Ends the request with an application error: the requester receives a
   * SwitchboardError of code APP with `appCode` (this code, a string of 1-64
   * bytes, printable ASCII without space or UTF-8), the message and
   * `details`. Returns false if the request was already cancelled or lost.
   */
  appError(appCode, message, details) {
    if (!this.isRequest) throw new SwitchboardError('INVAL', 'a send has no reply');
    if (this._state === FINISHED) throw new SwitchboardError('INVAL', `${this.name}: the request was already answered`);
    const ac = checkStr(appCode, 'app');
    const payload = encodePayload(details);
    if (this._state === DEAD) return false;
    this._answer(K.ERROR, F.APP, [Uint8Array.of(WIRE.APP), textStr(message ?? ''), NIL_FIELD, ac], payload);
    return true;
  }

  /** client.send() from inside the handler. */
  send(name, args, opts) {
    return this._client.send(name, args, opts);
  }

  /**
   * client.request() from inside the handler. Unless given, the signal is
   * this call's (a cancel reaches the requests it made) and the timeout what
   * is left of this request's.
   */
  request(name, args, opts = {}) {
    return this._client.request(name, args, this._chained(opts));
  }

  /** client.stream() from inside the handler, chained like request(). */
  stream(name, args, opts = {}) {
    return this._client.stream(name, args, this._chained(opts));
  }

  _chained(opts) {
    const o = { ...opts };
    if (this.isRequest) {
      if (o.signal === undefined) o.signal = this.signal;
      if (o.timeout === undefined && this.timeout > 0) o.timeout = Math.max(1, Math.floor(this._deadline - this._client._now()));
    }
    return o;
  }

  _check(outcome, data) {
    if (!this.isRequest) throw new SwitchboardError('INVAL', 'a send has no reply');
    if (this._state === FINISHED) throw new SwitchboardError('INVAL', `${this.name}: the request was already answered`);
    checkStr(outcome, 'label');
    return encodePayload(data);
  }

  _more(outcome, data, flags) {
    const c = this._client;
    try {
      const payload = this._check(outcome, data);
      if (this._state === DEAD) throw this._reason;
      c._frame(K.REPLY, flags, this._hi, this._lo, [checkStr(outcome, 'label'), NIL_FIELD], payload);
    } catch (e) {
      return handled(Promise.reject(e));
    }
    if (!c._congested()) return Promise.resolve();
    return handled(this._room());
  }

  async _room() {
    const dead = new Promise((resolve) => {
      this._wake = resolve;
    });
    await Promise.race([this._client._drained(), dead]);
    this._wake = null;
    if (this._state === DEAD) throw this._reason;
  }

  _answer(kind, flags, fields, payload) {
    this._client._frame(kind, flags, this._hi, this._lo, fields, payload);
    this._state = FINISHED;
    this._client._callDone(this);
  }

  /* The handler returned (or its promise fulfilled): the value is the final
   * reply's data unless it already answered. */
  _done(value) {
    if (!this.isRequest || this._state !== OPEN) return;
    try {
      this.reply('ok', value);
    } catch (e) {
      this._fail(e);
    }
  }

  /* The handler threw (or its promise rejected). */
  _fail(e) {
    if (!this.isRequest || this._state !== OPEN) {
      if (this._state === DEAD && e === this._reason) return; // the cancel it was told about
      this._client._handlerError(this, e);
      return;
    }
    const app = appErrorOf(e);
    if (app !== null) {
      this._answer(K.ERROR, F.APP, [Uint8Array.of(WIRE.APP), textStr(app.message), NIL_FIELD, app.code], app.details);
      return;
    }
    const sbe = e instanceof SwitchboardError && e.wireCode >= 1 && e.wireCode <= 63 && e.wireCode !== WIRE.APP;
    const wire = sbe ? e.wireCode : WIRE.INTERNAL;
    const text = e instanceof Error ? e.message : String(e);
    let data;
    try {
      data = sbe && e.data !== undefined ? encodePayload(e.data) : NIL_FIELD;
    } catch {
      data = NIL_FIELD;
    }
    this._answer(K.ERROR, 0, [Uint8Array.of(wire), textStr(text), NIL_FIELD], data);
  }

  /* No answer can reach the requester any more. */
  _kill(reason) {
    if (this._state !== OPEN) return;
    this._state = DEAD;
    this._reason = reason;
    if (this._ac !== null) this._ac.abort(reason);
    if (this._wake !== null) this._wake();
  }
}
