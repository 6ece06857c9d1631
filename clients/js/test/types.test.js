// index.d.ts describes the API a TypeScript program sees: a program using
// every call of the README compiles against it, and misuses do not.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/env.js';

const here = path.dirname(fileURLToPath(import.meta.url));

it('the type definitions fit every documented call and refuse misuses', { timeout: 60000 }, async () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = await run(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext',
    '--moduleResolution', 'nodenext', '--lib', 'es2022,dom,dom.iterable',
    path.join(here, 'fixtures/types.ts')], 60000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
