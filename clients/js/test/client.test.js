// What a program sees from the client beyond the everyday flows: cancels
// reaching handlers, timeouts ending a request exactly once, restarts,
// refusals, bad input stopped before it is sent, peers by name, presence,
// and the error codes, against the daemon (or a stand-in where the daemon
// would never misbehave the way the test needs).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, SwitchboardError, CODES } from '../src/index.js';
import { startRouter, waitFor, ROOT } from './helpers/env.js';
import { fakeRouter, replyFrame, pingFrame } from './helpers/fake-router.js';

let router;
const open = [];

async function peer(opts = {}, r = router) {
  const c = await connect({ port: r.port, ...opts });
  open.push(c);
  return c;
}

function events(c, names) {
  const seen = [];
  for (const n of names) c.on(n, (arg) => seen.push(arg === undefined || arg === null ? n : `${n} ${arg.code || arg}`));
  return seen;
}

before(async () => {
  router = await startRouter();
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await router.stop();
});

describe('cancel', () => {
  it('aborting a request reaches the handler as its signal, and the request rejects CANCELLED', async () => {
    const svc = await peer({ role: 'service' });
    let handlerSaw = null;
    let started;
    const running = new Promise((r) => (started = r));
    await svc.register('slow.job', (args, call) => new Promise((resolve) => {
      started();
      call.signal.addEventListener('abort', () => {
        handlerSaw = call.signal.reason;
        resolve();
      });
    }));
    const app = await peer();
    const ac = new AbortController();
    const req = app.request('slow.job', null, { signal: ac.signal });
    await running;
    ac.abort();
    await assert.rejects(req, { code: 'CANCELLED' });
    await waitFor(() => handlerSaw !== null, 10000, 'the handler to see the cancel');
    assert.equal(handlerSaw.code, 'CANCELLED');
    // An already aborted signal: nothing is sent at all.
    await assert.rejects(app.request('slow.job', null, { signal: AbortSignal.abort() }), { code: 'CANCELLED' });
  });

  it('leaving a stream early cancels it: the producer\'s chunk() rejects and it stops', async () => {
    const svc = await peer({ role: 'service' });
    let produced = 0;
    let producerErr = null;
    await svc.register('numbers', async (args, call) => {
      try {
        for (let i = 0; ; i++) {
          await call.chunk('n', i);
          produced++;
          if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
        }
      } catch (e) {
        producerErr = e;
        throw e;
      }
    });
    const app = await peer();
    const got = [];
    for await (const part of app.stream('numbers', null)) {
      got.push(part.data);
      if (got.length === 5) break;
    }
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    await waitFor(() => producerErr !== null, 10000, 'the producer to be told');
    assert.equal(producerErr.code, 'CANCELLED'); // and its loop ended with that
    assert.ok(produced >= 5);

    // The same stream stopped by its signal: the loop ends with CANCELLED.
    producerErr = null;
    const ac = new AbortController();
    const seen = [];
    const err = await (async () => {
      for await (const part of app.stream('numbers', null, { signal: ac.signal })) {
        seen.push(part.data);
        if (seen.length === 3) ac.abort();
      }
    })().catch((e) => e);
    assert.equal(err.code, 'CANCELLED');
    assert.deepEqual(seen, [0, 1, 2]);
    await waitFor(() => producerErr !== null, 10000, 'the producer to be told again');
    assert.equal(producerErr.code, 'CANCELLED');
  });
});

describe('chained calls', () => {
  it('a cancel reaches the request a handler made on its caller\'s behalf, and its deadline is the caller\'s', async () => {
    const inner = await peer({ role: 'service' });
    let innerSaw = null;
    let innerTimeout = 0;
    let started;
    const running = new Promise((r) => (started = r));
    await inner.register('ch.inner', (args, call) => new Promise((resolve) => {
      innerTimeout = call.timeout;
      started();
      call.signal.addEventListener('abort', () => {
        innerSaw = call.signal.reason.code;
        resolve();
      });
    }));
    const outer = await peer({ role: 'service' });
    let outerErr = null;
    await outer.register('ch.outer', async (args, call) => {
      try {
        return await call.request('ch.inner', null);
      } catch (e) {
        outerErr = e.code;
        throw e;
      }
    });
    const app = await peer();
    const ac = new AbortController();
    const req = app.request('ch.outer', null, { signal: ac.signal, timeout: 20000 });
    await running;
    assert.ok(innerTimeout > 15000 && innerTimeout <= 20000, `the inner request had ${innerTimeout} ms`);
    ac.abort();
    await assert.rejects(req, { code: 'CANCELLED' });
    await waitFor(() => innerSaw !== null && outerErr !== null, 10000, 'the cancel to reach both handlers');
    assert.equal(innerSaw, 'CANCELLED');
    assert.equal(outerErr, 'CANCELLED');
  });
});

describe('timeouts', () => {
  it('a request nobody answers in time ends with TIMEOUT once, from the router, and the handler is told', async () => {
    const svc = await peer({ role: 'service' });
    let told = null;
    await svc.register('never.answers', (args, call) => new Promise((resolve) => {
      call.signal.addEventListener('abort', () => {
        told = call.signal.reason.code;
        resolve();
      });
    }));
    const app = await peer();
    const parts = [];
    let ended = 0;
    let error = null;
    try {
      for await (const p of app.stream('never.answers', null, { timeout: 200 })) parts.push(p);
    } catch (e) {
      error = e;
    }
    ended++;
    assert.equal(error.code, 'TIMEOUT');
    assert.equal(error.message, "no final reply within the request's timeout");
    assert.deepEqual(parts, []);
    await assert.rejects(app.request('never.answers', null, { timeout: 100 }), { code: 'TIMEOUT' });
    await waitFor(() => told !== null, 10000, 'the handler to be told');
    assert.equal(told, 'CANCELLED');
    assert.equal(ended, 1);
  });

  it('a router that never answers: the local deadline ends the request once, tells the router, ignores the late reply', async () => {
    const fake = await fakeRouter();
    const c = await connect({ port: fake.port });
    const t0 = Date.now();
    const outcomes = [];
    const req = c.request('fake.slow', { x: 1 }, { timeout: 300 }).then((v) => outcomes.push(v), (e) => outcomes.push(e.code));
    const s = c.stream('fake.slow', null, { timeout: 300 });
    const streamed = (async () => {
      try {
        for await (const p of s) outcomes.push(`part ${p.outcome}`);
      } catch (e) {
        outcomes.push(`stream ${e.code}`);
      }
    })();
    await req;
    await streamed;
    const took = Date.now() - t0;
    assert.ok(took >= 1300, `ended after ${took} ms, before timeout + 1 s`);
    assert.deepEqual(outcomes.sort(), ['TIMEOUT', 'stream TIMEOUT']);
    const reqs = fake.frames.filter((f) => f.kind === 9);
    await waitFor(() => fake.frames.filter((f) => f.kind === 12).length === 2, 5000, 'two CANCELs');
    assert.deepEqual(fake.frames.filter((f) => f.kind === 12).map((f) => f.id).sort(), reqs.map((f) => f.id).sort());
    // The late replies find nothing: no second ending, no crash. The PING
    // after them comes back once they have been read.
    for (const r of reqs) fake.write(replyFrame(r.id));
    fake.write(pingFrame(99));
    await waitFor(() => fake.frames.some((f) => f.kind === 16 && f.id === 99n), 5000, 'the PONG');
    assert.equal(outcomes.length, 2);
    assert.ok(c.online);
    await c.close();
    await fake.close();
  });
});

describe('bad input from the application', () => {
  it('is refused with INVAL or TOO_LARGE before anything is sent', async () => {
    const fake = await fakeRouter({ maxFrame: 1000 });
    const c = await connect({ port: fake.port });
    const circular = {};
    circular.self = circular;
    const refusals = [
      [() => c.send('x', { f() {} }), 'INVAL', /function/],
      [() => c.send('x', Symbol('s')), 'INVAL', /symbol/],
      [() => c.send('x', circular), 'INVAL', /contains itself/],
      [() => c.send('x', 2n ** 70n), 'INVAL', /too large/],
      [() => c.send('n'.repeat(256), null), 'INVAL', /too long \(256 bytes, limit 255\)/],
      [() => c.send('has space', null), 'INVAL', /not allowed/],
      [() => c.send('', null), 'INVAL', /empty/],
      [() => c.send(42, null), 'INVAL', /must be a string/],
      [() => c.send('bad\ud800', null), 'INVAL', /lone surrogate/],
      [() => c.sendTo('p'.repeat(65), 'x', null), 'INVAL', /peer name .* too long/],
      [() => c.send('x', new Uint8Array(2000)), 'TOO_LARGE', /over the router's limit of 1000/],
      [() => c.stream('x', null, { timeout: -1 }), 'INVAL', /timeout/],
      [() => c.stream('x', () => 1), 'INVAL', /function/],
    ];
    for (const [fn, code, text] of refusals) assert.throws(fn, (e) => e instanceof SwitchboardError && e.code === code && text.test(e.message));
    await assert.rejects(c.request('x', { when: () => 1 }), { code: 'INVAL' });
    await assert.rejects(c.request('x'.repeat(300), null), { code: 'INVAL' });
    await assert.rejects(c.request('x', null, { timeout: 1.5 }), { code: 'INVAL' });
    await assert.rejects(c.requestAll('x', new Uint8Array(5000)), { code: 'TOO_LARGE' });
    await assert.rejects(c.register('x', () => 1), { code: 'FORBIDDEN' }); // a client
    // Frames arrive in order: once the good one is in, any bad one would be too.
    c.send('good.one', { ok: true });
    await waitFor(() => fake.frames.length >= 2, 5000, 'the good frame');
    assert.deepEqual(fake.frames.map((f) => f.kind), [1, 8], 'only HELLO and the good SEND reached the router');
    await c.close();
    await fake.close();
    // A service's own bad input: the same.
    const fake2 = await fakeRouter();
    const s = await connect({ port: fake2.port, role: 'service' });
    await assert.rejects(s.register('$sb.mine', () => 1), { code: 'INVAL', message: /\$/ });
    await assert.rejects(s.register('ok.name', 'not a function'), { code: 'INVAL' });
    await assert.rejects(s.register('ok.name', () => 1, { schema: [1] }), { code: 'INVAL' });
    s.send('good.one', null);
    await waitFor(() => fake2.frames.length >= 2, 5000, 'the good frame');
    assert.deepEqual(fake2.frames.map((f) => f.kind), [1, 8]);
    await s.close();
    await fake2.close();
  });

  it('a handler\'s bad answer throws in the handler and the requester gets the error', async () => {
    const svc = await peer({ role: 'service' });
    await svc.register('bad.outcome', (args, call) => {
      assert.throws(() => call.reply('tab\there'), { code: 'INVAL' });
      assert.throws(() => call.reply('fine', () => 1), { code: 'INVAL' });
      call.reply('fine', 1);
      assert.throws(() => call.reply('again'), { code: 'INVAL', message: /already answered/ });
    });
    await svc.register('throws', () => {
      throw new Error('boom');
    });
    await svc.register('refuses', (args, call) => {
      call.error('FORBIDDEN', 'not you', { who: 'x' });
    });
    const app = await peer();
    assert.deepEqual(await app.request('bad.outcome', null), { outcome: 'fine', data: 1 });
    await assert.rejects(app.request('throws', null), { code: 'INTERNAL', message: 'boom' });
    await assert.rejects(app.request('refuses', null), { code: 'FORBIDDEN', message: 'not you', data: { who: 'x' } });
  });
});

describe('the connection', () => {
  it('requests in flight fail OFFLINE when the router dies; both sides reconnect and re-register after it restarts', async () => {
    const r = await startRouter();
    const port = r.port;
    const svc = await connect({ port, role: 'service', name: 'rs-svc', reconnectMaxMs: 300 });
    const app = await connect({ port, name: 'rs-app', reconnectMaxMs: 300 });
    const svcSaw = events(svc, ['offline', 'reconnected']);
    const appSaw = events(app, ['offline', 'reconnected']);
    let held = null;
    await svc.register('rs.echo', (args) => args);
    await svc.register('rs.hold', (args, call) => {
      held = call;
      return new Promise(() => {});
    });
    assert.deepEqual(await app.request('rs.echo', 7), { outcome: 'ok', data: 7 });
    const inFlight = app.request('rs.hold', null);
    await waitFor(() => held !== null, 10000, 'the held call');
    // Watched before the kill: the close can come before kill() returns,
    // and a rejection nobody had caught yet fails the test by itself.
    const failed = assert.rejects(inFlight, { code: 'OFFLINE' });
    await r.kill();
    await failed;
    await waitFor(() => svcSaw.length > 0 && appSaw.length > 0, 10000, 'both offline');
    assert.equal(held.signal.aborted, true);
    assert.equal(held.signal.reason.code, 'OFFLINE');
    await assert.rejects(app.request('rs.echo', 1), { code: 'OFFLINE' });
    assert.throws(() => app.send('rs.echo', 1), { code: 'OFFLINE' });

    const r2 = await startRouter([], port);
    await waitFor(() => svcSaw.includes('reconnected') && appSaw.includes('reconnected'), 20000, 'both reconnected');
    assert.deepEqual(await app.request('rs.echo', 8), { outcome: 'ok', data: 8 });
    assert.deepEqual(svcSaw, ['offline OFFLINE', 'reconnected']);
    assert.deepEqual(appSaw, ['offline OFFLINE', 'reconnected']);
    await app.close();
    await svc.close();
    await r2.stop();
  });

  it('a router that drains says so: new requests get DRAINING, the one in flight finishes, then it is offline', async () => {
    const r = await startRouter(['--drain-ms', '5000']);
    const svc = await connect({ port: r.port, role: 'service' });
    const app = await connect({ port: r.port, reconnect: false });
    const seen = events(app, ['draining', 'offline']);
    let finish;
    await svc.register('dr.job', () => new Promise((resolve) => (finish = resolve)));
    const job = app.request('dr.job', null);
    await waitFor(() => finish !== undefined, 10000, 'the job to start');
    const stopped = r.stop();
    await waitFor(() => seen.length > 0, 10000, 'the GOODBYE');
    await assert.rejects(app.request('dr.job', null), { code: 'DRAINING' });
    finish('done');
    assert.deepEqual(await job, { outcome: 'ok', data: 'done' });
    await stopped;
    await waitFor(() => seen.length === 2, 10000, 'offline');
    assert.equal(seen[0].startsWith('draining'), true);
    assert.equal(seen[1], 'offline');
    assert.equal(await app.closed(), undefined);
    await svc.close();
  });

  it('a consumer that stops reading for longer than the router\'s idle and PONG timeouts keeps its connection', async () => {
    const r = await startRouter(['--idle-timeout', '500', '--pong-timeout', '500']);
    const svc = await connect({ port: r.port, role: 'service' });
    await svc.register('ka.stream', async (args, call) => {
      for (let i = 0; i < 200; i++) await call.chunk('part', Buffer.alloc(8192, i));
      return 'done';
    });
    const app = await connect({ port: r.port, highWaterMark: 32768, keepAliveMs: 100 });
    const seen = events(app, ['offline']);
    const it = app.stream('ka.stream', null, { timeout: 20000 })[Symbol.asyncIterator]();
    assert.equal((await it.next()).value.data[0], 0);
    // The slow consumer of this story: it reads nothing for 2.5 times the
    // router's idle and PONG timeouts, with the client paused well before.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    let n = 1;
    for (let p = await it.next(); !p.done; p = await it.next()) if (p.value.type === 'chunk') assert.equal(p.value.data[0], n++ % 256);
    assert.equal(n, 200);
    assert.deepEqual(seen, []);
    await app.close();
    await svc.close();
    await r.stop();
  });

  it('connect() rejects when nothing listens, and a taken name is refused for good', async () => {
    const fake = await fakeRouter();
    const port = fake.port;
    await fake.close();
    await assert.rejects(connect({ port }), { code: 'OFFLINE' });
    await peer({ name: 'only-one' });
    const err = await connect({ port: router.port, name: 'only-one' }).catch((e) => e);
    assert.equal(err.code, 'DUP_NAME');
  });

  it('a shared secret: the right one connects (named or not), a wrong or missing one is UNAUTHORIZED and not retried', async () => {
    const r = await startRouter(['--secret-service', 'svc-secret', '--secret-client', 'cli-secret']);
    const svc = await connect({ port: r.port, role: 'service', name: 'sec-svc', secret: 'svc-secret' });
    await svc.register('sec.echo', (a) => a);
    const app = await connect({ port: r.port, secret: Buffer.from('cli-secret') });
    assert.deepEqual(await app.request('sec.echo', 'hi'), { outcome: 'ok', data: 'hi' });
    // Told to keep trying, it still stops: the router would refuse it again.
    const wrong = await connect({ port: r.port, name: 'intruder', secret: 'guess', waitOnFirstConnect: true }).catch((e) => e);
    assert.equal(wrong.code, 'UNAUTHORIZED');
    const none = await connect({ port: r.port }).catch((e) => e);
    assert.equal(none.code, 'UNAUTHORIZED');
    const { data: stats } = await app.request('$sb.stats', null);
    assert.equal(stats.auth_failures, 1, 'one wrong proof, then no retry');
    await app.close();
    await svc.close();
    await r.stop();
  });
});

describe('bearer tokens', () => {
  const SECRET = 'a-secret-of-at-least-32-bytes-for-hs256!';
  /* An HS256 JWT signed here with node:crypto, never by the client's code. */
  const jwt = (claims, key = SECRET) => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
  };
  const now = () => Math.floor(Date.now() / 1000);

  it('a valid token is served as its subject (no secret asked); an expired one is UNAUTHORIZED and not retried', async () => {
    const file = path.join(tmpdir(), `sb-js-jwt-${process.pid}`);
    writeFileSync(file, SECRET);
    const r = await startRouter(['--jwt-secret-file', file, '--secret-client', 'cli-secret']);
    try {
      const svc = await connect({ port: r.port, role: 'service', name: 'tok-svc',
        token: jwt({ sub: 'svc', sb_role: 'service', exp: now() + 3600 }) });
      await svc.register('tok.who', (a, call) => call.identity && call.identity.subject);
      const app = await connect({ port: r.port, token: jwt({ sub: 'ada@example.com', exp: now() + 3600 }) });
      assert.deepEqual(await app.request('tok.who', null), { outcome: 'ok', data: 'ada@example.com' });
      const old = await connect({ port: r.port, waitOnFirstConnect: true,
        token: jwt({ sub: 'ada', exp: now() - 3600 }) }).catch((e) => e);
      assert.equal(old.code, 'UNAUTHORIZED');
      assert.match(old.message, /expired/);
      const { data: stats } = await app.request('$sb.stats', null);
      assert.equal(stats.auth_failures, 1, 'one refused token, then no retry');
      await assert.rejects(connect({ port: r.port, token: 'Bearer x.y.z' }), { code: 'INVAL' });
      await app.close();
      await svc.close();
    } finally {
      await r.stop();
      unlinkSync(file);
    }
  });

  it('a handler reads its caller\'s token claims; a caller without a token has none', async () => {
    const file = path.join(tmpdir(), `sb-js-jwt-claims-${process.pid}`);
    writeFileSync(file, SECRET);
    const r = await startRouter(['--jwt-secret-file', file]);
    try {
      const svc = await connect({ port: r.port, role: 'service', name: 'claims-svc' });
      await svc.register('tok.claims', (a, call) => call.identity && call.identity.claims);
      const exp = now() + 3600;
      const app = await connect({ port: r.port,
        token: jwt({ sub: 'ada', exp, tenant: 'acme', plan: { seats: 5 } }) });
      assert.deepEqual(await app.request('tok.claims', null),
        { outcome: 'ok', data: { sub: 'ada', exp, tenant: 'acme', plan: { seats: 5 } } });
      const bare = await connect({ port: r.port });
      assert.deepEqual(await bare.request('tok.claims', null), { outcome: 'ok', data: null });
      await bare.close();
      await app.close();
      await svc.close();
    } finally {
      await r.stop();
      unlinkSync(file);
    }
  });
});

describe('registrations', () => {
  it('unregister: the name is no longer routed here', async () => {
    const svc = await peer({ role: 'service' });
    await svc.register('un.reg', () => 'here');
    const app = await peer();
    assert.deepEqual(await app.request('un.reg', null), { outcome: 'ok', data: 'here' });
    await svc.unregister('un.reg');
    await assert.rejects(app.request('un.reg', null), { code: 'NO_HANDLER' });
    await assert.rejects(svc.unregister('un.reg'), { code: 'INVAL' });
  });

  it('a name the router\'s rules refuse rejects the registration and is an error event; the others stand', async () => {
    const r = await startRouter(['--allow-register-service', 'ok.*']);
    const svc = await connect({ port: r.port, role: 'service' });
    const errors = events(svc, ['error']);
    await svc.register('ok.fine', () => 'fine');
    await assert.rejects(svc.register('not.allowed', () => 1), { code: 'FORBIDDEN', message: /not\.allowed/ });
    assert.deepEqual(errors, ['error FORBIDDEN']);
    const app = await connect({ port: r.port });
    assert.deepEqual(await app.request('ok.fine', null), { outcome: 'ok', data: 'fine' });
    await app.close();
    await svc.close();
    await r.stop();
  });

  it('a handler of a send that throws is an error event, and the client carries on', async () => {
    const svc = await peer({ role: 'service' });
    const errors = [];
    svc.on('error', (e) => errors.push(e));
    await svc.register('sends.fail', () => {
      throw new Error('cannot');
    });
    await svc.register('sends.ok', () => 'ok');
    const app = await peer();
    app.send('sends.fail', null);
    await waitFor(() => errors.length === 1, 10000, 'the error event');
    assert.equal(errors[0].code, 'INTERNAL');
    assert.match(errors[0].message, /sends\.fail failed: cannot/);
    assert.deepEqual(await app.request('sends.ok', null), { outcome: 'ok', data: 'ok' });
  });
});

describe('peers', () => {
  it('sendTo and requestTo reach one peer by name, a client too; unknown and gone peers are told apart', async () => {
    const a = await peer({ role: 'service', name: 'to-a' });
    const b = await peer({ role: 'service', name: 'to-b' });
    const got = [];
    await a.register('to.who', (args, call) => `a from ${call.peer}`);
    await b.register('to.who', () => 'b');
    await b.register('to.note', (args) => {
      got.push(args);
    });
    const app = await peer({ name: 'to-app' });
    assert.deepEqual(await app.requestTo('to-a', 'to.who', null), { outcome: 'ok', data: 'a from to-app' });
    assert.deepEqual(await app.requestTo('to-b', 'to.who', null), { outcome: 'ok', data: 'b' });
    app.sendTo('to-b', 'to.note', { n: 1 });
    await waitFor(() => got.length === 1, 10000, 'the note');
    assert.deepEqual(got, [{ n: 1 }]);
    // To every handler of a name: both get it.
    const all = [];
    await a.register('to.all', (args, call) => {
      all.push(`a ${args}`);
    });
    await b.register('to.all', (args) => {
      all.push(`b ${args}`);
    });
    app.sendAll('to.all', 2);
    await waitFor(() => all.length === 2, 10000, 'both handlers');
    assert.deepEqual(all.sort(), ['a 2', 'b 2']);
    // This client registered no handler: the router answers for it.
    await assert.rejects(a.requestTo('to-app', 'to.who', null), { code: 'NO_HANDLER', message: 'peer to-app has no handler for to.who' });
    await assert.rejects(app.requestTo('to-nobody', 'to.who', null), { code: 'UNKNOWN_PEER' });
    await b.close();
    await waitFor(async () => (await app.requestTo('to-b', 'to.who', null).catch((e) => e.code)) === 'NOT_CONNECTED', 10000, 'NOT_CONNECTED');
  });

  it('presence: an iterator and events see peers connect, drain and leave; handlers see who called', async () => {
    const watcher = await peer();
    const watch = watcher.presence();
    await watch.ready;
    const heard = [];
    const listener = (ev) => heard.push(`${ev.event} ${ev.peer}`);
    watcher.on('presence', listener);
    await waitFor(async () => (await watcher.request('$sb.stats', null)).data !== null, 5000, 'a round trip');
    const comer = await connect({ port: router.port, name: 'pr-comer', role: 'service' });
    await comer.close();
    const got = [];
    for await (const ev of watch) {
      got.push(ev);
      if (ev.event === 'disconnected') break;
    }
    assert.deepEqual(got.map((e) => `${e.event} ${e.peer} ${e.role}`), ['connected pr-comer service', 'disconnected pr-comer service']);
    assert.ok(got[0].peerId > 0);
    await waitFor(() => heard.length === 2, 5000, 'the events');
    assert.deepEqual(heard, ['connected pr-comer', 'disconnected pr-comer']);
    watcher.off('presence', listener);
  });
});

describe('error codes', () => {
  it('are the C names of include/switchboard/error.h, one for each wire code', () => {
    const h = readFileSync(path.join(ROOT, 'include/switchboard/error.h'), 'utf8');
    const wire = [...h.matchAll(/SB_E([A-Z]+) = -(\d+),/g)].filter(([, , n]) => Number(n) < 64);
    assert.ok(wire.length >= 18);
    for (const [, name, n] of wire) assert.equal(CODES[n].replaceAll('_', ''), name, `code ${n}`);
    assert.equal(Object.keys(CODES).length, wire.length);
    const e = new SwitchboardError('NO_HANDLER');
    assert.equal(e.message, 'no handler');
    assert.equal(e.wireCode, 1);
    assert.ok(e instanceof Error);
  });
});
