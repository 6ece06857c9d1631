// The wire format of docs/protocol.md: frame headers written and read by our
// own code (ids and the router-patched fields are fixed-width, which general
// MessagePack encoders do not produce), strings checked by their class.
// Portable: Uint8Array only, so the browser transport uses it unchanged.

import { SwitchboardError } from './errors.js';

export const VERSION = 1;
export const PREFIX = 4;
export const BODY_MIN = 13;
export const FRAME_MAX_DEFAULT = 1 << 20;
export const FRAME_MAX_LIMIT = 64 << 20;
export const NAME_MAX = 255;
export const PEER_MAX = 64;
export const TEXT_MAX = 1024;
export const TOKEN_MAX = 32;
export const APPCODE_MAX = 64;
export const HEADERS_COUNT_MAX = 16;

export const K = Object.freeze({
  HELLO: 1, CHALLENGE: 2, AUTH: 3, WELCOME: 4, REGISTER: 5, UNREGISTER: 6, ACK: 7,
  SEND: 8, REQUEST: 9, REPLY: 10, ERROR: 11, CANCEL: 12, SUBSCRIBE: 13, PRESENCE: 14,
  PING: 15, PONG: 16, GOODBYE: 17,
});

export const F = Object.freeze({
  INTERNAL: 1, // REGISTER
  BROADCAST: 1, // SEND, REQUEST
  MORE: 1, // REPLY, ERROR
  CHUNK: 2, // REPLY
  FATAL: 2, // ERROR
  APP: 4, // ERROR: code 19, an application code follows peer
  HEADERS: 2, // SEND, REQUEST: a header map follows the last fixed field
  OFF: 1, // SUBSCRIBE
});

/* Elements per kind (kind, flags, id, fields..., payload), index = kind. */
const ELEMS = [0, 7, 6, 6, 8, 5, 5, 4, 7, 8, 6, 7, 4, 5, 7, 4, 4, 6];

const NIL = Uint8Array.of(0xc0);
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/* ---- strings ------------------------------------------------------------- */

/* The classes of docs/protocol.md, "Strings": byte limits, and whether a
 * space is allowed (labels) or any character at all (texts). */
const CLASSES = {
  name: { what: 'message name', min: 1, max: NAME_MAX, space: false, any: false },
  peer: { what: 'peer name', min: 1, max: PEER_MAX, space: false, any: false },
  token: { what: 'role', min: 1, max: TOKEN_MAX, space: false, any: false },
  label: { what: 'outcome', min: 1, max: NAME_MAX, space: true, any: false },
  text: { what: 'text', min: 0, max: TEXT_MAX, space: true, any: true },
  app: { what: 'application error code', min: 1, max: APPCODE_MAX, space: false, any: false },
};

/* A lone surrogate would be sent as U+FFFD: a different name than the one
 * the program gave, so it is refused instead. */
const LONE_SURROGATE = /\p{Cs}/u;
const CACHE_MAX = 4096;
const caches = { name: new Map(), peer: new Map(), token: new Map(), label: new Map() };

function strHeader(n) {
  if (n < 32) return [0xa0 | n];
  if (n < 256) return [0xd9, n];
  if (n < 65536) return [0xda, n >> 8, n & 0xff];
  return [0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** MessagePack str bytes of s. */
export function packStr(s) {
  return strOf(encoder.encode(s));
}

function strOf(utf8) {
  const h = strHeader(utf8.length);
  const out = new Uint8Array(h.length + utf8.length);
  out.set(h, 0);
  out.set(utf8, h.length);
  return out;
}

function quote(s) {
  return JSON.stringify(s.length > 64 ? s.slice(0, 64) + '...' : s);
}

/**
 * Checks s against a string class and returns its MessagePack str bytes.
 * Names are reused (a service answers the same few thousands of times a
 * second), so their bytes are kept.
 * @throws SwitchboardError INVAL naming the fault
 */
export function checkStr(s, cls) {
  const cache = caches[cls];
  if (cache !== undefined) {
    const hit = cache.get(s);
    if (hit !== undefined) return hit;
  }
  const c = CLASSES[cls];
  if (typeof s !== 'string')
    throw new SwitchboardError('INVAL', `${c.what} must be a string, not ${s === null ? 'null' : typeof s}`);
  if (LONE_SURROGATE.test(s))
    throw new SwitchboardError('INVAL', `${c.what} ${quote(s)} is not valid Unicode (a lone surrogate)`);
  const utf8 = encoder.encode(s);
  if (utf8.length < c.min) throw new SwitchboardError('INVAL', `${c.what} must not be empty`);
  if (utf8.length > c.max)
    throw new SwitchboardError('INVAL', `${c.what} ${quote(s)} is too long (${utf8.length} bytes, limit ${c.max})`);
  if (!c.any) {
    for (let i = 0; i < s.length; i++) {
      const ch = s.charCodeAt(i);
      if (ch < 0x80 && (ch > 0x7e || ch < 0x21) && !(c.space && ch === 0x20))
        throw new SwitchboardError('INVAL', `${c.what} ${quote(s)} has a character that is not allowed (code ${ch}): ` +
          `${c.space ? 'printable ASCII' : 'printable ASCII except space'} or UTF-8 above U+007F`);
    }
  }
  const bytes = strOf(utf8);
  if (cache !== undefined) {
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(s, bytes);
  }
  return bytes;
}

/** A text cut to TEXT_MAX bytes at a character boundary (error texts we send). */
export function textStr(s) {
  let str = typeof s === 'string' ? s.replace(/\p{Cs}/gu, '\ufffd') : String(s);
  let bytes = encoder.encode(str);
  if (bytes.length > TEXT_MAX) {
    let end = TEXT_MAX;
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
    str = decoder.decode(bytes.subarray(0, end));
  }
  return packStr(str);
}

function binBytes(b) {
  const h = b.length < 256 ? [0xc4, b.length] : [0xc5, b.length >> 8, b.length & 0xff];
  const out = new Uint8Array(h.length + b.length);
  out.set(h, 0);
  out.set(b, h.length);
  return out;
}

/* ---- writing ------------------------------------------------------------- */

const SPACE_MIN = 64 * 1024;

/**
 * Frames are written one after the other into one buffer; take() hands the
 * bytes written since the last take() to the transport in one write (or one
 * WebSocket message: whole frames, never split). A region handed out is never
 * written again: the transport may still hold it, so a full buffer is
 * replaced, not reused.
 */
export class FrameWriter {
  /** @param {(n:number)=>Uint8Array} alloc  uninitialised bytes (Buffer.allocUnsafe in Node) */
  constructor(alloc) {
    this.alloc = alloc || ((n) => new Uint8Array(n));
    this.buf = this.alloc(SPACE_MIN);
    this.start = 0; // first byte not yet taken
    this.len = 0; // bytes written
  }

  /** Bytes written and not yet taken. */
  get pending() {
    return this.len - this.start;
  }

  /** The bytes written since the last take(), or null. */
  take() {
    if (this.len === this.start) return null;
    const out = this.buf.subarray(this.start, this.len);
    this.start = this.len;
    return out;
  }

  /** Drops what was not taken (a connection that ended). */
  reset() {
    this.start = this.len;
  }

  room(n) {
    if (this.buf.length - this.len >= n) return;
    const keep = this.len - this.start; // an untaken batch moves with it
    const nb = this.alloc(Math.max(SPACE_MIN, 2 * (keep + n)));
    nb.set(this.buf.subarray(this.start, this.len), 0);
    this.buf = nb;
    this.start = 0;
    this.len = keep;
  }

  /*
   * One frame: fixarray, kind, flags, the 9-byte id, then the fields (each
   * already MessagePack bytes: strings, nil, or a number written by u32f /
   * uint), then the payload. Fields are passed as an array of Uint8Array or
   * numbers; a number n >= 0 is written as a fixed-width uint32 (0xce), the
   * width the router patches in place.
   */
  frame(kind, flags, hi, lo, fields, payload, maxBody) {
    let head = 12;
    for (let i = 0; i < fields.length; i++) head += typeof fields[i] === 'number' ? 5 : fields[i].length;
    const body = head + payload.length;
    if (body > maxBody)
      throw new SwitchboardError('TOO_LARGE', `the frame would be ${body} bytes, over the router's limit of ${maxBody}`);
    this.room(PREFIX + body);
    const b = this.buf;
    let p = this.len;
    b[p] = body >>> 24;
    b[p + 1] = (body >> 16) & 0xff;
    b[p + 2] = (body >> 8) & 0xff;
    b[p + 3] = body & 0xff;
    b[p + 4] = 0x90 | (fields.length + 4);
    b[p + 5] = kind;
    b[p + 6] = flags;
    b[p + 7] = 0xcf;
    b[p + 8] = hi >>> 24;
    b[p + 9] = (hi >> 16) & 0xff;
    b[p + 10] = (hi >> 8) & 0xff;
    b[p + 11] = hi & 0xff;
    b[p + 12] = lo >>> 24;
    b[p + 13] = (lo >> 16) & 0xff;
    b[p + 14] = (lo >> 8) & 0xff;
    b[p + 15] = lo & 0xff;
    p += 16;
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      if (typeof f === 'number') {
        b[p] = 0xce;
        b[p + 1] = f >>> 24;
        b[p + 2] = (f >> 16) & 0xff;
        b[p + 3] = (f >> 8) & 0xff;
        b[p + 4] = f & 0xff;
        p += 5;
      } else if (f.length === 1) {
        b[p++] = f[0];
      } else {
        b.set(f, p);
        p += f.length;
      }
    }
    if (payload.length === 1) b[p++] = payload[0];
    else {
      b.set(payload, p);
      p += payload.length;
    }
    this.len = p;
  }
}

/** MessagePack uint bytes in the smallest form (fields that are not fixed-width). */
export function packUint(n) {
  if (n < 128) return Uint8Array.of(n);
  if (n < 256) return Uint8Array.of(0xcc, n);
  if (n < 65536) return Uint8Array.of(0xcd, n >> 8, n & 0xff);
  return Uint8Array.of(0xce, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

export const NIL_FIELD = NIL;
export const NIL_PAYLOAD = NIL;
export { binBytes };

/* ---- reading ------------------------------------------------------------- */

/** A header the reader refuses: the byte stream can no longer be trusted. */
export class FrameFault extends Error {}

function fault(what) {
  throw new FrameFault(what);
}

/*
 * Reads one frame's header from b[start, end) (the body, after the prefix).
 * Returns a plain object with the kind's fields and the payload's range
 * (p, end), or null for a kind this library does not know (a newer router:
 * not an error, docs/protocol.md "Versioning"). Throws FrameFault for a
 * header that breaks the canonical rules.
 */
export function readFrame(b, start, end) {
  let p = start;
  const arr = b[p];
  if ((arr & 0xf0) !== 0x90) fault('body is not a MessagePack fixarray');
  const kind = b[p + 1];
  if (kind === 0 || kind > 0x7f) fault(`kind ${kind} is not a positive fixint`);
  if (kind >= ELEMS.length) return null;
  const flags = b[p + 2];
  // ERROR's flag APP adds one element (the application code) before the
  // payload, SEND's and REQUEST's HEADERS one (the header map).
  const opt = kind === K.ERROR ? flags & F.APP : kind === K.SEND || kind === K.REQUEST ? flags & F.HEADERS : 0;
  const elems = ELEMS[kind] + (opt ? 1 : 0);
  if ((arr & 0x0f) !== elems) fault(`kind ${kind}: wrong number of fields (${arr & 0x0f}, expected ${elems})`);
  if (flags > 0x7f) fault('flags are not a positive fixint');
  if (b[p + 3] !== 0xcf) fault('the id is not a fixed-width uint64');
  if (end - start < BODY_MIN) fault('frame too short');
  const m = {
    kind,
    flags,
    hi: ((b[p + 4] << 24) | (b[p + 5] << 16) | (b[p + 6] << 8) | b[p + 7]) >>> 0,
    lo: ((b[p + 8] << 24) | (b[p + 9] << 16) | (b[p + 10] << 8) | b[p + 11]) >>> 0,
    b,
    p: 0,
    end,
  };
  p += 12;
  const r = { p };
  switch (kind) {
    case K.CHALLENGE:
      m.nonce = readBin(b, r, end);
      m.mech = readStr(b, r, end, false);
      break;
    case K.WELCOME:
      m.version = readUint(b, r, end);
      m.peer = readStr(b, r, end, false);
      m.peerId = readUint(b, r, end);
      m.maxFrame = readUint(b, r, end);
      break;
    case K.SEND:
    case K.REQUEST:
      m.name = readStr(b, r, end, false);
      m.to = readStr(b, r, end, true);
      m.from = readU32f(b, r, end);
      if (kind === K.REQUEST) m.timeout = readU32f(b, r, end);
      m.headers = flags & F.HEADERS ? readHeaders(b, r, end) : {};
      break;
    case K.REPLY:
      m.outcome = readStr(b, r, end, false);
      m.peer = readStr(b, r, end, true);
      break;
    case K.ERROR:
      m.code = readUint(b, r, end);
      m.text = readStr(b, r, end, false);
      m.peer = readStr(b, r, end, true);
      m.appCode = flags & F.APP ? readStr(b, r, end, false) : null;
      if ((m.code === 19) !== (m.appCode !== null)) fault('code 19 (application error) and flag APP go together');
      break;
    case K.PRESENCE:
      m.event = readUint(b, r, end);
      m.peer = readStr(b, r, end, false);
      m.peerId = readUint(b, r, end);
      break;
    case K.GOODBYE:
      m.reason = readStr(b, r, end, false);
      m.deadline = readUint(b, r, end);
      break;
    case K.HELLO:
    case K.AUTH:
    case K.REGISTER:
    case K.UNREGISTER:
    case K.SUBSCRIBE:
      // Kinds only peers send: a router never does; skip their fields
      // by refusing to interpret them (the caller ignores the frame).
      m.ignored = true;
      return m;
    default: // ACK, CANCEL, PING, PONG: no fields
      break;
  }
  if (r.p >= end) fault('frame ends before its payload');
  m.p = r.p;
  return m;
}

function readUint(b, r, end) {
  const p = r.p;
  if (p >= end) fault('frame ends inside a field');
  const t = b[p];
  if (t < 0x80) {
    r.p = p + 1;
    return t;
  }
  let n;
  switch (t) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: fault('wrong field type (expected an unsigned integer)');
  }
  if (p + 1 + n > end) fault('frame ends inside a field');
  let v = 0;
  for (let i = 1; i <= n; i++) v = v * 256 + b[p + i];
  r.p = p + 1 + n;
  return v;
}

function readU32f(b, r, end) {
  const p = r.p;
  if (p + 5 > end) fault('frame ends inside a field');
  if (b[p] !== 0xce) fault('fixed-width integer in another width');
  r.p = p + 5;
  return ((b[p + 1] << 24) | (b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]) >>> 0;
}

function strLen(b, r, end) {
  const p = r.p;
  const t = b[p];
  if ((t & 0xe0) === 0xa0) {
    r.p = p + 1;
    return t & 0x1f;
  }
  if (t === 0xd9 && p + 2 <= end) {
    r.p = p + 2;
    return b[p + 1];
  }
  if (t === 0xda && p + 3 <= end) {
    r.p = p + 3;
    return (b[p + 1] << 8) | b[p + 2];
  }
  if (t === 0xdb && p + 5 <= end) {
    r.p = p + 5;
    return ((b[p + 1] << 24) | (b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]) >>> 0;
  }
  return -1;
}

/* Short ASCII strings (names, outcomes) are most of what arrives. */
function utf8(b, s, e) {
  if (e - s <= 32) {
    let ascii = true;
    for (let i = s; i < e; i++) if (b[i] > 0x7f) { ascii = false; break; }
    if (ascii) return String.fromCharCode.apply(null, b.subarray(s, e));
  }
  try {
    return decoder.decode(b.subarray(s, e));
  } catch {
    return fault('invalid UTF-8 in a string field');
  }
}

function readStr(b, r, end, nilOk) {
  if (r.p >= end) fault('frame ends inside a field');
  if (b[r.p] === 0xc0) {
    if (!nilOk) fault('nil where a string must be');
    r.p++;
    return null;
  }
  const n = strLen(b, r, end);
  if (n < 0) fault('wrong field type (expected a string)');
  if (r.p + n > end) fault('frame ends inside a field');
  const s = utf8(b, r.p, r.p + n);
  r.p += n;
  return s;
}

/* The header map: 1-16 pairs of strings (docs/protocol.md, "Headers"). The
 * router checked the rest; a key twice is refused here too. */
function readHeaders(b, r, end) {
  if (r.p >= end) fault('frame ends inside a field');
  let n;
  const t = b[r.p];
  if ((t & 0xf0) === 0x80) { n = t & 0x0f; r.p += 1; }
  else if (t === 0xde && r.p + 3 <= end) { n = (b[r.p + 1] << 8) | b[r.p + 2]; r.p += 3; }
  else fault('wrong field type (expected a map)');
  if (n < 1 || n > HEADERS_COUNT_MAX) fault(`headers: ${n} entries (1-${HEADERS_COUNT_MAX})`);
  const h = Object.create(null);
  for (let i = 0; i < n; i++) {
    const k = readStr(b, r, end, false);
    if (k in h) fault('duplicate header key');
    h[k] = readStr(b, r, end, false);
  }
  return h;
}

function readBin(b, r, end) {
  const p = r.p;
  if (p >= end) fault('frame ends inside a field');
  let n, h;
  if (b[p] === 0xc4 && p + 2 <= end) { n = b[p + 1]; h = 2; }
  else if (b[p] === 0xc5 && p + 3 <= end) { n = (b[p + 1] << 8) | b[p + 2]; h = 3; }
  else fault('wrong field type (expected a binary)');
  if (p + h + n > end) fault('frame ends inside a field');
  r.p = p + h + n;
  // A copy: Buffer's slice() is a view of the read buffer.
  return Uint8Array.prototype.slice.call(b, p + h, p + h + n);
}
