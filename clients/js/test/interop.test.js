// Interop both ways with programs on the C library: a C service (tests/js/
// js_peer.c, values encoded by msgpack-c) answering this client, the same
// program calling JS handlers and printing what msgpack-c decodes, and sbctl
// on both sides.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { connect } from '../src/index.js';
import { startRouter, spawnLines, run, waitFor, JS_PEER, SBCTL } from './helpers/env.js';

let router;
let cpeer;
let js;
let app;
const packr = new Packr({ useRecords: false });
const hex = (v) => Buffer.from(packr.pack(v)).toString('hex');

before(async () => {
  router = await startRouter();
  cpeer = spawnLines(JS_PEER, ['serve', String(router.port), 'c-peer']);
  await cpeer.line(/^ready$/, 30000);
  js = await connect({ port: router.port, role: 'service', name: 'js-svc' });
  await js.register('js.user.create', ({ email }, call) =>
    call.reply('user.created', { id: 1, email, tags: ['x', 'y'], ok: true, score: 1.5, caller: call.peer, role: call.identity.role }));
  await js.register('js.stream', async ({ n }, call) => {
    await call.progress('js.started', { n });
    for (let i = 0; i < n; i++) await call.chunk('js.part', Buffer.from([i, i, i]));
    return call.reply('js.done', n);
  });
  await js.register('js.fail', (args, call) => call.error('FORBIDDEN', 'nope'));
  await js.register('js.headers', (args, call) => call.reply('seen', { headers: { ...call.headers }, args }));
  // The tunnel's handlers throw {code, msg}; an Error with a string code is the same.
  await js.register('js.app.throw', () => {
    throw { code: 'MYERRCODE', msg: 'no such agent', details: { agent: 'A7' } };
  });
  await js.register('js.app.error', async () => {
    throw Object.assign(new Error('quota spent'), { code: 'QUOTA', details: [1, 2] });
  });
  await js.register('js.app.bad', () => {
    throw Object.assign(new Error('a code with a space is no application code'), { code: 'NOT A CODE' });
  });
  await js.register('js.echo', (args) => args);
  app = await connect({ port: router.port, name: 'js-app' });
});

after(async () => {
  await app.close();
  await js.close();
  const e = await cpeer.stop();
  assert.equal(e.code, 0, `js_peer exited ${JSON.stringify(e)}: ${cpeer.stderr}`);
  await router.stop();
});

describe('a C service answers the JS client', () => {
  it('echoes every MessagePack type back unchanged', async () => {
    const value = {
      int: 1, neg: -5, u32: 4294967295, i32: -2147483648, big: 2n ** 40n, float: 1.5, str: 'héllo ✓',
      bin: Buffer.from([0, 1, 254, 255]), arr: [1, 'a', null, false], map: { nested: { deep: true } }, nil: null,
      date: new Date(1700000000000),
    };
    const { outcome, data } = await app.request('c.echo', value);
    assert.equal(outcome, 'echoed');
    assert.deepEqual(data, { ...value, big: 1099511627776 }); // 64-bit integers come back as numbers when exact
  });

  it('values msgpack-c encoded decode as JavaScript expects', async () => {
    const { outcome, data } = await app.request('c.types', null);
    assert.equal(outcome, 'c.types');
    assert.deepEqual(data, {
      u64: 18446744073709551615n, i64: -9223372036854775808n, u32: 4294967295, f64: 0.1,
      str: 'héllo ✓', bin: Buffer.from([0x00, 0xff, 0x80]), arr: [-1, null, true], map: {},
    });
  });

  it('a stream of progress, 100 chunks and a final reply arrives in order', async () => {
    const parts = [];
    for await (const p of app.stream('c.stream', 100)) parts.push(p);
    assert.equal(parts.length, 102);
    assert.deepEqual(parts[0], { type: 'progress', outcome: 'c.started', data: 100 });
    for (let i = 0; i < 100; i++) {
      assert.equal(parts[i + 1].type, 'chunk');
      assert.deepEqual(parts[i + 1].data, Buffer.alloc(1000, i));
    }
    assert.deepEqual(parts[101], { type: 'reply', outcome: 'c.done', data: 100 });
  });

  it('fails with an application code the JS requester switches on, apart from the router codes', async () => {
    const err = await app.request('c.app.fail', null).then(() => null, (e) => e);
    assert.equal(err.code, 'APP');
    assert.equal(err.wireCode, 19);
    assert.equal(err.appCode, 'CARD_DECLINED');
    assert.equal(err.message, 'the card was declined');
    assert.deepEqual(err.details, { limit: 100 });
    // A router code never carries an application code.
    const nh = await app.request('nobody.here', null).then(() => null, (e) => e);
    assert.equal(nh.code, 'NO_HANDLER');
    assert.equal(nh.appCode, undefined);
  });

  it('its error reply, its view of who called, a send, and a cancel it is told about', async () => {
    await assert.rejects(app.request('c.fail', null), { code: 'FORBIDDEN', message: 'c says no' });
    assert.deepEqual(await app.request('c.who', null), { outcome: 'c.who', data: { peer: 'js-app', role: 'client' } });
    app.send('c.note', { x: 1 });
    await cpeer.line(/^send c\.note 4$/);
    const ac = new AbortController();
    const held = app.request('c.hold', null, { signal: ac.signal });
    ac.abort(); // REQUEST then CANCEL, in order: the C handler has its call when the cancel comes
    await assert.rejects(held, { code: 'CANCELLED' });
    await cpeer.line(/^cancelled c\.hold$/);
  });
});

describe('the C client calls JS handlers', () => {
  it('a reply msgpack-c decodes, with the caller the router vouches for', async () => {
    const r = await run(JS_PEER, ['call', String(router.port), 'js.user.create', hex({ email: 'a@b.c' })]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'reply user.created {"id"=>1, "email"=>"a@b.c", "tags"=>["x", "y"], "ok"=>true, ' +
      '"score"=>1.500000, "caller"=>"c-caller", "role"=>"client"}\n');
  });

  it('progress, chunks and the final reply, then an error reply', async () => {
    const r = await run(JS_PEER, ['call', String(router.port), 'js.stream', hex({ n: 3 })]);
    assert.equal(r.stdout, 'progress js.started {"n"=>3}\n' +
      'chunk js.part "\\x00\\x00\\x00"\nchunk js.part "\\x01\\x01\\x01"\nchunk js.part "\\x02\\x02\\x02"\n' +
      'reply js.done 3\n');
    const f = await run(JS_PEER, ['call', String(router.port), 'js.fail']);
    assert.equal(f.stdout, 'error EFORBIDDEN nope\n');
  });

  it('a JS handler that throws a string code sends an application error the C client reads', async () => {
    const a = await run(JS_PEER, ['call', String(router.port), 'js.app.throw']);
    assert.equal(a.stdout, 'error EAPP no such agent app MYERRCODE {"agent"=>"A7"}\n');
    const b = await run(JS_PEER, ['call', String(router.port), 'js.app.error']);
    assert.equal(b.stdout, 'error EAPP quota spent app QUOTA [1, 2]\n');
    // A code the protocol cannot carry is the handler's failure, not an application error.
    const c = await run(JS_PEER, ['call', String(router.port), 'js.app.bad']);
    assert.equal(c.stdout, 'error EINTERNAL a code with a space is no application code\n');
  });

  it('a payload msgpack-c does not produce as msgpackr would still decodes (the C side echoes what it sent)', async () => {
    // fixmap with a uint64 in its widest form and a str8 key: not msgpackr's own spelling.
    const raw = '81d903616263cf0000000000000007';
    const r = await run(JS_PEER, ['call', String(router.port), 'js.echo', raw]);
    assert.equal(r.stdout, 'reply ok {"abc"=>7}\n');
  });
});

describe('sbctl', () => {
  it('calls a JS handler and prints its reply and stream as JSON', async () => {
    const r = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, '--json', 'request', 'js.user.create', '{"email":"s@b.c"}']);
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.stdout);
    assert.equal(line.outcome, 'user.created');
    assert.equal(line.more, false);
    assert.equal(line.payload.email, 's@b.c');
    assert.equal(line.payload.role, 'client');
    assert.equal(line.payload.score, 1.5);
    const s = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, 'request', 'js.stream', '{"n":2}']);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(s.stdout.trim().split('\n').map((l) => l.replace(/\s+/g, ' ')), [
      'js.started {"n":2} (more: progress)', 'js.part {"$bin":"000000"} (more: chunk)',
      'js.part {"$bin":"010101"} (more: chunk)', 'js.done 2']);
    const f = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, 'request', 'js.fail']);
    assert.equal(f.code, 1);
    assert.equal(f.stderr, 'error: nope (code EFORBIDDEN)\n');
    const a = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, '--json', 'request', 'js.app.throw']);
    assert.equal(a.code, 1);
    assert.equal(a.stdout, '{"error":"EAPP","code":-19,"text":"no such agent","app_code":"MYERRCODE","details":{"agent":"A7"}}\n');
    assert.equal(a.stderr, 'error: no such agent (app code MYERRCODE)\ndetails: {"agent":"A7"}\n');
  });

  it('sends headers a JS handler reads', async () => {
    const r = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, '--json', 'request', 'js.headers', '{"a":1}',
      '--header', 'traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '--header', 'device=kitchen sensor']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).payload, {
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', device: 'kitchen sensor' },
      args: { a: 1 },
    });
    const n = await run(SBCTL, ['--router', `127.0.0.1:${router.port}`, '--json', 'request', 'js.headers']);
    assert.equal(n.code, 0, n.stderr);
    assert.deepEqual(JSON.parse(n.stdout).payload, { headers: {}, args: null });
  });

  it('answers the JS client as a listener', async () => {
    const l = spawnLines(SBCTL, ['--router', `127.0.0.1:${router.port}`, 'listen', 'sbctl.echo', '--echo', '--count', '1']);
    await waitFor(() => /listening on sbctl\.echo/.test(l.stderr), 15000, 'sbctl to listen');
    assert.deepEqual(await app.request('sbctl.echo', { a: [1, 2, 'three'] }), { outcome: 'echo', data: { a: [1, 2, 'three'] } });
    const e = await l.exited;
    assert.equal(e.code, 0);
  });
});
