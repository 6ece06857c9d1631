// rr-64 for JavaScript clients (a benchmark, not a test): request/reply with
// 64-byte payloads, 4 connections x 64 requests in flight, closed loop, from
// this Node process. Side by side in one interleaved run:
//   switchboard  this package -> the router -> sb-bench's C echo responder
//   nats         npm `nats` (the official client) -> nats-server -> the same
//                responder, speaking NATS (queue-group subscriber)
// Reports requests/s and CPU-seconds per million requests of the client (this
// process, process.cpuUsage()), the server and the responder (/proc).
//
//   node bench/rr.js [--duration S] [--warmup S] [--reps N] [--conns N]
//                    [--window N] [--size BYTES] [--targets switchboard,nats]
//                    [--switchboard PATH] [--sb-bench PATH] [--nats-server PATH]
//
// The router and sb-bench come from build/release/bin (tools/dev bench-setup
// builds them and installs nats-server).

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as sbConnect } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.resolve(here, '../../../build/release/bin');

function args() {
  const o = {
    duration: 3, warmup: 1, reps: 3, conns: 4, window: 64, size: 64, targets: 'switchboard,nats',
    switchboard: path.join(bin, 'switchboard'), 'sb-bench': path.join(bin, 'sb-bench'),
    'nats-server': existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server', json: false,
  };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i].replace(/^--/, '');
    if (!(k in o)) throw new Error(`unknown option ${a[i]}`);
    if (k === 'json') o.json = true;
    else o[k] = typeof o[k] === 'number' ? Number(a[++i]) : a[++i];
  }
  return o;
}

const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString());

/* utime + stime of a process, in seconds. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/* A child process; resolves once a line of its output matches re. */
function start(cmd, argv, re, stream = 'stdout') {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 10000);
    child.on('error', reject);
    child[stream].on('data', (d) => {
      out += d;
      const m = out.match(re);
      if (m) {
        clearTimeout(t);
        resolve({ child, m });
      }
    });
    child[stream === 'stdout' ? 'stderr' : 'stdout'].resume();
  });
}

async function stop(child) {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

const targets = {
  async switchboard(o) {
    const router = await start(o.switchboard, ['--port', '0', '--log-level', '0'], /listening on 127\.0\.0\.1:(\d+)/);
    const port = Number(router.m[1]);
    const rsp = await start(o['sb-bench'], ['responder', '--proto', 'sb', '--connect', `127.0.0.1:${port}`], /ready/);
    const clients = [];
    for (let i = 0; i < o.conns; i++) clients.push(await sbConnect({ port }));
    return {
      procs: { server: router.child, responder: rsp.child },
      request: (i, payload) => clients[i].request('bench.echo', payload, { timeout: 10000 }),
      echoed: (reply) => reply.outcome === 'ok' && reply.data.length === o.size,
      async close() {
        await Promise.all(clients.map((c) => c.close()));
        await stop(rsp.child);
        await stop(router.child);
      },
    };
  },
  async nats(o) {
    const { connect: natsConnect } = await import('nats');
    const port = await freePort();
    const server = await start(o['nats-server'], ['-a', '127.0.0.1', '-p', String(port)], /Server is ready/, 'stderr');
    const rsp = await start(o['sb-bench'], ['responder', '--proto', 'nats', '--connect', `127.0.0.1:${port}`], /ready/);
    const clients = [];
    // noAsyncTraces: the setting nats.js documents for request/reply speed
    // (no Error captured per request); its default would halve its rate.
    for (let i = 0; i < o.conns; i++) clients.push(await natsConnect({ servers: `127.0.0.1:${port}`, noAsyncTraces: true }));
    return {
      procs: { server: server.child, responder: rsp.child },
      request: (i, payload) => clients[i].request('bench.echo', payload, { timeout: 10000 }),
      echoed: (msg) => msg.data.length === o.size,
      async close() {
        await Promise.all(clients.map((c) => c.close()));
        await stop(rsp.child);
        await stop(server.child);
      },
    };
  },
};

async function runOne(name, o) {
  const t = await targets[name](o);
  const payload = new Uint8Array(o.size).fill(0x61);
  // Each connection's first answer is checked: the echo, not an error.
  for (let c = 0; c < o.conns; c++)
    if (!t.echoed(await t.request(c, payload))) throw new Error(`${name}: the responder did not echo the payload`);
  let count = 0;
  let running = true;
  const loops = [];
  for (let c = 0; c < o.conns; c++)
    for (let w = 0; w < o.window; w++)
      loops.push((async () => {
        while (running) {
          await t.request(c, payload);
          count++;
        }
      })());
  const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
  await sleep(o.warmup);
  const procs = Object.entries(t.procs).map(([k, p]) => [k, p.pid]);
  const at0 = { n: count, t: performance.now(), cpu: process.cpuUsage(), procs: procs.map(([, pid]) => cpuOf(pid)) };
  await sleep(o.duration);
  const at1 = { n: count, t: performance.now(), cpu: process.cpuUsage(at0.cpu), procs: procs.map(([, pid]) => cpuOf(pid)) };
  running = false;
  await Promise.all(loops);
  await t.close();
  const n = at1.n - at0.n;
  const perM = (sec) => (sec / n) * 1e6;
  const r = { target: name, requests: n, rate: n / ((at1.t - at0.t) / 1000), client: perM((at1.cpu.user + at1.cpu.system) / 1e6) };
  procs.forEach(([k], i) => {
    r[k] = perM(at1.procs[i] - at0.procs[i]);
  });
  return r;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, d = 2) => x.toFixed(d);

async function main() {
  const o = args();
  const names = o.targets.split(',');
  const all = [];
  // Interleaved: A B A B A B, so drift on a shared machine hits both alike.
  for (let rep = 0; rep < o.reps; rep++)
    for (const name of names) {
      const r = await runOne(name, o);
      all.push(r);
      if (!o.json)
        console.error(`rep ${rep + 1} ${name}: ${Math.round(r.rate)} req/s, client ${fmt(r.client)} CPU-s/M`);
    }
  if (o.json) {
    console.log(JSON.stringify(all));
    return;
  }
  console.log(`rr-${o.size}: ${o.conns} connections x ${o.window} in flight, ${o.duration} s x ${o.reps}, medians (min-max)`);
  console.log('target        req/s                      client CPU-s/M    server CPU-s/M   responder CPU-s/M');
  for (const name of names) {
    const rs = all.filter((r) => r.target === name);
    const rate = rs.map((r) => r.rate);
    const col = (k) => fmt(median(rs.map((r) => r[k])));
    console.log(`${name.padEnd(12)}  ${String(Math.round(median(rate))).padEnd(7)} (${Math.round(Math.min(...rate))}-${Math.round(Math.max(...rate))})`.padEnd(41) +
      `${col('client').padEnd(18)}${col('server').padEnd(17)}${col('responder')}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
