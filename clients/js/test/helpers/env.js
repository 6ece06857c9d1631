// What the tests run against: the daemon, sbctl and the C peer that CMake
// built (ctest passes their paths; by hand, build/release is used), started
// on free ports, watched for sanitizer reports, and waited on with deadlines.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const bin = (name) => path.join(root, 'build/release/bin', name);

export const DAEMON = process.env.SB_DAEMON || bin('switchboard');
export const SBCTL = process.env.SBCTL || bin('sbctl');
export const JS_PEER = process.env.SB_JS_PEER || bin('sb-js-peer');
export const ROOT = root;

/* Under ASan a freed block stays resident in the quarantine, which would
 * look like a leak to the memory checks (tests/support/daemon.c does the same). */
function childEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  env.ASAN_OPTIONS = `${env.ASAN_OPTIONS ? env.ASAN_OPTIONS + ':' : ''}quarantine_size_mb=0`;
  return env;
}

const SANITIZER = /AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:/;

/** Waits until cond() is true, polling; throws naming what after ms. */
export async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A child process whose stdout is read line by line. */
export function spawnLines(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let partial = '';
  let stderr = '';
  let exit = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    // Not started at all (a wrong path): as if it had exited at once.
    child.on('error', (e) => {
      stderr += String(e);
      exit = { code: null, signal: null, error: e.message };
      resolve(exit);
    });
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop();
    lines.push(...parts);
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return {
    child,
    lines,
    exited,
    get stderr() {
      return stderr;
    },
    get exit() {
      return exit;
    },
    /** Waits for a line matching re; returns its match. */
    async line(re, ms = 15000) {
      let m = null;
      await waitFor(() => {
        if (exit !== null && !lines.some((l) => re.test(l))) throw new Error(`${cmd} exited (${JSON.stringify(exit)}) before printing ${re}: ${stderr}`);
        const l = lines.find((x) => re.test(x));
        if (l !== undefined) m = l.match(re);
        return m !== null;
      }, ms, `${path.basename(cmd)} to print ${re}`);
      return m;
    },
    /** SIGTERM (or sig), then waits up to ms for the exit. */
    async stop(sig = 'SIGTERM', ms = 20000) {
      if (exit === null) child.kill(sig);
      const t = setTimeout(() => child.kill('SIGKILL'), ms);
      const e = await exited;
      clearTimeout(t);
      return e;
    },
  };
}

/** Runs a program to its end: {code, stdout, stderr}. */
export function run(cmd, args, ms = 20000, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${ms} ms`));
    }, ms);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Resident memory of a process, in bytes. */
export function rss(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Starts the daemon on a free port (or on port, for a restart) and waits
 * for its "listening" line. stop() drains it with SIGTERM and fails if it
 * did not exit 0 or a sanitizer spoke.
 */
export async function startRouter(args = [], port = 0) {
  const p = spawnLines(DAEMON, ['--port', String(port), '--bind-retries', '50', '--bind-retry-ms', '100', ...args]);
  const m = await p.line(/listening on 127\.0\.0\.1:(\d+)/, 30000);
  const router = {
    port: Number(m[1]),
    pid: p.child.pid,
    proc: p,
    async stop() {
      const e = await p.stop('SIGTERM');
      if (e.code !== 0 || SANITIZER.test(p.stderr))
        throw new Error(`the router did not stop cleanly (${JSON.stringify(e)}):\n${p.stderr.slice(-4000)}`);
    },
    async kill() {
      await p.stop('SIGKILL');
      if (SANITIZER.test(p.stderr)) throw new Error(`the router reported:\n${p.stderr.slice(-4000)}`);
    },
  };
  return router;
}
