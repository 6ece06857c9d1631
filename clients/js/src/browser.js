// Switchboard's JavaScript client, for browsers: connect() over the router's
// WebSocket endpoint, with WebCrypto for the shared-secret handshake. The
// core (client.js) is the one Node uses.

import { Client, connectWith } from './client.js';
import { SwitchboardError } from './errors.js';
import { wsConnect } from './transport-ws.js';

export { SwitchboardError, CODES } from './errors.js';
export { Client, connectWith };

/* HMAC-SHA256 through WebCrypto, which browsers give only to secure
 * contexts (https pages, and http://localhost or 127.0.0.1). */
async function hmacSha256(key, data) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle)
    throw new SwitchboardError('UNAUTHORIZED', 'a secret needs WebCrypto, which this page lacks (not a secure context: serve it over https or from localhost)');
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, data));
}

const browserEnv = Object.freeze({
  connect: wsConnect,
  hmacSha256,
  random: (n) => globalThis.crypto.getRandomValues(new Uint8Array(n)),
  alloc: (n) => new Uint8Array(n),
  now: () => performance.now(),
});

/**
 * Connects to a router's WebSocket endpoint (url, or ws://host:port/v1/ws)
 * and resolves with the client once it is online; the rest is as in Node.
 */
export function connect(opts = {}) {
  return connectWith(opts, browserEnv);
}
