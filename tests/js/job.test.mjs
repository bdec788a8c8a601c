// The job flow of @sandrun/wasm against a real devnet, imported by its package name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandrun, SandrunError, JobBuilder } from '@sandrun/wasm';
import { startDevnet, setFault, acceptedJobs, rejectsWith } from './support.mjs';

let net;
let sandrun;
const W = {}; // worker urls by role

before(async () => {
  net = await startDevnet(['--workers', '7', '--no-rate-limit', '--fault', '2=wrong-output', '--fault', '3=bad-signature', '--fault', '4=anonymous', '--fault', '6=crash']);
  [W.main, W.spare, W.wrong, W.badsig, W.anon, W.toggle, W.crash] = net.workers.map((w) => w.url);
  sandrun = Sandrun.create({ apiEndpoint: W.main });
});
after(async () => net && net.stop());

const on = (url, extra = {}) => sandrun.configure({ apiEndpoint: url, ...extra });

test('the spec example code() runs JavaScript and prints', async () => {
  const result = await sandrun.job().code('console.log("Hello from GPU!")').submit().then((execution) => execution.wait());
  assert.equal(result.status, 'completed');
  assert.equal(result.stdout, 'Hello from GPU!\n');
  assert.deepEqual(result.logs, ['Hello from GPU!']);
  assert.equal(new TextDecoder().decode(result.output), 'Hello from GPU!\n');
  assert.equal(result.proof.verified, true);
  assert.ok(result.proof.checks.some((c) => c.name === 'signature' && c.ok));
  assert.equal(result.worker, W.main);
  assert.equal(result.cost.state, 'none');
  assert.ok(result.executionTime > 0);
});

test('after the stream shows the end, /status and /logs are read in one round trip', async () => {
  const reads = [];
  const tap = {
    name: 'read-times',
    async execute(next, ctx) {
      const path = new URL(ctx.url).pathname;
      if (!/^\/(status|logs)\//.test(path)) return next();
      const r = { what: path.split('/')[1], start: performance.now(), end: Infinity };
      reads.push(r);
      try { return await next(); } finally { r.end = performance.now(); }
    },
  };
  for (const level of ['none', 'low']) {
    reads.length = 0;
    const r = await sandrun.with(tap).job().code('print("hi")').consensus(level).submit().then((e) => e.wait());
    assert.equal(r.stdout, 'hi\n');
    const status = reads.filter((x) => x.what === 'status');
    const logs = reads.filter((x) => x.what === 'logs');
    assert.equal(logs.length, 1, JSON.stringify(reads));
    assert.ok(logs[0].start < status.at(-1).end, `${level}: /logs was asked only after /status answered`);
  }
});

test('a failing job resolves with status failed, exit code and stderr', async () => {
  const ex = await sandrun.job().code('import sys\nprint("about to fail")\nsys.stderr.write("boom\\n")\nsys.exit(3)\n').submit();
  assert.equal(ex.status, 'queued');
  assert.match(ex.id, /^job_\d+_\d+$/);
  const r = await ex.wait();
  assert.equal(r.status, 'failed');
  assert.equal(r.exitCode, 3);
  assert.equal(r.stdout, 'about to fail\n');
  assert.equal(r.stderr, 'boom\n');
  assert.equal(ex.status, 'failed');
  assert.equal(r.proof.verified, true, 'a failed job is still a signed, verifiable result');
});

test('args, environment and unicode output', async () => {
  const r = await sandrun.job()
    .code('import os, sys\nprint(sys.argv[1:], os.environ["GREETING"], "héllo ✓")\n')
    .args(['--input', 'data.csv', 'hello world'])
    .environment({ GREETING: "it's me" })
    .submit().then((e) => e.wait());
  assert.equal(r.stdout, "['--input', 'data.csv', 'hello world'] it's me héllo ✓\n");
  assert.equal(r.proof.verified, true);
  const node = await sandrun.job().code('console.log(process.env.A, process.argv.slice(2).join(","))').environment({ A: 'x y' }).args(['1', '2']).submit().then((e) => e.wait());
  assert.equal(node.stdout, 'x y 1,2\n');
  const bash = await sandrun.job().code('#!/bin/bash\necho "$A" "$1"').environment({ A: "q'uote" }).args(['z']).submit().then((e) => e.wait());
  assert.equal(bash.stdout, "q'uote z\n");
});

test('output files: outputs patterns, download() checks bytes, downloadTo() writes them', async () => {
  const code = 'import os\nos.makedirs("results", exist_ok=True)\nopen("out.txt","w").write("result data 42\\n")\nopen("results/sq.csv","w").write("n,sq\\n3,9\\n")\nopen("skip.log","w").write("x")\n';
  const ex = await sandrun.job().code(code).outputs(['*.txt', 'results/*']).submit();
  const r = await ex.download();
  // The signed stdout file is always an output of a verified job.
  assert.deepEqual(r.files.map((f) => f.path), ['_sandrun_stdout.txt', 'out.txt', 'results/sq.csv']);
  assert.equal(new TextDecoder().decode(r.files[1].bytes), 'result data 42\n');
  assert.equal(r.files[2].size, 9);
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-out-'));
  await ex.downloadTo(dir);
  assert.equal(readFileSync(join(dir, 'out.txt'), 'utf8'), 'result data 42\n');
  assert.equal(readFileSync(join(dir, 'results/sq.csv'), 'utf8'), 'n,sq\n3,9\n');
  assert.ok(!existsSync(join(dir, 'skip.log')));
  // Without patterns every file of the job directory is an output, inputs included.
  const all = await sandrun.job().code('open("a.txt","w").write("a")').file('data/in.csv', 'x,y\n').submit().then((e) => e.download());
  assert.deepEqual(all.files.map((f) => f.path).sort(), ['_sandrun_run.py', '_sandrun_stdout.txt', 'a.txt', 'data/in.csv', 'main.py']);
});

test('logs() streams the job live and loses nothing', async () => {
  const ex = await sandrun.job().code('import sys\nprint("line 1")\nprint("line 2")\nsys.stderr.write("warn\\n")\n').submit();
  const chunks = [];
  for await (const c of await ex.logs()) chunks.push(c);
  const text = (s) => chunks.filter((c) => c.stream === s).map((c) => c.text).join('');
  assert.equal(text('stdout'), 'line 1\nline 2\n');
  assert.equal(text('stderr'), 'warn\n');
  assert.ok(chunks.at(-1).stream === 'status' && /exit=0/.test(chunks.at(-1).text), JSON.stringify(chunks));
  // After the end the stream comes from /logs: same content.
  const again = [];
  for await (const c of await ex.logs()) again.push(c);
  assert.equal(again.filter((c) => c.stream === 'stdout').map((c) => c.text).join(''), 'line 1\nline 2\n');
  assert.equal((await ex.wait()).proof.checks.find((c) => c.name === 'signature').detail.includes('1 candidate'), true,
    'the exact CPU from the [DONE] frame is used for the signature');
});

test('timeout() is enforced by the SDK', async () => {
  const t0 = performance.now();
  const ex = await sandrun.configure({ apiEndpoint: W.spare }).job().code('import time\ntime.sleep(30)').timeout(0.5).submit();
  const e = await rejectsWith(ex.wait(), 'TIMEOUT', SandrunError);
  assert.match(e.message, /timeout of 0.5 s/);
  assert.ok(performance.now() - t0 < 15_000);
});

test('cancel() rejects wait() with CANCELLED', async () => {
  const ex = await sandrun.configure({ apiEndpoint: W.spare }).job().code('import time\ntime.sleep(20)').submit();
  const waiting = ex.wait();
  setTimeout(() => ex.cancel(), 200);
  await rejectsWith(waiting, 'CANCELLED', SandrunError);
  assert.equal(ex.status, 'cancelled');
  await rejectsWith(ex.wait(), 'CANCELLED', SandrunError);
});

test('a 429 is retried after its wait, and the job is submitted exactly once', async () => {
  await setFault(W.toggle, '429');
  const before = await acceptedJobs(W.toggle);
  setTimeout(() => setFault(W.toggle, null), 600);
  const r = await on(W.toggle).job().code('print("after 429")').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'after 429\n');
  assert.equal(await acceptedJobs(W.toggle), before + 1);
  // With retries exhausted the 429 surfaces, typed.
  await setFault(W.toggle, '429');
  const e = await rejectsWith(on(W.toggle, { defaults: { retries: 0 } }).job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
  assert.equal(e.status, 429);
  await setFault(W.toggle, null);
  assert.equal(await acceptedJobs(W.toggle), before + 1);
});

test('tampered outputs, bad signatures and anonymous workers are refused under consensus low', async () => {
  const code = 'open("out.txt","w").write("x")';
  const wrong = await rejectsWith(on(W.wrong).job().code(code).submit().then((e) => e.wait()), 'VERIFICATION_FAILED', SandrunError);
  assert.match(wrong.message, /output:/);
  await rejectsWith(on(W.badsig).job().code(code).submit().then((e) => e.wait()), 'VERIFICATION_FAILED', SandrunError);
  const anon = await rejectsWith(on(W.anon).job().code(code).submit().then((e) => e.wait()), 'VERIFICATION_FAILED', SandrunError);
  assert.match(anon.message, /did not sign/);
  // 'none' accepts an unsigned result, and says it was not verified.
  const r = await on(W.anon).job().code(code).consensus('none').submit().then((e) => e.wait());
  assert.equal(r.status, 'completed');
  assert.equal(r.proof.verified, false);
});

test('a worker that crashes mid-job fails wait() with NETWORK', async () => {
  const ex = await on(W.crash).job().code('import time\ntime.sleep(5)').submit();
  await rejectsWith(ex.wait(), 'NETWORK', SandrunError);
});

test('code() takes bytes and Files; a File name is the entrypoint', async () => {
  const bytes = await sandrun.job().code(new TextEncoder().encode('print("bytes")')).submit().then((e) => e.wait());
  assert.equal(bytes.stdout, 'bytes\n');
  const file = new File(['console.log("from a File")'], 'app.js');
  const r = await sandrun.job().code(file).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'from a File\n');
  assert.deepEqual(r.files.map((f) => f.path), ['_sandrun_run.cjs', '_sandrun_stdout.txt', 'app.js']);
});

test('script(path) uploads the script with its directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-script-'));
  writeFileSync(join(dir, 'train.py'), 'print(open("data/input.csv").read().strip())\n');
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data/input.csv'), 'a,b\n1,2\n');
  mkdirSync(join(dir, 'node_modules'));
  writeFileSync(join(dir, 'node_modules/big.js'), 'skipped');
  const r = await sandrun.job().script(join(dir, 'train.py')).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'a,b\n1,2\n');
  assert.deepEqual(r.files.map((f) => f.path).sort(), ['_sandrun_run.py', '_sandrun_stdout.txt', 'data/input.csv', 'train.py']);
  await rejectsWith(sandrun.job().script(join(dir, 'missing.py')).submit(), 'IO', SandrunError);
});

test('estimate() predicts the job hash the worker reports', async () => {
  const job = sandrun.job().code('print(2)').args(['a']).timeout(30);
  const est = await job.estimate();
  assert.equal(est.workers, 1);
  assert.equal(est.maxSeconds, 30);
  assert.equal(est.interpreter, 'python3');
  assert.ok(est.uploadBytes > 0);
  const r = await job.submit().then((e) => e.wait());
  assert.equal(r.jobHash, est.jobHash);
  assert.equal(r.proof.jobHash, est.jobHash);
});

test('builders are immutable', () => {
  const a = sandrun.job().code('print(1)');
  const a0 = JSON.stringify(a.build());
  const b = a.args(['x']).timeout(5);
  assert.ok(a instanceof JobBuilder && b instanceof JobBuilder);
  // Deriving b left a as it was.
  assert.equal(JSON.stringify(a.build()), a0);
  assert.deepEqual([a.build().args, a.build().timeout], [[], undefined]);
  assert.deepEqual([b.build().args, b.build().timeout], [['x'], 5]);
  const c = sandrun.configure({ defaults: { timeout: 7 } });
  assert.equal(sandrun.config.defaults, undefined);
  assert.equal(c.config.defaults.timeout, 7);
  assert.equal(c.config.apiEndpoint, W.main);
});

test('bad input throws INVALID_ARGUMENT at the builder call', () => {
  const j = sandrun.job();
  const bad = [
    () => j.code(''),
    () => j.code(42),
    () => j.memory(-1),
    () => j.timeout(0),
    () => j.args(['a"b']),
    () => j.args('not a list'),
    () => j.environment({ '1BAD': 'x' }),
    () => j.environment({ A: 3 }),
    () => j.gpu({ memory: 'lots' }),
    () => j.gpu({ count: 0 }),
    () => j.consensus('most'),
    () => j.payment('-1'),
    () => j.payment('1', 'DOGE'),
    () => j.script('run.rb'),
    () => j.repository('git@github.com:a/b'),
    () => j.interpreter('ruby'),
    () => j.file('../x', 'y'),
    () => Sandrun.create({ apiEndpoint: 'localhost:7700' }),
    () => Sandrun.create({ apiEndpont: 'http://typo' }),
    () => Sandrun.create({ defaults: { consensus: 'sometimes' } }),
    () => Sandrun.create({ defaults: { timeot: 3 } }),
    () => j.gpu({ typ: 'a100' }),
  ];
  for (const f of bad) {
    assert.throws(f, (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT' && e.message.length > 10, f.toString());
  }
});

test('a wrong type where a string or bytes go is INVALID_ARGUMENT, not a trap in the wasm glue', async () => {
  // Before: a number trapped ("memory access out of bounds"), undefined threw a TypeError
  // from inside the glue, and a string passed as bytes was hashed as zeros.
  const { sha256Hex, localWallet } = await import('@sandrun/wasm');
  const wrong = [
    [() => sandrun.job().consensus(5), /a string argument was expected, got number 5/],
    [() => sandrun.pool().replication(undefined), /a string argument was expected, got undefined/],
    [() => sandrun.pool().consensus(null), /got null/],
    [() => sandrun.job().file(7, 'x'), /got number 7/],
    [() => sandrun.node().region({}), /got an object \(Object\)/],
    [() => localWallet(['0x01'], 'http://127.0.0.1:1'), /got an array/],
    [() => sha256Hex('abc'), /a Uint8Array argument was expected, got string abc/],
    [() => sha256Hex(5), /a Uint8Array argument was expected/],
  ];
  for (const [f, message] of wrong) {
    assert.throws(f, (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT' && message.test(e.message), f.toString());
  }
  // The module is unharmed: the right types still work.
  assert.equal(sha256Hex(new TextEncoder().encode('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sandrun.pool().replication('eager').constructor.name, 'PoolBuilder');
});

test('nothing is submitted for what this version or this config cannot do', async () => {
  const before = await acceptedJobs(W.main);
  await rejectsWith(sandrun.job().code('print(1)').payment('0.1', 'ETH').submit(), 'INVALID_ARGUMENT', SandrunError);
  await rejectsWith(sandrun.job().code('print(1)').consensus('2-of-3').submit(), 'INVALID_ARGUMENT', SandrunError);
  await rejectsWith(sandrun.job().submit(), 'INVALID_ARGUMENT', SandrunError);
  assert.equal(await acceptedJobs(W.main), before);
});

test('an unreachable endpoint is a NETWORK error', async () => {
  const e = await rejectsWith(Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9' }).job().code('print(1)').submit(), 'NETWORK', SandrunError);
  assert.match(e.message, /connection refused/);
});

test('large outputs are hash-checked (with the host\'s native SHA-256) and downloaded intact', async () => {
  const { createHash } = await import('node:crypto');
  const r = await sandrun.job().code('import os\nopen("big.bin","wb").write(os.urandom(3 * 1024 * 1024))').outputs(['big.bin']).submit().then((e) => e.download());
  const f = r.files.find((x) => x.path === 'big.bin');
  assert.equal(f.size, 3 * 1024 * 1024);
  assert.equal(createHash('sha256').update(f.bytes).digest('hex'), f.sha256);
  assert.ok(r.proof.checks.find((c) => c.name === 'output:big.bin').ok);
});

test('SandrunConfig.defaults apply where the builder is silent', async () => {
  const s = sandrun.configure({ apiEndpoint: W.spare, defaults: { timeout: 0.5, consensus: 'none' } });
  const ex = await s.job().code('import time\ntime.sleep(20)').submit();
  const e = await rejectsWith(ex.wait(), 'TIMEOUT', SandrunError);
  assert.match(e.message, /timeout of 0.5 s/);
  const est = await s.job().code('print(1)').estimate();
  assert.equal(est.maxSeconds, 0.5);
  // A builder's own value wins over the default.
  assert.equal((await s.job().code('print(1)').timeout(9).estimate()).maxSeconds, 9);
  const r = await sandrun.configure({ defaults: { consensus: 'none' } }).job().code('print(1)').submit().then((x) => x.wait());
  assert.equal(r.proof.level, 'none');
  assert.equal(r.proof.verified, false);
});
