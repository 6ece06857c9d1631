// TLS and mutual TLS with certificates made by the openssl command line at
// test time: the router's certificate checked against our CA, ours checked
// by the router and shown to handlers as the caller's subject, and refusals
// on either side ending in UNAUTHORIZED without retries.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../src/index.js';
import { startRouter, run } from './helpers/env.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-js-tls-'));
const pem = (n) => readFileSync(path.join(dir, n));
let router;

const CERTS = `set -e
K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
openssl req -x509 $K -keyout ca.key -out ca.pem -days 30 -subj /CN=test-ca
openssl req -x509 $K -keyout rogue-ca.key -out rogue-ca.pem -days 30 -subj /CN=rogue-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext
leaf() {
  openssl req $K -keyout $1.key -out $1.csr -subj /CN=$1
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 30 \${3:+-extfile $3}
}
leaf server ca server.ext
leaf alice ca
leaf mallory rogue-ca
`;

before(async () => {
  const r = await run('sh', ['-c', `cd ${dir} && ${CERTS}`], 60000);
  assert.equal(r.code, 0, r.stderr);
  router = await startRouter(['--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key'),
    '--tls-ca', path.join(dir, 'ca.pem'), '--tls-verify-client']);
});

after(async () => {
  await router.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('mutual TLS: the router\'s certificate is checked, ours is, and a handler sees the caller\'s subject', async () => {
  const tls = (who) => ({ ca: pem('ca.pem'), cert: pem(`${who}.pem`), key: pem(`${who}.key`) });
  const svc = await connect({ port: router.port, role: 'service', tls: tls('alice'), name: 'tls-svc' });
  await svc.register('tls.whoami', (args, call) => ({ peer: call.peer, subject: call.identity.subject }));
  const app = await connect({ port: router.port, tls: tls('alice'), name: 'tls-app' });
  assert.deepEqual(await app.request('tls.whoami', null), { outcome: 'ok', data: { peer: 'tls-app', subject: 'CN=alice' } });
  await app.close();
  await svc.close();
});

it('a router certificate our CA did not sign, or our certificate missing or from another CA: UNAUTHORIZED, no retry', async () => {
  const tries = [
    { ca: pem('rogue-ca.pem'), cert: pem('alice.pem'), key: pem('alice.key') }, // we refuse the router
    { ca: pem('ca.pem') }, // the router wants a certificate
    { ca: pem('ca.pem'), cert: pem('mallory.pem'), key: pem('mallory.key') }, // from the rogue CA
  ];
  for (const tls of tries) {
    // Even a client told to keep trying stops: it would be refused again.
    const err = await connect({ port: router.port, tls, waitOnFirstConnect: true }).catch((e) => e);
    assert.equal(err.code, 'UNAUTHORIZED', `${err.message}`);
    assert.match(err.message, /TLS/);
  }
  // Plain TCP to a TLS listener: the router says so in a frame we can read.
  const plain = await connect({ port: router.port }).catch((e) => e);
  assert.equal(plain.code, 'UNAUTHORIZED');
  assert.equal(plain.message, 'this router requires TLS');
});
