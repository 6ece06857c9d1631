// The Node transport: TCP or TLS through node:net / node:tls, behind the
// small interface the client core drives (docs/js-client.md, "Transports").

import net from 'node:net';
import tls from 'node:tls';
import { SwitchboardError } from './errors.js';

/* TLS failures that mean a certificate was refused, by us or by the router:
 * trying again would be refused again (the C client gives up on these too). */
const CERT_REFUSED = /CERT|UNABLE_TO_(GET|VERIFY)|SELF_SIGNED|ALTNAME|ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE|ACCESS_DENIED|DECRYPT)/;

function why(e, host, port, secure) {
  if (secure && typeof e.code === 'string' && CERT_REFUSED.test(e.code))
    return new SwitchboardError('UNAUTHORIZED', `TLS with ${host}:${port} refused: ${e.message} (${e.code})`, { cause: e });
  return new SwitchboardError('OFFLINE', `connection to ${host}:${port}: ${e.message}`, { cause: e });
}

/**
 * Opens a connection and returns its transport. sink.open() once the bytes
 * can flow (after the TLS handshake), sink.data(bytes) for what arrives,
 * sink.drain() when queued output has gone, sink.closed(err|null) once.
 */
export function nodeConnect(opts, sink) {
  const { host, port } = opts;
  const secure = opts.tls !== null && opts.tls !== undefined && opts.tls !== false;
  let sock;
  if (secure) {
    const t = opts.tls === true ? {} : opts.tls;
    const o = { host, port, minVersion: 'TLSv1.3', ...t };
    // An address is checked against the certificate's IP addresses and
    // sent without SNI (RFC 6066 has no SNI for addresses).
    if (o.servername === undefined && !net.isIP(host)) o.servername = host;
    sock = tls.connect(o, () => sink.open());
  } else {
    sock = net.connect({ host, port }, () => sink.open());
  }
  sock.setNoDelay(true);
  let err = null;
  sock.on('data', (b) => sink.data(b));
  sock.on('drain', () => sink.drain());
  sock.on('error', (e) => {
    if (err === null) err = e;
  });
  sock.on('close', () => sink.closed(err === null ? null : why(err, host, port, secure)));
  return {
    write(bytes) {
      sock.write(bytes);
    },
    get pending() {
      return sock.writableLength;
    },
    pause() {
      sock.pause();
    },
    resume() {
      sock.resume();
    },
    close() {
      sock.end();
      // A router that never answers our FIN must not keep the program alive.
      setTimeout(() => sock.destroy(), 2000).unref();
    },
    destroy() {
      sock.destroy();
    },
  };
}
