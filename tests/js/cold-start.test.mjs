// The Node entry's cold start (issue 14 row 7): `import` + the first Sandrun.create() load
// none of the node: modules they do not need; the host loads them on first use. Which
// modules a fresh process has loaded is read from process.moduleLoadList (exact, unlike a
// timing; the timing itself is bench/goals.mjs row 7).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { root } from './support.mjs';

/** Runs `code` as an ES module in a fresh `node` in the repo root; resolves with its stdout's JSON. */
const fresh = (code, args = []) =>
  new Promise((resolve) => {
    execFile(process.execPath, [...args, '--input-type=module', '-e', code], { cwd: root }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, out: stdout ? JSON.parse(stdout) : undefined, stderr }),
    );
  });

// What an ES `import` of node:http, node:https, node:crypto and node:fs would load (the
// streams come with node:fs's, which reads every export, fs.ReadStream too). Not
// fs/promises: Node's ESM loader loads that itself to read the package's files.
const HEAVY = ['http', 'https', 'crypto', 'stream'];
const loaded = `process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13))`;

test('import + Sandrun.create() load none of node:http, node:https, node:crypto, node:stream; the first request loads node:http', async () => {
  const r = await fresh(`
    const before = ${loaded};
    const { Sandrun, SandrunError } = await import('@sandrun/wasm');
    const sandrun = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9' });
    const afterCreate = ${loaded};
    const e = await sandrun.job().code('print(1)').submit().catch((e) => e);
    process.stdout.write(JSON.stringify({ before, afterCreate, afterRequest: ${loaded}, code: e.code, typed: e instanceof SandrunError, message: e.message }));`);
  assert.equal(r.code, 0, r.stderr);
  const { before, afterCreate, afterRequest } = r.out;
  // Node itself has not loaded them at start, so their absence below is the package's doing.
  for (const m of HEAVY) assert.ok(!before.includes(m), `node loads ${m} before any import; this test cannot see the package's imports`);
  assert.deepEqual(HEAVY.filter((m) => afterCreate.includes(m)), [], 'loaded by import + Sandrun.create()');
  // The lazily loaded host still works: the request goes out through node:http.
  assert.equal(r.out.code, 'NETWORK');
  assert.ok(r.out.typed);
  assert.match(r.out.message, /connection refused/);
  assert.ok(afterRequest.includes('http'), 'the first request loads node:http');
});

test('a runtime without process.getBuiltinModule gets a clear error at import, not a failure at the first request', async () => {
  const r = await fresh(`
    delete process.getBuiltinModule;
    const e = await import('@sandrun/wasm').then(() => null, (e) => e);
    process.stdout.write(JSON.stringify({ message: e?.message ?? null }));`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.out.message ?? '', /needs process\.getBuiltinModule \(Node\.js 22\.12 or later/);
});
