// Flow control end to end: a 10,000-chunk stream from a producer in its own
// Node process, through the daemon, to a consumer here that stops reading
// for a while. The producer must be held back and no process (producer,
// router, consumer) may hold more than a bounded amount of the stream.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/index.js';
import { startRouter, spawnLines, waitFor, rss } from './helpers/env.js';

const CHUNKS = 10000;
const SIZE = 16 * 1024; // 160 MB in all
const BOUND = 48 << 20; // what any one process may grow by, far below the stream

let router;
let producer;

before(async () => {
  // Out-max 4 MiB: the router pauses the producer once 1 MiB waits for us.
  router = await startRouter(['--out-max', String(4 << 20)]);
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/producer.js');
  producer = spawnLines(process.execPath, [script, String(router.port), String(CHUNKS), String(SIZE)]);
  await producer.line(/^ready$/, 30000);
});

after(async () => {
  if (producer) await producer.stop();
  await router.stop();
});

function lastReport() {
  for (let i = producer.lines.length - 1; i >= 0; i--) {
    const m = producer.lines[i].match(/^sent (\d+) rss (\d+)$/);
    if (m) return { sent: Number(m[1]), rss: Number(m[2]) };
  }
  return null;
}

it('a 10,000-chunk stream to a consumer that stalls: the producer is held back, memory stays bounded everywhere', { timeout: 120000 }, async (t) => {
  const app = await connect({ port: router.port });
  const base = { router: rss(router.pid), producer: lastReport().rss, consumer: process.memoryUsage().rss };
  const stream = app.stream('fc.stream', null, { timeout: 120000 });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.value.data.readUInt32BE(0), 0);

  // Stalled: wait until the producer has stopped making progress.
  let last = -1;
  let still = 0;
  await waitFor(() => {
    const r = lastReport();
    still = r.sent === last ? still + 1 : 0;
    last = r.sent;
    return still >= 25; // 25 reports (>= 0.5 s) without progress
  }, 60000, 'the producer to be held back');
  const held = lastReport();
  const grown = {
    router: rss(router.pid) - base.router,
    producer: held.rss - base.producer,
    consumer: process.memoryUsage().rss - base.consumer,
  };
  t.diagnostic(`held back after ${held.sent} chunks; grown: ${Object.entries(grown).map(([k, v]) => `${k} ${(v / 1048576).toFixed(1)} MiB`).join(', ')}`);
  assert.ok(held.sent < CHUNKS, `the producer sent all ${CHUNKS} chunks to a consumer that read one`);
  for (const [who, n] of Object.entries(grown))
    assert.ok(n < BOUND, `${who} grew by ${(n / 1048576).toFixed(1)} MiB while ${held.sent} chunks were held back`);

  // Reading again, slowly at first: every chunk arrives, in order, intact.
  let n = 1;
  let final = null;
  let peak = 0;
  for (;;) {
    const { value, done } = await it.next();
    if (done) break;
    if (value.type === 'reply') {
      final = value;
      continue;
    }
    assert.equal(value.data.length, SIZE);
    assert.equal(value.data.readUInt32BE(0), n, 'chunks in order');
    assert.equal(value.data[SIZE - 1], 0x5a);
    n++;
    if (n % 1000 === 0) {
      peak = Math.max(peak, rss(router.pid) - base.router);
      if (n <= 3000) await new Promise((r) => setTimeout(r, 20));
    }
  }
  assert.equal(n, CHUNKS);
  assert.deepEqual(final, { type: 'reply', outcome: 'done', data: { chunks: CHUNKS } });
  assert.ok(peak < BOUND, `the router grew by ${(peak / 1048576).toFixed(1)} MiB while the stream ran`);
  await app.close();
});
