// The browser transport: the router's WebSocket endpoint (GET /v1/ws,
// subprotocol switchboard.v1) behind the interface the client core drives
// (docs/js-client.md, "Transports"), through WebSocketStream where the
// browser has it (reading can stop, so flow control holds) or WebSocket.

import { SwitchboardError } from './errors.js';

const PROTOCOL = 'switchboard.v1';
const DRAIN_POLL_MS = 10; // WebSocket has no drain event: bufferedAmount is polled
const PREFIX = 4; // a frame's length prefix

/* Calls send() with runs of the whole frames in b, each run at most cap
 * bytes (a frame larger than cap alone): the router takes a message of at
 * most its frame limit and the prefix (docs/gateway.md), and one write of
 * the core's can hold a turn's frames. The runs are views, not copies. */
function eachMessage(b, cap, send) {
  const n = b.length;
  let start = 0;
  let off = 0;
  while (off < n) {
    const len = PREFIX + (((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0);
    if (off > start && off + len - start > cap) {
      send(b.subarray(start, off));
      start = off;
    }
    off += len;
  }
  if (off > start) send(b.subarray(start, n));
}

/** The endpoint for opts: url as given, else ws[s]://host:port/v1/ws. */
export function wsUrl(opts) {
  if (opts.url !== null && opts.url !== undefined) {
    if (typeof opts.url !== 'string' || !/^wss?:\/\//i.test(opts.url))
      throw new SwitchboardError('INVAL', `url must be a ws:// or wss:// URL, not ${JSON.stringify(opts.url)}`);
    return opts.url;
  }
  const secure = opts.tls !== null && opts.tls !== undefined && opts.tls !== false;
  const host = opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host;
  return `${secure ? 'wss' : 'ws'}://${host}:${opts.port}/v1/ws`;
}

/* A browser tells a page nothing about a failed upgrade (a refused origin,
 * a 404, nothing listening all look alike, close code 1006), so these stay
 * OFFLINE and are retried. A refusal in the protocol (a wrong secret, a
 * taken name) comes as an ERROR frame before the close and is the core's. */
function why(url, code, reason, opened) {
  if (!opened)
    return new SwitchboardError('OFFLINE', `WebSocket to ${url} failed (nothing listening, or the upgrade refused: is the page's origin in --ws-allow-origin?)`);
  if (code === 1000 || code === 1001) return null;
  return new SwitchboardError('OFFLINE', `WebSocket to ${url} closed (${code}${reason ? `: ${reason}` : ''})`);
}

/**
 * Opens a connection and returns its transport; sink as in transport-node.js.
 * opts.webSocketStream: undefined uses WebSocketStream when the browser has
 * it, false always WebSocket.
 */
export function wsConnect(opts, sink) {
  const url = wsUrl(opts);
  const WSS = globalThis.WebSocketStream;
  if (typeof WSS === 'function' && opts.webSocketStream !== false) return streamConnect(WSS, url, sink);
  if (typeof globalThis.WebSocket !== 'function')
    throw new SwitchboardError('INVAL', 'no WebSocket in this JavaScript environment (in Node, use the package\'s Node entry: TCP and TLS)');
  return socketConnect(url, sink);
}

/* WebSocketStream: reading is a loop of reader.read(), and pause() stops it.
 * The browser then stops taking messages off the socket, TCP pushes back on
 * the router, and the router pauses the producer of the stream, as with
 * Node's socket.pause(). Writes are counted until their promise settles. */
function streamConnect(WSS, url, sink) {
  let ws;
  let reader = null;
  let writer = null;
  let opened = false;
  let ended = false;
  let paused = false;
  let reading = false;
  let pending = 0;
  const end = (err) => {
    if (ended) return;
    ended = true;
    sink.closed(err);
  };
  try {
    ws = new WSS(url, { protocols: [PROTOCOL] });
  } catch (e) {
    throw new SwitchboardError('INVAL', `WebSocket to ${url}: ${e.message}`, { cause: e });
  }
  const pump = async () => {
    if (reading || ended) return;
    reading = true;
    try {
      while (!paused && !ended) {
        const { value, done } = await reader.read();
        if (done || ended) break;
        if (typeof value === 'string') {
          ws.close({ closeCode: 1003, reason: 'Switchboard speaks binary' });
          end(new SwitchboardError('BAD_FRAME', 'the router sent a text message'));
          break;
        }
        sink.data(new Uint8Array(value));
      }
    } catch {
      /* the close below tells why */
    }
    reading = false;
  };
  ws.opened.then((o) => {
    if (ended) return;
    opened = true;
    reader = o.readable.getReader();
    writer = o.writable.getWriter();
    sink.open();
    pump();
  }, () => end(why(url, 1006, '', false)));
  ws.closed.then((c) => end(why(url, c.closeCode, c.reason, opened)), (e) => end(why(url, e.closeCode || 1006, e.reason || '', opened)));
  const send = (bytes) => {
    const n = bytes.length;
    pending += n;
    writer.write(bytes).then(
      () => {
        pending -= n;
        if (pending === 0) sink.drain();
      },
      () => {
        pending -= n;
      },
    );
  };
  return {
    frameMax: 0, // the router's, from WELCOME; until then a frame per message
    write(bytes) {
      if (writer === null || ended) return;
      eachMessage(bytes, PREFIX + this.frameMax, send);
    },
    get pending() {
      return pending;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      if (reader !== null) pump();
    },
    close() {
      if (writer !== null) writer.close().catch(() => {});
      else ws.close({ closeCode: 1000 });
    },
    // The core has let go of this connection: nothing more is reported
    // (reporting now would re-enter it; Node reports a destroy later).
    destroy() {
      ended = true;
      try {
        ws.close({ closeCode: 1000 });
      } catch {
        /* closed already */
      }
    },
  };
}

/* WebSocket: messages are handed to the page as fast as they come and
 * cannot be refused, so pause() cannot stop them (docs/js-client.md, "Flow
 * control in the browser"). Output is ws.bufferedAmount, polled while
 * anything waits, since WebSocket has no drain event. */
function socketConnect(url, sink) {
  let ws;
  let opened = false;
  let ended = false;
  let poll = null;
  try {
    ws = new WebSocket(url, PROTOCOL);
  } catch (e) {
    throw new SwitchboardError('INVAL', `WebSocket to ${url}: ${e.message}`, { cause: e });
  }
  ws.binaryType = 'arraybuffer';
  const end = (err) => {
    if (ended) return;
    ended = true;
    if (poll !== null) clearInterval(poll);
    poll = null;
    sink.closed(err);
  };
  ws.onopen = () => {
    opened = true;
    sink.open();
  };
  ws.onmessage = (ev) => {
    if (ended) return;
    if (typeof ev.data === 'string') {
      ws.close(1003, 'Switchboard speaks binary');
      end(new SwitchboardError('BAD_FRAME', 'the router sent a text message'));
      return;
    }
    sink.data(new Uint8Array(ev.data));
  };
  ws.onclose = (ev) => end(why(url, ev.code, ev.reason, opened));
  const watch = () => {
    if (poll !== null || ended) return;
    poll = setInterval(() => {
      if (ended || ws.bufferedAmount > 0) return;
      clearInterval(poll);
      poll = null;
      sink.drain();
    }, DRAIN_POLL_MS);
  };
  const send = (bytes) => ws.send(bytes);
  return {
    frameMax: 0, // the router's, from WELCOME; until then a frame per message
    write(bytes) {
      if (ended || ws.readyState !== 1) return;
      eachMessage(bytes, PREFIX + this.frameMax, send);
      if (ws.bufferedAmount > 0) watch();
    },
    get pending() {
      return ended ? 0 : ws.bufferedAmount;
    },
    pause() {},
    resume() {},
    close() {
      ws.close(1000);
    },
    destroy() {
      ended = true;
      if (poll !== null) clearInterval(poll);
      poll = null;
      try {
        ws.close(1000);
      } catch {
        /* closed already */
      }
    },
  };
}
