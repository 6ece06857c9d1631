// A stand-in router for what a real one never does: it welcomes a client
// (with a frame limit of our choice), then records every frame it receives
// and answers nothing unless told to. Frames are read by hand from the
// layout in docs/protocol.md, not with the client's own reader.

import net from 'node:net';

export async function fakeRouter({ maxFrame = 1 << 20 } = {}) {
  const frames = []; // {kind, id, body} in arrival order, HELLO included
  const sockets = [];
  const server = net.createServer((sock) => {
    sockets.push(sock);
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const body = buf.subarray(4, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(4 + body.length);
        const f = { kind: body[1], flags: body[2], id: body.readBigUInt64BE(4), body };
        frames.push(f);
        if (f.kind === 1) sock.write(welcome(maxFrame)); // HELLO
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    frames,
    /** Sends raw bytes to every connected client. */
    write(bytes) {
      for (const s of sockets) s.write(bytes);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/* WELCOME: version 1, peer "fake", peer_id 7, max_frame, payload nil. */
function welcome(maxFrame) {
  const body = Buffer.from([0x98, 0x04, 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    0xa4, 0x66, 0x61, 0x6b, 0x65, 0x07, 0xce, 0, 0, 0, 0, 0xc0]);
  body.writeUInt32BE(maxFrame, 20);
  const f = Buffer.alloc(4 + body.length);
  f.writeUInt32BE(body.length, 0);
  body.copy(f, 4);
  return f;
}

/** A REPLY frame for request id (final, outcome "late", payload nil). */
export function replyFrame(id) {
  const body = Buffer.from([0x96, 0x0a, 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0, 0xa4, 0x6c, 0x61, 0x74, 0x65, 0xc0, 0xc0]);
  body.writeBigUInt64BE(BigInt(id), 4);
  const f = Buffer.alloc(4 + body.length);
  f.writeUInt32BE(body.length, 0);
  body.copy(f, 4);
  return f;
}

/** A PING frame with id. */
export function pingFrame(id) {
  const body = Buffer.from([0x94, 0x0f, 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0]);
  body.writeBigUInt64BE(BigInt(id), 4);
  const f = Buffer.alloc(4 + body.length);
  f.writeUInt32BE(body.length, 0);
  body.copy(f, 4);
  return f;
}
