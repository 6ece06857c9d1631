// The demo page: one client over WebSocket making a request, a stream it
// can cancel, a cancelled slow call, and a presence list. window.demo is
// what the browser test (test/browser.test.js) drives; the buttons call
// the same functions. Query: ?ws=URL (the router's /v1/ws), &secret=S.

import { connect } from 'switchboard-client';

const q = new URLSearchParams(location.search);
const url = q.get('ws') || `ws://${location.hostname}:8080/v1/ws`;
const secret = q.get('secret') || undefined;
const $ = (id) => document.getElementById(id);
const errOf = (e) => ({ error: e.code || 'INTERNAL', message: e.message });
const seqOf = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);

const demo = { url, sb: null, events: [], extra: [] };
window.demo = demo;
$('url').textContent = url;
$('transport').textContent = typeof WebSocketStream === 'function' ? '(WebSocketStream)' : '(WebSocket)';

function status(text) {
  $('status').textContent = text;
  $('status').className = `status ${text}`;
}

async function start() {
  const sb = await connect({ url, secret, name: q.get('name') || undefined, webSocketStream: q.get('classic') ? false : undefined });
  demo.sb = sb;
  status('online');
  $('me').textContent = sb.name;
  sb.on('offline', () => status('offline'));
  sb.on('reconnected', () => status('online'));
  const watch = sb.presence();
  await watch.ready;
  (async () => {
    for await (const ev of watch) {
      demo.events.push({ event: ev.event, peer: ev.peer, role: ev.role });
      const li = document.createElement('li');
      li.className = ev.event;
      li.textContent = `${ev.peer} (${ev.role}) ${ev.event}`;
      $('presence').append(li);
    }
  })();
  return { name: sb.name };
}

demo.request = async (name, args, opts) => {
  try {
    const r = await demo.sb.request(name, args, opts);
    $('req-out').textContent = `${name} -> ${r.outcome} ${JSON.stringify(r.data)}`;
    return r;
  } catch (e) {
    $('req-out').textContent = `${name} -> ${e.code}: ${e.message}`;
    return errOf(e);
  }
};

/* Reads a stream to its end (or aborts it after abortAfter chunks): how
 * many parts came, and whether the chunks' sequence numbers were in order. */
demo.stream = async (name, args, { abortAfter = 0 } = {}) => {
  const ac = new AbortController();
  demo.abort = () => ac.abort();
  const r = { chunks: 0, progress: 0, order: true, bytes: 0 };
  const out = (text) => ($('stream-out').textContent = text);
  try {
    for await (const part of demo.sb.stream(name, args, { signal: ac.signal })) {
      if (part.type === 'chunk') {
        if (seqOf(part.data) !== r.chunks) r.order = false;
        r.chunks++;
        r.bytes += part.data.length;
        $('stream-n').textContent = `${r.chunks} chunks`;
        if (abortAfter && r.chunks === abortAfter) ac.abort();
      } else if (part.type === 'progress') {
        r.progress++;
        $('bar').value = part.data.done / part.data.of;
      } else r.final = { outcome: part.outcome, data: part.data };
    }
    out(`${name} -> ${r.final.outcome} ${JSON.stringify(r.final.data)}, ${r.chunks} chunks in order, ${r.progress} progress`);
    return r;
  } catch (e) {
    out(`${name} -> ${e.code} after ${r.chunks} chunks`);
    return { ...r, ...errOf(e) };
  }
};

/* Reads one part of a stream, then nothing until release(). */
demo.hold = async (name, args) => {
  demo.held = demo.sb.stream(name, args, { timeout: 300000 })[Symbol.asyncIterator]();
  const first = await demo.held.next();
  return seqOf(first.value.data);
};

demo.release = async () => {
  const r = { chunks: 1, order: true };
  for (;;) {
    const { value, done } = await demo.held.next();
    if (done) return r;
    if (value.type === 'reply') r.final = { outcome: value.outcome, data: value.data };
    else if (value.type === 'chunk') {
      if (seqOf(value.data) !== r.chunks) r.order = false;
      r.chunks++;
    }
  }
};

demo.slow = async (ms = 200) => {
  try {
    await demo.sb.request('slow.job', null, { signal: AbortSignal.timeout(ms) });
    $('slow-out').textContent = 'slow.job answered';
    return { ok: true };
  } catch (e) {
    $('slow-out').textContent = `slow.job -> ${e.code} (a CANCEL went to the handler)`;
    return errOf(e);
  }
};

/* Another connection of this page, as opts say (a secret, a role). */
demo.open = async (opts) => {
  try {
    const sb = await connect({ url, ...opts });
    demo.extra.push(sb);
    return { name: sb.name, index: demo.extra.length - 1 };
  } catch (e) {
    return errOf(e);
  }
};

/* The page as a service: a handler the router's other peers can call. */
demo.serve = async (index, name) => {
  await demo.extra[index].register(name, (args, call) => call.reply('echoed', { args, peer: call.peer, role: call.identity.role }));
  return true;
};

/* The page as a producer: a stream of n chunks numbered from 0, counted in
 * demo.produced as each chunk() resolves (it waits while output is queued). */
demo.produce = async (index, name, n, size) => {
  demo.produced = 0;
  await demo.extra[index].register(name, async (args, call) => {
    for (let i = 0; i < n; i++) {
      const b = new Uint8Array(size).fill(0x5a);
      new DataView(b.buffer).setUint32(0, i);
      await call.chunk('page.chunk', b);
      demo.produced++;
    }
    return call.reply('page.done', { chunks: n });
  });
  return true;
};

$('req').onclick = () => demo.request('user.create', { name: 'Ada' });
$('stream').onclick = () => demo.stream('count', { n: 200, size: 1024 });
$('cancel').onclick = () => demo.abort && demo.abort();
$('slow').onclick = () => demo.slow();

demo.ready = start().catch((e) => {
  status('offline');
  return errOf(e);
});
