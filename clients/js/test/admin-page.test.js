// The admin page (docs/operations.md, "Admin page") in a browser: the
// daemon with --admin-port, a Node service registering names with argument
// schemas (one internal, one named like markup), headless Chromium
// (Debian's chromium, driven by puppeteer-core) opening http://ADMIN/, and
// a Node client sending traffic the page must show. SB_ADMIN_SCREENSHOT=PATH
// keeps a screenshot of the page at the end (docs/operations-admin.png).

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { connect } from '../src/index.js';
import { startRouter, waitFor } from './helpers/env.js';

const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
// A name is printable ASCII without spaces: this one is also markup, which
// the page must show as text and never run.
const MARKUP = '<img/src=x/onerror=window.pwned=1>';
const CHARGE_SCHEMA = {
  keys: {
    amount: { type: 'uint', min: 1, max: 100000 },
    currency: { type: 'str', min: 3, max: 3 },
    note: { type: ['str', 'nil'], max: 140 },
  },
  required: ['amount', 'currency'],
  additional: false,
};

let router;
let adminUrl;
let browser;
let chromiumPid = 0;
let profile;
let page;
let svc;
let cli;
const pageErrors = [];

/* A JSON Schema (docs/protocol.md): its nested properties and items are
 * listed by the paths the router names in its faults. */
const USER_SCHEMA = {
  type: 'object',
  properties: {
    email: { type: 'string', maxLength: 254 },
    address: {
      type: 'object',
      properties: { zip: { type: 'string', minLength: 5, maxLength: 5 }, city: { type: 'string' } },
      required: ['zip'],
      additionalProperties: false,
    },
    tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
  },
  required: ['email'],
  additionalProperties: false,
};

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: tools/bootstrap installs Debian's chromium (or set SB_CHROMIUM)`);
  router = await startRouter(['--admin-port', '0']);
  adminUrl = (await router.proc.line(/admin on (http:\/\/127\.0\.0\.1:\d+\/)/))[1];

  svc = await connect({ port: router.port, role: 'service', name: 'billing-1' });
  await svc.register('billing.charge', (args) => ({ charged: args.amount }), { schema: CHARGE_SCHEMA });
  await svc.register('billing.audit', () => 'ok', {
    internal: true,
    schema: { keys: { since: { type: 'int' } } },
  });
  await svc.register(MARKUP, () => 'ok');
  await svc.register('user.update', () => 'ok', { schema: USER_SCHEMA });
  cli = await connect({ port: router.port, name: 'shop-web' });

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
  page = await browser.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // A request the page makes anywhere but the admin listener is a bug.
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    if (req.url().startsWith(adminUrl)) req.continue();
    else {
      pageErrors.push(`request outside the admin listener: ${req.url()}`);
      req.abort();
    }
  });
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(adminUrl, { timeout: 30000 });
});

after(async () => {
  if (browser) {
    const closed = browser.close().catch(() => {});
    await Promise.race([closed, new Promise((r) => setTimeout(r, 10000).unref())]);
    try {
      process.kill(-chromiumPid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (profile) rmSync(profile, { recursive: true, force: true });
  await Promise.race([Promise.all([svc, cli].filter(Boolean).map((c) => c.close())), new Promise((r) => setTimeout(r, 10000).unref())]);
  if (router) await router.stop();
});

/* What the page shows for a name, read from the DOM as a user sees it. */
function shown(name) {
  return page.evaluate((n) => {
    const row = [...document.querySelectorAll('#routes tbody tr')].find((r) => r.dataset.name === n);
    const art = [...document.querySelectorAll('#api-list article')].find((a) => a.dataset.name === n);
    const text = (sel, root) => (root && root.querySelector(sel) ? root.querySelector(sel).textContent : null);
    return {
      row: row ? [...row.cells].map((c) => c.textContent) : null,
      schemaJson: row && row.querySelector('.schema') ? row.querySelector('.schema').title : null,
      requests: text('.requests', row),
      rate: text('.rate', row),
      p50: text('.p50', row),
      who: text('.who', art),
      keys: art ? [...art.querySelectorAll('tr[data-key]')].map((r) => [...r.cells].map((c) => c.textContent)) : null,
      notes: art ? [...art.querySelectorAll('p')].map((p) => p.textContent) : null,
    };
  }, name);
}

it('the page lists the registered routes with handlers, shards and schemas, and an API reference from the schemas', async () => {
  // The tables and the counters come from separate reads: wait for both.
  await waitFor(async () => {
    const s = await shown('billing.charge');
    return s.keys !== null && s.requests !== null && s.requests !== '-';
  }, 30000, 'the page to show billing.charge with its counts');
  const charge = await shown('billing.charge');
  assert.equal(charge.row[0], 'billing.charge');
  assert.match(charge.row[1], /^billing-1 · shard \d+$/);
  assert.equal(charge.row[2], 'clients and services');
  assert.equal(charge.row[3], 'required amount, currency · optional note · no other keys');
  assert.deepEqual(JSON.parse(charge.schemaJson), CHARGE_SCHEMA); // its tooltip: the schema as registered
  assert.equal(charge.who, 'clients and services');
  assert.deepEqual(charge.keys, [
    ['amount', 'uint', 'value 1 to 100000', 'required'],
    ['currency', 'str', 'length 3 to 3', 'required'],
    ['note', 'str or nil', 'length at most 140', 'optional'],
  ]);
  assert.deepEqual(charge.notes, ['Other keys are refused (invalid arguments).']);

  const audit = await shown('billing.audit');
  assert.equal(audit.who, 'services only');
  assert.deepEqual(audit.keys, [['since', 'int', '-', 'optional']]);
  assert.deepEqual(audit.notes, ['Other keys are allowed.']);

  const peers = await page.evaluate(() => [...document.querySelectorAll('#peers tbody tr')].map((r) => [...r.cells].map((c) => c.textContent)));
  const svcRow = peers.find((r) => r[0] === 'billing-1');
  assert.ok(svcRow, JSON.stringify(peers));
  assert.equal(svcRow[2], 'service');
  assert.equal(svcRow[4], 'this router');
  assert.equal(peers.find((r) => r[0] === 'shop-web')[2], 'client');
});

it('a JSON Schema shows in the API reference by the paths the router names', async () => {
  await waitFor(async () => (await shown('user.update')).keys !== null, 30000, 'the page to show user.update');
  const u = await shown('user.update');
  assert.equal(u.row[3], 'required email · optional address, tags · no other keys');
  assert.deepEqual(u.keys, [
    ['address', 'object', 'no other keys', 'optional'],
    ['address.city', 'string', '-', 'optional'],
    ['address.zip', 'string', 'length 5 to 5', 'required'],
    ['email', 'string', 'length at most 254', 'required'],
    ['tags', 'array', 'items at most 3', 'optional'],
    ['tags[]', 'any', 'one of "a", "b"', 'optional'],
  ]);
  assert.deepEqual(u.notes, ['Other keys are refused (invalid arguments).']);
});

it('a name that is markup is shown as text and never runs', async () => {
  const m = await shown(MARKUP);
  assert.equal(m.row[0], MARKUP);
  assert.equal(m.notes[0], 'No argument schema: the router passes any arguments.');
  const leaked = await page.evaluate(() => ({ pwned: window.pwned === 1, imgs: document.querySelectorAll('img').length }));
  assert.deepEqual(leaked, { pwned: false, imgs: 0 });
});

it('traffic shows up: request counts, a rate and latency, updated every second', async () => {
  const before = await shown('billing.charge');
  assert.equal(before.requests, '0');
  for (let i = 0; i < 40; i++) {
    const r = await cli.request('billing.charge', { amount: 100 + i, currency: 'EUR' });
    assert.deepEqual(r, { outcome: 'ok', data: { charged: 100 + i } });
  }
  await assert.rejects(cli.request('billing.charge', { amount: 0, currency: 'EUR' }), /amount/);
  await waitFor(async () => (await shown('billing.charge')).requests === '40', 15000, 'the page to count 40 requests');
  assert.match((await shown('billing.charge')).p50, /^\d+(\.\d)? (µs|ms)$/);
  // With no more traffic, the rate falls back to zero.
  await waitFor(async () => (await shown('billing.charge')).rate === '0.0', 15000, 'the rate to return to 0');
  // A steady trickle shows as a rate above zero (and makes the picture).
  let stop = false;
  const trickle = (async () => {
    for (let i = 0; !stop; i++) {
      await cli.request('billing.charge', { amount: 1 + (i % 50), currency: 'EUR' });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await waitFor(async () => Number((await shown('billing.charge')).rate) > 0, 15000, 'a rate above 0');
    if (process.env.SB_ADMIN_SCREENSHOT) await page.screenshot({ path: process.env.SB_ADMIN_SCREENSHOT, fullPage: true });
  } finally {
    stop = true;
    await trickle;
  }
  assert.deepEqual(pageErrors, []);
});
