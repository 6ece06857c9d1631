// The client core over a transport of our own (connectWith), as a browser
// WebSocket transport will plug in: the router's bytes delivered whole, one
// byte at a time, cut at every point and in random pieces give the same
// replies, calls and answers. Frames are built here by hand from
// docs/protocol.md, not with the client's own writer.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { connectWith } from '../src/index.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });

function str(s) {
  const b = Buffer.from(s);
  return Buffer.concat([b.length < 32 ? Buffer.from([0xa0 | b.length]) : Buffer.from([0xd9, b.length]), b]);
}
const u32f = (n) => Buffer.from([0xce, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255]);
const NIL = Buffer.from([0xc0]);

function frame(kind, flags, id, fields, payload) {
  const idb = Buffer.alloc(9);
  idb[0] = 0xcf;
  idb.writeBigUInt64BE(BigInt(id), 1);
  const body = Buffer.concat([Buffer.from([0x90 | (fields.length + 4), kind, flags]), idb, ...fields,
    payload === undefined ? NIL : Buffer.from(packr.pack(payload))]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/* Splits frames the client wrote into {kind, id, body}. */
function frames(chunks) {
  const all = Buffer.concat(chunks);
  const out = [];
  for (let p = 0; p < all.length;) {
    const n = all.readUInt32BE(p);
    const body = all.subarray(p + 4, p + 4 + n);
    out.push({ kind: body[1], flags: body[2], id: body.readBigUInt64BE(4), body });
    p += 4 + n;
  }
  return out;
}

function memory() {
  const m = { written: [], sink: null };
  m.env = {
    connect(opts, sink) {
      m.sink = sink;
      queueMicrotask(() => sink.open());
      return {
        write: (b) => m.written.push(Buffer.from(b)),
        pending: 0,
        pause() {},
        resume() {},
        close() {},
        destroy() {},
      };
    },
    hmacSha256: (k, d) => createHmac('sha256', k).update(d).digest(),
    random: (n) => randomBytes(n),
    alloc: (n) => Buffer.allocUnsafe(n),
    now: () => performance.now(),
  };
  return m;
}

const BIG = Buffer.alloc(70000, 7); // a chunk bigger than any single read
const ROUTER_ID = 0x0102030405060708n;

/* The handshake: WELCOME, then the ACK of our REGISTER. Then a sender's
 * identity, a request for our handler, a stream's chunk and final reply for
 * our request 1, and a PING: the bytes cut in pieces. */
const welcome = frame(4, 0, 0, [Buffer.from([1]), str('mem'), Buffer.from([3]), u32f(1 << 20)]);
const ack = frame(7, 0, 0x8000000000000001n, []);
const phaseB = Buffer.concat([
  frame(14, 0, 0, [Buffer.from([4]), str('caller'), Buffer.from([9])], { role: 'client' }), // identity
  frame(9, 0, ROUTER_ID, [str('mem.echo'), NIL, u32f(9), u32f(1000)], { x: 'y'.repeat(300) }), // REQUEST
  frame(10, 3, 1, [str('part'), NIL], BIG), // REPLY MORE|CHUNK
  frame(10, 0, 1, [str('done'), NIL], 1), // final REPLY
  frame(15, 0, 5, []), // PING
]);

const turn = () => new Promise((r) => setImmediate(r));

async function session(pieces) {
  const m = memory();
  const connecting = connectWith({ role: 'service' }, m.env);
  await turn(); // open(), and HELLO written
  m.sink.data(welcome.subarray(0, 9)); // cut inside the id
  m.sink.data(welcome.subarray(9));
  const c = await connecting;
  const registered = c.register('mem.echo', (args, call) => ({ ...args, peer: call.peer, timeout: call.timeout }));
  await turn();
  m.sink.data(ack);
  await registered;
  const parts = [];
  const done = (async () => {
    for await (const p of c.stream('x', null)) parts.push(p);
  })();
  await turn();
  for (const p of pieces) m.sink.data(p);
  let timer;
  await Promise.race([done, new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error('the stream did not end within 5 s')), 5000);
  })]);
  clearTimeout(timer);
  await turn();
  const out = frames(m.written);
  await c.close();
  return { parts, out };
}

it('the router\'s bytes cut anywhere give the same replies, calls and answers', { timeout: 120000 }, async () => {
  const check = ({ parts, out }, how) => {
    assert.equal(parts.length, 2, how);
    assert.deepEqual(parts[0].data, BIG, how);
    assert.deepEqual(parts[1], { type: 'reply', outcome: 'done', data: 1 }, how);
    const kinds = out.map((f) => f.kind);
    assert.deepEqual(kinds, [1, 5, 9, 10, 16], how); // HELLO, REGISTER, REQUEST, REPLY, PONG
    const reply = out[3];
    assert.equal(reply.id, ROUTER_ID, how);
    const p = reply.body.indexOf(Buffer.from('ok')) + 3; // outcome "ok", peer nil, then the payload
    assert.deepEqual(packr.unpack(reply.body.subarray(p)), { x: 'y'.repeat(300), peer: 'caller', timeout: 1000 }, how);
    assert.equal(out[4].id, 5n, how);
  };
  check(await session([phaseB]), 'whole');
  // One byte at a time.
  check(await session([...phaseB].map((b) => Buffer.from([b]))), 'bytes');
  // Every cut point within the small frames, then strided through the big one.
  for (let at = 1; at < phaseB.length; at += at < 1200 ? 1 : 997)
    check(await session([phaseB.subarray(0, at), phaseB.subarray(at)]), `cut at ${at}`);
  // Random pieces.
  for (let i = 0; i < 50; i++) {
    const pieces = [];
    for (let p = 0; p < phaseB.length;) {
      const n = 1 + Math.floor(Math.random() * 5000);
      pieces.push(phaseB.subarray(p, p + n));
      p += n;
    }
    check(await session(pieces), `random ${i}`);
  }
});
