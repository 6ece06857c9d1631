// The package in a browser: the demo page (demo/) loaded by headless
// Chromium (Debian's chromium, driven by puppeteer-core) from a static
// server started here, over WebSocket to the router's edge, with the
// client secret proven by WebCrypto. A Node service on TCP answers it.
// SB_DEMO_SCREENSHOT=PATH keeps a screenshot of the page at the end.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { connect } from '../src/index.js';
import { serve } from '../demo/serve.js';
import { startRouter, waitFor, rss } from './helpers/env.js';

const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const CLIENT_SECRET = 'browser test client secret';
const SERVICE_SECRET = 'browser test service secret';
const FLOOD = { n: 6000, size: 16 * 1024 }; // 96 MB
const BOUND = 48 << 20;

let web;
let router;
let wsPort;
let svc;
let browser;
let chromiumPid = 0;
let profile;
let page;
let cdp; // the page's DevTools session
const cancels = []; // handlers told of a cancel
let floodSent = 0;
const pageErrors = [];

/* Resident memory of the whole browser: every process of its group (the
 * browser, its network service, renderers), where a stream could gather.
 * The page's garbage is collected first: the chunks it made and dropped
 * would otherwise count until V8 gets round to them. */
async function browserRss() {
  await cdp.send('HeapProfiler.collectGarbage');
  let n = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[2]) === chromiumPid) n += rss(d);
    } catch {
      /* gone meanwhile */
    }
  }
  return n;
}

/* A Node client on the router's TCP port, closed by after() whatever
 * happens: one left open would keep this file's process alive. */
const nodeClients = [];
async function nodeClient(opts) {
  const c = await connect({ port: router.port, ...opts });
  nodeClients.push(c);
  return c;
}

async function openPage(query) {
  const p = await browser.newPage();
  p.setDefaultTimeout(30000);
  p.on('pageerror', (e) => pageErrors.push(String(e)));
  await p.setViewport({ width: 900, height: 760 });
  const q = new URLSearchParams({ ws: `ws://127.0.0.1:${wsPort}/v1/ws`, secret: CLIENT_SECRET, ...query });
  await p.goto(`http://127.0.0.1:${web.port}/demo/?${q}`, { timeout: 30000 });
  await p.waitForFunction(() => window.demo !== undefined, { timeout: 30000 });
  return p;
}

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: tools/bootstrap installs Debian's chromium (or set SB_CHROMIUM)`);
  web = await serve(0);
  // Out-max 4 MiB: the router pauses a producer once 1 MiB waits for a peer.
  router = await startRouter([
    '--ws-port', '0', '--ws-allow-origin', `http://127.0.0.1:${web.port}`,
    '--secret-client', CLIENT_SECRET, '--secret-service', SERVICE_SECRET, '--out-max', String(4 << 20),
  ]);
  wsPort = Number((await router.proc.line(/WebSocket and HTTP on 127\.0\.0\.1:(\d+)/))[1]);

  svc = await nodeClient({ role: 'service', name: 'node-svc', secret: SERVICE_SECRET });
  await svc.register('user.create', (args, call) => call.reply('user.created', { id: 1, name: args.name, from: call.peer }));
  await svc.register('count', async ({ n, size, pace = 0 }, call) => {
    call.signal.addEventListener('abort', () => cancels.push('count'));
    for (let i = 0; i < n; i++) {
      const b = new Uint8Array(size);
      new DataView(b.buffer).setUint32(0, i);
      await call.chunk('count.chunk', b);
      if ((i + 1) % 10 === 0) await call.progress('counting', { done: i + 1, of: n });
      if (pace) await new Promise((r) => setTimeout(r, pace));
    }
    return call.reply('count.done', { chunks: n });
  });
  await svc.register('flood', async ({ n, size }, call) => {
    for (let i = 0; i < n; i++) {
      const b = new Uint8Array(size).fill(0x5a);
      new DataView(b.buffer).setUint32(0, i);
      await call.chunk('flood.chunk', b);
      floodSent++;
    }
    return call.reply('flood.done', { chunks: n });
  });
  await svc.register('size', (args) => args.length);
  await svc.register('slow.job', (args, call) => new Promise((resolve, reject) => {
    call.signal.addEventListener('abort', () => {
      cancels.push('slow.job');
      reject(call.signal.reason);
    });
  }));

  profile = mkdtempSync(path.join(tmpdir(), 'sb-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    pipe: true,
    userDataDir: profile,
    timeout: 60000,
    protocolTimeout: 60000,
    // Root (CI) cannot run chromium's sandbox; a small /dev/shm would crash it.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
      '--disable-extensions', '--disable-background-networking', '--mute-audio'],
  });
  chromiumPid = browser.process().pid;
  page = await openPage({ name: 'browser-1' });
  cdp = await page.createCDPSession();
});

after(async () => {
  if (browser) {
    const closed = browser.close().catch(() => {});
    await Promise.race([closed, new Promise((r) => setTimeout(r, 10000).unref())]);
    // Still there after 10 s: its whole process group goes (puppeteer starts it detached).
    try {
      process.kill(-chromiumPid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (profile) rmSync(profile, { recursive: true, force: true });
  await Promise.race([Promise.all(nodeClients.map((c) => c.close())), new Promise((r) => setTimeout(r, 10000).unref())]);
  if (web) {
    web.server.close();
    web.server.closeAllConnections();
  }
  if (router) await router.stop();
});

it('a page connects over WebSocket, proving the client secret with WebCrypto, and makes a request', async () => {
  assert.deepEqual(await page.evaluate(() => window.demo.ready), { name: 'browser-1' });
  const r = await page.evaluate(() => window.demo.request('user.create', { name: 'Ada' }));
  assert.deepEqual(r, { outcome: 'user.created', data: { id: 1, name: 'Ada', from: 'browser-1' } });
});

it('a page with a wrong secret is refused UNAUTHORIZED', async () => {
  const r = await page.evaluate(() => window.demo.open({ secret: 'not the secret', reconnect: false }));
  assert.equal(r.error, 'UNAUTHORIZED', JSON.stringify(r));
});

it('a page connects with a bearer token in its HELLO (no cookie, no secret); an expired one is refused UNAUTHORIZED', async () => {
  const key = 'a browser test HS256 secret of 32+ bytes';
  const file = path.join(profile, 'jwt-secret');
  writeFileSync(file, key);
  const r2 = await startRouter(['--ws-port', '0', '--ws-allow-origin', `http://127.0.0.1:${web.port}`, '--jwt-secret-file', file]);
  try {
    const port2 = Number((await r2.proc.line(/WebSocket and HTTP on 127\.0\.0\.1:(\d+)/))[1]);
    const jwt = (claims) => {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
      return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
    };
    const now = Math.floor(Date.now() / 1000);
    const url = `ws://127.0.0.1:${port2}/v1/ws`;
    const ok = await page.evaluate((o) => window.demo.open(o), { url, name: 'tok-page', reconnect: false, token: jwt({ sub: 'page-user', sb_name: 'tok-*', exp: now + 3600 }) });
    assert.equal(ok.name, 'tok-page', JSON.stringify(ok));
    await page.evaluate((i) => window.demo.extra[i].close(), ok.index);
    const old = await page.evaluate((o) => window.demo.open(o), { url, reconnect: false, token: jwt({ sub: 'page-user', exp: now - 3600 }) });
    assert.equal(old.error, 'UNAUTHORIZED', JSON.stringify(old));
    assert.match(old.message, /expired/);
  } finally {
    await r2.stop();
  }
});

it('a page reads a stream: progress and 200 chunks in order, then the final reply', async () => {
  const r = await page.evaluate(() => window.demo.stream('count', { n: 200, size: 1024 }));
  assert.deepEqual(r, { chunks: 200, progress: 20, order: true, bytes: 200 * 1024, final: { outcome: 'count.done', data: { chunks: 200 } } });
});

it('a page that aborts a stream, or a request, cancels it at the handler', async () => {
  const r = await page.evaluate(() => window.demo.stream('count', { n: 100000, size: 1024, pace: 2 }, { abortAfter: 5 }));
  assert.equal(r.error, 'CANCELLED', JSON.stringify(r));
  assert.equal(r.chunks, 5);
  await waitFor(() => cancels.includes('count'), 10000, 'the count handler to be told of the cancel');
  const s = await page.evaluate(() => window.demo.slow(200));
  assert.equal(s.error, 'CANCELLED', JSON.stringify(s));
  await waitFor(() => cancels.includes('slow.job'), 10000, 'the slow.job handler to be told of the cancel');
});

it('requests a page makes in one turn, together over the router\'s frame limit, all go through', async () => {
  // 200 KB then 900 KB: one batch of the core's, more than the router's
  // WebSocket message limit (its frame limit and the prefix).
  const r = await page.evaluate(() => Promise.all([
    window.demo.request('size', 'a'.repeat(200000)),
    window.demo.request('size', 'b'.repeat(900000)),
  ]));
  assert.deepEqual(r, [{ outcome: 'ok', data: 200000 }, { outcome: 'ok', data: 900000 }]);
  assert.equal(await page.evaluate(() => window.demo.sb.online), true);
});

it('a page sees peers come and go (presence)', async () => {
  const visitor = await nodeClient({ name: 'visitor-1', secret: CLIENT_SECRET });
  const seen = (event) => page.evaluate((e) => window.demo.events.some((x) => x.peer === 'visitor-1' && x.event === e), event);
  await waitFor(() => seen('connected'), 10000, 'the page to see visitor-1 connect');
  await visitor.close();
  await waitFor(() => seen('disconnected'), 10000, 'the page to see visitor-1 leave');
  const ev = await page.evaluate(() => window.demo.events.find((x) => x.peer === 'visitor-1'));
  assert.deepEqual(ev, { event: 'connected', peer: 'visitor-1', role: 'client' });
});

it('a page registers a handler as a service (with the service secret) and a Node client calls it', async () => {
  const r = await page.evaluate(() => window.demo.open({ role: 'service', secret: 'browser test service secret', name: 'browser-svc' }));
  assert.equal(r.name, 'browser-svc', JSON.stringify(r));
  assert.equal(await page.evaluate((i) => window.demo.serve(i, 'browser.echo'), r.index), true);
  const app = await nodeClient({ name: 'node-app', secret: CLIENT_SECRET });
  const reply = await app.request('browser.echo', { n: 7, s: 'x' });
  assert.deepEqual(reply, { outcome: 'echoed', data: { args: { n: 7, s: 'x' }, peer: 'node-app', role: 'client' } });
  await app.close();
});

it('a page that stops reading a stream holds its producer back; then every chunk arrives in order', { timeout: 180000 }, async (t) => {
  const base = { router: rss(router.pid), browser: await browserRss() };
  assert.equal(await page.evaluate((a) => window.demo.hold('flood', a), FLOOD), 0);
  let last = -1;
  let still = 0;
  await waitFor(() => {
    still = floodSent === last ? still + 1 : 0;
    last = floodSent;
    return still >= 50; // 50 looks (>= 0.5 s) without progress
  }, 60000, 'the producer to be held back');
  const grown = { router: rss(router.pid) - base.router, browser: (await browserRss()) - base.browser };
  t.diagnostic(`held back after ${floodSent} of ${FLOOD.n} chunks; grown: router ${(grown.router / 1048576).toFixed(1)} MiB, browser ${(grown.browser / 1048576).toFixed(1)} MiB`);
  assert.ok(floodSent < FLOOD.n, `the producer sent all ${FLOOD.n} chunks to a page that read one`);
  for (const [who, n] of Object.entries(grown))
    assert.ok(n < BOUND, `${who} grew by ${(n / 1048576).toFixed(1)} MiB while ${floodSent} chunks were held back`);
  const r = await page.evaluate(() => window.demo.release());
  assert.deepEqual(r, { chunks: FLOOD.n, order: true, final: { outcome: 'flood.done', data: { chunks: FLOOD.n } } });
});

for (const [transport, webSocketStream] of [['WebSocketStream', true], ['WebSocket', false]]) {
  it(`a page producing a stream over ${transport} to a Node consumer that stops reading is held back; then every chunk arrives in order`, { timeout: 180000 }, async (t) => {
    const name = `page.stream.${transport}`;
    const opened = await page.evaluate((o) => window.demo.open(o), { role: 'service', secret: SERVICE_SECRET, name: `page-producer-${transport}`, webSocketStream });
    assert.ok(opened.index >= 0, JSON.stringify(opened));
    assert.equal(await page.evaluate((i, nm, n, size) => window.demo.produce(i, nm, n, size), opened.index, name, FLOOD.n, FLOOD.size), true);
    const reader = await nodeClient({ name: `node-reader-${transport}`, secret: CLIENT_SECRET });
    const base = { router: rss(router.pid), browser: await browserRss() };
    const it = reader.stream(name, null, { timeout: 300000 })[Symbol.asyncIterator]();
    assert.equal((await it.next()).value.data.readUInt32BE(0), 0);
    const produced = () => page.evaluate(() => window.demo.produced);
    let last = -1;
    let still = 0;
    await waitFor(async () => {
      const n = await produced();
      still = n === last ? still + 1 : 0;
      last = n;
      return still >= 50;
    }, 60000, 'the page\'s producer to be held back');
    const grown = { router: rss(router.pid) - base.router, browser: (await browserRss()) - base.browser };
    t.diagnostic(`held back after ${last} of ${FLOOD.n} chunks; grown: router ${(grown.router / 1048576).toFixed(1)} MiB, browser ${(grown.browser / 1048576).toFixed(1)} MiB`);
    assert.ok(last < FLOOD.n, `the page sent all ${FLOOD.n} chunks to a consumer that read one`);
    for (const [who, n] of Object.entries(grown))
      assert.ok(n < BOUND, `${who} grew by ${(n / 1048576).toFixed(1)} MiB while ${last} chunks were held back`);
    let n = 1;
    let final = null;
    for (;;) {
      const { value, done } = await it.next();
      if (done) break;
      if (value.type === 'reply') final = value;
      else {
        assert.equal(value.data.readUInt32BE(0), n, 'chunks in order');
        n++;
      }
    }
    assert.equal(n, FLOOD.n);
    assert.deepEqual(final, { type: 'reply', outcome: 'page.done', data: { chunks: FLOOD.n } });
    await reader.close();
  });
}

it('without WebSocketStream (the WebSocket transport) a page requests and reads a stream', async () => {
  const p = await openPage({ name: 'browser-2', classic: '1' });
  assert.deepEqual(await p.evaluate(() => window.demo.ready), { name: 'browser-2' });
  const r = await p.evaluate(() => window.demo.request('user.create', { name: 'Grace' }));
  assert.equal(r.data.from, 'browser-2');
  const s = await p.evaluate(() => window.demo.stream('count', { n: 200, size: 4096 }));
  assert.deepEqual([s.chunks, s.order, s.final.outcome], [200, true, 'count.done']);
  await p.close();
});

it('the demo page shows it all, and nothing threw in the page', async () => {
  await page.click('#req');
  await page.waitForFunction(() => document.getElementById('req-out').textContent.includes('Ada'), { timeout: 10000 });
  await page.click('#stream');
  await page.waitForFunction(() => document.getElementById('stream-out').textContent.includes('count.done'), { timeout: 20000 });
  await page.click('#slow');
  await page.waitForFunction(() => document.getElementById('slow-out').textContent.includes('CANCELLED'), { timeout: 10000 });
  if (process.env.SB_DEMO_SCREENSHOT) await page.screenshot({ path: process.env.SB_DEMO_SCREENSHOT, fullPage: true });
  assert.deepEqual(pageErrors, []);
});
