// A static HTTP server for the demo page and the browser test: the page, the
// package's sources and msgpackr, nothing else, on 127.0.0.1.
// usage: node demo/serve.js [PORT]   (then open http://127.0.0.1:PORT/demo/)

import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SERVED = ['/demo/', '/src/', '/node_modules/msgpackr/'];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** Starts the server on port (0: any free one); resolves with {server, port}. */
export function serve(port = 0) {
  const server = http.createServer(async (req, res) => {
    let p;
    try {
      // Normalised after decoding, so "%2e%2e" cannot climb out of SERVED.
      p = path.posix.normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    } catch {
      p = '';
    }
    if (p === '/demo') p = '/demo/';
    if (p.endsWith('/')) p += 'index.html';
    const file = path.join(ROOT, p);
    const type = TYPES[path.extname(file)];
    if (req.method !== 'GET' || !type || !SERVED.some((s) => p.startsWith(s))) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { port } = await serve(Number(process.argv[2] || 0));
  console.log(`serving http://127.0.0.1:${port}/demo/?ws=ws://127.0.0.1:WS_PORT/v1/ws`);
}
