// SwitchboardError and the error codes a program switches on.
// The codes are the C names of include/switchboard/error.h without SB_E, with
// their words separated (SB_ENOHANDLER is NO_HANDLER); the numbers are the
// wire codes of docs/protocol.md, "Error codes".

/** Wire code (as carried by an ERROR frame) -> code string. */
export const CODES = Object.freeze({
  1: 'NO_HANDLER',
  2: 'TIMEOUT',
  3: 'UNKNOWN_PEER',
  4: 'NOT_CONNECTED',
  5: 'PEER_GONE',
  6: 'OFFLINE',
  7: 'UNAUTHORIZED',
  8: 'FORBIDDEN',
  9: 'INVAL',
  10: 'TOO_LARGE',
  11: 'OVERLOADED',
  12: 'BAD_FRAME',
  13: 'DUP_NAME',
  14: 'CANCELLED',
  15: 'UNSUPPORTED',
  16: 'NO_PEERS',
  17: 'DRAINING',
  18: 'INTERNAL',
  19: 'APP',
});

/** Code string -> wire code. */
export const WIRE = Object.freeze(
  Object.fromEntries(Object.entries(CODES).map(([n, c]) => [c, Number(n)])),
);

/** The standard texts, as sb_strerror() gives them. */
const TEXTS = {
  NO_HANDLER: 'no handler',
  TIMEOUT: 'timeout',
  UNKNOWN_PEER: 'unknown peer',
  NOT_CONNECTED: 'peer not connected',
  PEER_GONE: 'peer gone',
  OFFLINE: 'offline',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  INVAL: 'invalid arguments',
  TOO_LARGE: 'too large',
  OVERLOADED: 'overloaded',
  BAD_FRAME: 'bad frame',
  DUP_NAME: 'duplicate name',
  CANCELLED: 'cancelled',
  UNSUPPORTED: 'unsupported',
  NO_PEERS: 'no connected peers',
  DRAINING: 'router draining',
  INTERNAL: 'internal error',
  APP: 'application error',
  UNKNOWN: 'unknown error',
};

export class SwitchboardError extends Error {
  /**
   * @param {string} code   one of CODES' values, or UNKNOWN
   * @param {string} [message] the router's, the handler's or our words; the
   *        code's standard text when empty, so an error always says something
   * @param {object} [extra] details (an ERROR's payload; `data` is the older
   *        name of the same), appCode (code APP: the handler's own code, a
   *        string), peer (a broadcast result's peer), wireCode (for a code
   *        this library does not know), cause
   */
  constructor(code, message, extra = {}) {
    super(message || TEXTS[code] || TEXTS.UNKNOWN, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'SwitchboardError';
    this.code = code;
    this.wireCode = extra.wireCode ?? WIRE[code] ?? 0;
    const details = extra.details !== undefined ? extra.details : extra.data;
    if (details !== undefined) {
      this.details = details;
      this.data = details;
    }
    if (extra.appCode !== undefined) this.appCode = extra.appCode;
    if (extra.peer !== undefined) this.peer = extra.peer;
  }
}

/** The error an ERROR frame carries. A code we do not know (a newer router)
 * is a generic failure, as docs/protocol.md asks. */
export function wireError(wireCode, text, data, peer, appCode) {
  const code = CODES[wireCode] || 'UNKNOWN';
  const extra = { wireCode };
  if (data !== undefined && data !== null) extra.details = data;
  if (appCode !== undefined && appCode !== null) extra.appCode = appCode;
  if (peer !== undefined && peer !== null) extra.peer = peer;
  return new SwitchboardError(code, text, extra);
}
