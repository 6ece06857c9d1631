// The everyday flows of the package README, each against a real router:
// services and clients in this process, over TCP, through the daemon.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { connect, SwitchboardError } from '../src/index.js';
import { startRouter } from './helpers/env.js';

let router;
const open = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sb-js-flows-'));

async function peer(opts = {}) {
  const c = await connect({ port: router.port, ...opts });
  open.push(c);
  return c;
}

before(async () => {
  router = await startRouter();
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await router.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('the seeds\' flows', () => {
  it('user.create answers user.created with the record, and refuses an address without @', async () => {
    const users = await peer({ role: 'service', name: 'users-1' });
    let next = 1;
    await users.register('user.create', async ({ email, name }, call) => {
      if (!email.includes('@')) throw new SwitchboardError('INVAL', "email must contain '@'");
      call.reply('user.created', { id: next++, email, name });
    });
    const app = await peer();
    assert.deepEqual(await app.request('user.create', { email: 'ada@example.com', name: 'Ada Lovelace' }),
      { outcome: 'user.created', data: { id: 1, email: 'ada@example.com', name: 'Ada Lovelace' } });
    await assert.rejects(app.request('user.create', { email: 'nobody', name: 'X' }),
      { name: 'SwitchboardError', code: 'INVAL', message: "email must contain '@'" });
  });

  it('transfer names its outcome: the eight answers of the bank', async () => {
    const balances = new Map([['alice', 1000], ['bob', 100], ['legacy', 0]]);
    const today = new Map();
    const bank = await peer({ role: 'service' });
    await bank.register('transfer', ({ from, to, amount, token }, call) => {
      if (token !== 'demo-token') return call.reply('unauthorized');
      if (!balances.has(from) || !balances.has(to)) return call.reply('unknown account');
      if (to === 'legacy') throw new SwitchboardError('INTERNAL', 'ledger storage offline');
      if (amount > 500) return call.reply('transaction limit exceeded');
      if ((today.get(from) || 0) + amount > 800) return call.reply('daily limit exceeded');
      if (balances.get(from) < amount) return call.reply('insufficient funds');
      balances.set(from, balances.get(from) - amount); // reserved now, so a pending one cannot bounce
      today.set(from, (today.get(from) || 0) + amount);
      if (amount > 200) return call.reply('pending', { balance: balances.get(from) }); // credited once reviewed
      balances.set(to, balances.get(to) + amount);
      return call.reply('transferred', { balance: balances.get(from) });
    });
    const app = await peer();
    const transfer = async (from, to, amount, token = 'demo-token') => {
      try {
        const { outcome, data } = await app.request('transfer', { from, to, amount, token });
        return data ? `${outcome}, balance ${data.balance}` : outcome;
      } catch (e) {
        return `error ${e.code} (${e.message})`;
      }
    };
    assert.equal(await transfer('alice', 'bob', 100), 'transferred, balance 900');
    assert.equal(await transfer('alice', 'bob', 300), 'pending, balance 600');
    assert.equal(await transfer('alice', 'bob', 600), 'transaction limit exceeded');
    assert.equal(await transfer('alice', 'bob', 450), 'daily limit exceeded');
    assert.equal(await transfer('bob', 'alice', 250), 'insufficient funds');
    assert.equal(await transfer('alice', 'zed', 10), 'unknown account');
    assert.equal(await transfer('alice', 'bob', 10, 'stolen-token'), 'unauthorized');
    assert.equal(await transfer('alice', 'legacy', 10), 'error INTERNAL (ledger storage offline)');
  });

  it('file.copy reports its progress before the final reply', async () => {
    const src = path.join(tmp, 'services');
    writeFileSync(src, 'x'.repeat(12813));
    const files = await peer({ role: 'service' });
    await files.register('file.copy', async ([from, to], call) => {
      const data = readFileSync(from);
      const out = createWriteStream(to);
      for (let q = 1; q <= 4; q++) {
        out.write(data.subarray(((q - 1) * data.length) >> 2, (q * data.length) >> 2));
        await call.progress('file.copying', { percent: q * 25 });
      }
      out.end();
      await once(out, 'finish');
      call.reply('file.copied', { bytes: data.length });
    });
    const app = await peer();
    const seen = [];
    for await (const part of app.stream('file.copy', [src, path.join(tmp, 'services.copy')]))
      seen.push(part.type === 'progress' ? `${part.outcome} ${part.data.percent}%` : `${part.outcome} ${part.data.bytes} bytes`);
    assert.deepEqual(seen, ['file.copying 25%', 'file.copying 50%', 'file.copying 75%', 'file.copying 100%',
      'file.copied 12813 bytes']);
    assert.deepEqual(readFileSync(path.join(tmp, 'services.copy')), readFileSync(src));
  });

  it('file.read streams a file in chunks that the caller writes to disk, byte for byte', async () => {
    const src = path.join(tmp, 'big.bin');
    const bytes = Buffer.alloc(300 * 1024 + 17);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
    writeFileSync(src, bytes);
    const files = await peer({ role: 'service' });
    await files.register('file.read', async ({ path: p }, call) => {
      let n = 0;
      for await (const chunk of createReadStream(p, { highWaterMark: 64 * 1024 })) {
        await call.chunk('file.read-chunk', chunk);
        n += chunk.length;
      }
      return call.reply('file.read-done', { bytes: n });
    });
    const app = await peer();
    const dst = path.join(tmp, 'big.copy');
    const out = createWriteStream(dst);
    let written = 0;
    let done = null;
    for await (const part of app.stream('file.read', { path: src })) {
      if (part.type === 'chunk') {
        written += part.data.length;
        if (!out.write(part.data)) await once(out, 'drain');
      } else done = part;
    }
    out.end();
    await once(out, 'finish');
    assert.equal(done.outcome, 'file.read-done');
    assert.equal(done.data.bytes, bytes.length);
    assert.equal(written, bytes.length);
    assert.equal(statSync(dst).size, bytes.length);
    assert.deepEqual(readFileSync(dst), bytes);
  });

  it('a handler asks another (internal) service before it replies, and passes its failure on', async () => {
    const accounts = await peer({ role: 'service' });
    let ids = 0;
    await accounts.register('users.create', async ({ email, password }, call) => {
      const { data: hash } = await call.request('passwords.encrypt', { password });
      return call.reply('user.created', { id: ++ids, email, password: hash });
    });
    const app = await peer();
    await assert.rejects(app.request('users.create', { email: 'a@b', password: 'pw' }), { code: 'NO_HANDLER' });

    const passwords = await peer({ role: 'service' });
    await passwords.register('passwords.encrypt', ({ password }) => `fnv1a:${fnv1a(password)}`, { internal: true });
    assert.deepEqual(await app.request('users.create', { email: 'ada@example.com', password: 'hunter2' }), {
      outcome: 'user.created',
      data: { id: 1, email: 'ada@example.com', password: `fnv1a:${fnv1a('hunter2')}` },
    });
    // Internal: the client may not call it, the service above may.
    await assert.rejects(app.request('passwords.encrypt', { password: 'x' }),
      { code: 'FORBIDDEN', message: 'passwords.encrypt is internal: only services may call it' });
  });

  it('a health check reaches every agent and reports each one, a silent one as its timeout', async () => {
    const agents = [['web-1', 'healthy'], ['db-1', 'degraded'], ['cache-1', 'silent']];
    for (const [name, mode] of agents) {
      const a = await peer({ role: 'service', name });
      await a.register('health.check', (args, call) => {
        if (mode === 'healthy') return call.reply('healthy');
        if (mode === 'degraded') return call.reply('degraded', { reason: 'disk 97% full' });
        return new Promise(() => {}); // never answers
      });
    }
    const ops = await peer();
    const { results, counts } = await ops.requestAll('health.check', null, { timeout: 1500 });
    const lines = [...results].sort(([a], [b]) => a.localeCompare(b)).map(([agent, r]) =>
      `${agent} ${r.ok ? r.outcome + (r.data ? ` (${r.data.reason})` : '') : r.error.code}`);
    assert.deepEqual(lines, ['cache-1 TIMEOUT', 'db-1 degraded (disk 97% full)', 'web-1 healthy']);
    assert.deepEqual(counts, { peers: 3, ok: 2, errors: 0, timeouts: 1, gone: 0 });
    await assert.rejects(ops.requestAll('nobody.listens', null), { code: 'NO_PEERS' });
  });

  it('a catch-all takes the names nobody registered, and is told which', async () => {
    const gw = await peer({ role: 'service' });
    await gw.register(null, (args, call) => call.reply('caught', { name: call.name, args }));
    const app = await peer();
    assert.deepEqual(await app.request('anything.at-all', [1, 2]),
      { outcome: 'caught', data: { name: 'anything.at-all', args: [1, 2] } });
  });

  it('a schema-checked handler only sees arguments that fit; the router says what is wrong', async () => {
    const users = await peer({ role: 'service' });
    const seen = [];
    await users.register('profile.update', (args) => {
      seen.push(args);
      return 'ok';
    }, {
      schema: {
        keys: { email: { type: 'str', max: 255 }, age: { type: 'uint', max: 150 } },
        required: ['email'],
        additional: false,
      },
    });
    const app = await peer();
    assert.deepEqual(await app.request('profile.update', { email: 'a@b.c', age: 30 }), { outcome: 'ok', data: 'ok' });
    await assert.rejects(app.request('profile.update', { age: 30 }), { code: 'INVAL', message: 'missing required key "email"' });
    await assert.rejects(app.request('profile.update', { email: 'a@b.c', age: 200 }),
      { code: 'INVAL', message: 'key "age": value too large (200, limit 150)' });
    await assert.rejects(app.request('profile.update', { email: 'a@b.c', x: 1 }), { code: 'INVAL', message: 'unknown key "x"' });
    assert.deepEqual(seen, [{ email: 'a@b.c', age: 30 }]);
    // A schema the router refuses is refused at registration, with its reason.
    await assert.rejects(users.register('bad.schema', () => 1, { schema: { keys: { age: { type: 'integer' } } } }),
      { code: 'INVAL', message: 'bad.schema: schema key "age": unknown type "integer"' });
  });

  it('a handler registered with a JSON Schema sees only arguments that fit; the router names the path', async () => {
    const orders = await peer({ role: 'service' });
    const seen = [];
    await orders.register('order.place', (args) => {
      seen.push(args);
      return 'placed';
    }, {
      schema: {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        required: ['sku', 'ship'],
        properties: {
          sku: { type: 'string', minLength: 3 },
          qty: { type: 'integer', minimum: 1, maximum: 99 },
          ship: {
            type: 'object',
            required: ['zip'],
            properties: { zip: { type: 'string' } },
            additionalProperties: false,
          },
          tags: { type: 'array', maxItems: 2, items: { enum: ['gift', 'fragile'] } },
        },
      },
    });
    const app = await peer();
    const good = { sku: 'abc', qty: 2, ship: { zip: '75001' }, tags: ['gift'] };
    assert.deepEqual(await app.request('order.place', good), { outcome: 'ok', data: 'placed' });
    await assert.rejects(app.request('order.place', { sku: 'abc', ship: { zip: 75001 } }),
      { code: 'INVAL', message: 'ship.zip: expected string, got integer' });
    await assert.rejects(app.request('order.place', { sku: 'abc', ship: { zip: '1', door: 2 } }),
      { code: 'INVAL', message: 'ship.door: unknown key' });
    await assert.rejects(app.request('order.place', { sku: 'abc', ship: { zip: '1' }, tags: ['gift', 'red'] }),
      { code: 'INVAL', message: 'tags[1]: not one of the enum values' });
    await assert.rejects(app.request('order.place', { sku: 'abc', ship: { zip: '1' }, qty: 1.5 }),
      { code: 'INVAL', message: 'qty: expected integer, got number' });
    await assert.rejects(app.request('order.place', { sku: 'abc' }),
      { code: 'INVAL', message: 'ship: required key missing' });
    assert.deepEqual(seen, [good]);
    // A keyword the router does not support is refused at registration, by name.
    await assert.rejects(orders.register('order.check', () => 1, {
      schema: { type: 'object', properties: { sku: { type: 'string', pattern: '^[A-Z]+$' } } },
    }), { code: 'INVAL', message: 'order.check: sku: unsupported JSON Schema keyword "pattern"' });
  });
});

function fnv1a(s) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(s)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}
