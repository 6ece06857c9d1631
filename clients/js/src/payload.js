// Payloads: one MessagePack value each, through msgpackr, configured for
// peers in other languages (plain maps, no msgpackr records) and checked on
// the way out, so a value that cannot travel is refused before a byte is sent.

import { Packr, Unpackr } from 'msgpackr';
import { SwitchboardError } from './errors.js';

class Unserialisable extends Error {}

const packr = new Packr({
  useRecords: false, // records are msgpackr's own extension: other peers could not read them
  encodeUndefinedAsNil: true, // not msgpackr's fixext "undefined", which other peers do not know
  variableMapSize: true, // fixmap for small objects, as other encoders write them, not always map16
  // A function would otherwise travel as nil, silently.
  writeFunction(fn) {
    throw new Unserialisable(`a function (${fn.name || 'anonymous'}) cannot be sent`);
  },
});

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'auto', // a number when exact, a BigInt beyond 2^53
  copyBuffers: true, // a bin must not pin the receive buffer it came in
});

const NIL = Uint8Array.of(0xc0);

/**
 * The MessagePack bytes of a payload value (valid until the next call).
 * @throws SwitchboardError INVAL for a value MessagePack cannot carry
 */
export function encodePayload(value) {
  if (value === undefined || value === null) return NIL;
  try {
    return packr.pack(value);
  } catch (e) {
    let why = e instanceof Unserialisable ? e.message : e instanceof RangeError && /call stack/.test(e.message)
      ? 'a value that contains itself (or nests too deeply)' : e.message;
    throw new SwitchboardError('INVAL', `the payload cannot be sent as MessagePack: ${why}`, { cause: e });
  }
}

/**
 * The value of the payload in b[start, end), which must be exactly one
 * MessagePack value.
 * @throws SwitchboardError BAD_FRAME
 */
export function decodePayload(b, start, end) {
  if (end - start === 1 && b[start] === 0xc0) return null;
  try {
    return unpackr.unpack(b, { start, end });
  } catch (e) {
    throw new SwitchboardError('BAD_FRAME', 'the payload is not one MessagePack value', { cause: e });
  }
}
