// Switchboard's JavaScript client, for Node: connect() over TCP or TLS, with
// node:crypto for the shared-secret handshake. The core (client.js) is the
// same for every transport.

import { createHmac, randomBytes } from 'node:crypto';
import { Client, connectWith } from './client.js';
import { nodeConnect } from './transport-node.js';

export { SwitchboardError, CODES } from './errors.js';
export { Client, connectWith };

const nodeEnv = Object.freeze({
  connect: nodeConnect,
  hmacSha256: (key, data) => createHmac('sha256', key).update(data).digest(),
  random: (n) => randomBytes(n),
  alloc: (n) => Buffer.allocUnsafe(n),
  now: () => performance.now(),
});

/**
 * Connects to a router and resolves with the client once it is online.
 * Without waitOnFirstConnect, a first attempt that fails rejects (OFFLINE, or
 * UNAUTHORIZED / DUP_NAME / FORBIDDEN when the router refused us); later
 * losses reconnect with backoff.
 */
export function connect(opts = {}) {
  return connectWith(opts, nodeEnv);
}
