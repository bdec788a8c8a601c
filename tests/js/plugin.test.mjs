// Plugins and middleware against a real devnet: hooks, order, rewriting, errors,
// short-circuits, the built-in retry, metrics, logging and auth plugins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Sandrun, SandrunError, JobBuilder, retryPlugin, metricsPlugin, loggingPlugin, authPlugin, InMemoryCollector } from '@sandrun/wasm';
import { startDevnet, setFault, acceptedJobs, rejectsWith } from './support.mjs';

let net;
let W;
before(async () => {
  net = await startDevnet(['--workers', '4', '--no-rate-limit', '--fault', '3=crash']);
  W = net.workers.map((w) => w.url);
});
after(async () => net && net.stop());

const client = (extra = {}) => Sandrun.create({ apiEndpoint: W[0], registryEndpoint: net.registry, ...extra });

test('hooks run in registration order with their arguments; async hooks are awaited', async () => {
  const calls = [];
  const plugin = (tag) => ({
    name: `p${tag}`,
    version: '1.0.0',
    onInit: async (config) => { await new Promise((r) => setTimeout(r, 20)); calls.push(`${tag}:init:${config.apiEndpoint === W[0]}`); },
    onBuild: (b) => calls.push(`${tag}:build:${b instanceof JobBuilder}`),
    onSubmit: async (job) => { await new Promise((r) => setTimeout(r, 10)); calls.push(`${tag}:submit:${job.interpreter ?? 'auto'}`); },
    onResult: (r) => { calls.push(`${tag}:result:${r.status}`); },
  });
  const s = client({ defaults: { consensus: 'none' } }).use(plugin('a')).use(plugin('b'));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  await s.job().code('print(2)').submit().then((e) => e.wait());
  assert.deepEqual(calls, [
    'a:build:true', 'b:build:true', 'a:init:true', 'b:init:true', 'a:submit:auto', 'b:submit:auto', 'a:result:completed', 'b:result:completed',
    'a:build:true', 'b:build:true', 'a:submit:auto', 'b:submit:auto', 'a:result:completed', 'b:result:completed',
  ], 'onInit runs once per client configuration');
  calls.length = 0;
  await s.configure({ defaults: { timeout: 30 } }).job().code('print(3)').submit().then((e) => e.wait());
  assert.deepEqual(calls.filter((c) => c.includes('init')), ['a:init:true', 'b:init:true'], 'a new configuration runs onInit again');
});

test('onSubmit rewrites the job, onResult the result', async () => {
  const s = client().use({
    name: 'rewrite', version: '1',
    onSubmit: (job) => ({ ...job, args: [...job.args, 'added'], environment: { ...job.environment, STAGE: 'prod' } }),
    onResult: (r) => ({ ...r, stdout: r.stdout.toUpperCase() }),
  });
  const r = await s.job().code('import os, sys\nprint(sys.argv[1:], os.environ["STAGE"])').args(['given']).submit().then((e) => e.wait());
  assert.equal(r.stdout, "['GIVEN', 'ADDED'] PROD\n");
  assert.equal(r.proof.verified, true, 'the rewritten job is the one verified');
  // A rewrite goes through the builder's checks.
  const bad = client().use({ name: 'bad-rewrite', version: '1', onSubmit: (job) => ({ ...job, timeout: -1 }) });
  const e = await rejectsWith(bad.job().code('print(1)').submit(), 'PLUGIN_FAILED', SandrunError);
  assert.match(e.message, /bad-rewrite/);
});

test('a throwing hook fails with PLUGIN_FAILED naming the plugin; onError may replace errors', async () => {
  const before = await acceptedJobs(W[0]);
  const thrower = client().use({ name: 'thrower', version: '1', onSubmit() { throw new Error('nope'); } });
  const e = await rejectsWith(thrower.job().code('print(1)').submit(), 'PLUGIN_FAILED', SandrunError);
  assert.match(e.message, /plugin "thrower" failed in onSubmit: .*nope/);
  assert.equal(await acceptedJobs(W[0]), before, 'nothing submitted');
  const seen = [];
  const mapper = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9' }).use({
    name: 'mapper', version: '1',
    onError(error, context) { seen.push([error.code, context.operation]); return new Error(`mapped: ${error.message}`); },
  });
  const e2 = await rejectsWith(mapper.job().code('print(1)').submit(), 'NETWORK', SandrunError);
  assert.match(e2.message, /^mapped: /);
  assert.deepEqual(seen, [['NETWORK', 'submit']]);
  assert.throws(() => client().use({ name: 'x' }), (x) => x.code === 'INVALID_ARGUMENT');
  assert.throws(() => client().use({ name: 'x', version: '1', onSubmit: 3 }), (x) => x.code === 'INVALID_ARGUMENT');
  assert.throws(() => client().with({}), (x) => x.code === 'INVALID_ARGUMENT');
});

test('middleware: outermost first, context per operation and attempt, short-circuit', async () => {
  const order = [];
  const tap = (tag) => ({ async execute(next, ctx) { order.push(`${tag}>${ctx.operation}#${ctx.attempt}`); const r = await next(); order.push(`${tag}<${r.status}`); return r; } });
  const s = client({ defaults: { consensus: 'none' } }).with(tap('outer')).with(tap('inner'));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  assert.deepEqual(order.slice(0, 4), ['outer>submit#1', 'inner>submit#1', 'inner<200', 'outer<200']);
  assert.ok(order.includes('outer>logs#1'));
  // Short-circuit: answer a submit without touching the worker.
  const before = await acceptedJobs(W[0]);
  const blocker = client().with({
    async execute(next, ctx) {
      if (ctx.operation !== 'submit') return next();
      return { status: 429, headers: [], body: new TextEncoder().encode('{"error":"Blocked by policy, wait 1 seconds"}') };
    },
  });
  const e = await rejectsWith(blocker.configure({ defaults: { retries: 0 } }).job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
  assert.equal(e.retryAfterMs, 1000);
  assert.equal(await acceptedJobs(W[0]), before);
  // Decorate: a middleware may change the answer the SDK sees.
  const decorated = client({ defaults: { consensus: 'none' } }).with({
    async execute(next, ctx) {
      const r = await next();
      if (ctx.operation !== 'logs') return r;
      return { ...r, body: new TextEncoder().encode('{"stdout":"decorated\\n","stderr":""}') };
    },
  });
  assert.equal((await decorated.job().code('print(1)').submit().then((x) => x.wait())).stdout, 'decorated\n');
});

test('retryPlugin honours 429 waits and never submits twice', async () => {
  await setFault(W[1], '429');
  const before = await acceptedJobs(W[1]);
  setTimeout(() => setFault(W[1], null), 700);
  const metrics = metricsPlugin();
  const s = Sandrun.create({ apiEndpoint: W[1], defaults: { retries: 0 } }).use(retryPlugin({ maxAttempts: 8, initialDelayMs: 150, maxDelayMs: 400 })).use(metrics);
  const r = await s.job().code('print("through")').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'through\n');
  assert.equal(await acceptedJobs(W[1]), before + 1);
  const c = metrics.snapshot().counters;
  assert.ok(c['sandrun_requests_total{operation="submit",outcome="429"}'] >= 2, JSON.stringify(c));
  assert.equal(c['sandrun_requests_total{operation="submit",outcome="200"}'], 1);
  assert.throws(() => retryPlugin({ maxAttempts: 0 }), (e) => e.code === 'INVALID_ARGUMENT');
});

test('retryPlugin with a crashing worker: replaced in a pool, no duplicate job anywhere', async () => {
  const before = await Promise.all(W.slice(0, 3).map(acceptedJobs));
  const s = client().use(retryPlugin({ maxAttempts: 3, initialDelayMs: 50 }));
  const pool = await s.pool().nodes([W[3], W[0], W[1], W[2]]).consensus('3-of-3').join();
  const r = await s.job().code('import time\ntime.sleep(0.3)\nprint("ok")').with(pool).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'ok\n');
  const replicas = r.proof.consensus.replicas;
  assert.equal(replicas.find((x) => x.worker === W[3]).outcome, 'failed');
  const afterCounts = await Promise.all(W.slice(0, 3).map(acceptedJobs));
  assert.deepEqual(afterCounts.map((n, i) => n - before[i]), [1, 1, 1], 'each live worker ran the job exactly once');
});

test('metricsPlugin figures match the operations performed', async () => {
  const collector = new InMemoryCollector();
  const s = client({ defaults: { consensus: 'none' } }).use(metricsPlugin(collector));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  const { counters, histograms } = collector.snapshot();
  assert.equal(counters['sandrun_requests_total{operation="submit",outcome="200"}'], 1);
  assert.equal(counters['sandrun_requests_total{operation="status",outcome="200"}'], 1, 'one /status after the stream saw the end');
  assert.equal(counters['sandrun_requests_total{operation="logs",outcome="200"}'], 1);
  assert.equal(counters['sandrun_jobs_total{event="submitted"}'], 1);
  assert.equal(counters['sandrun_jobs_total{event="completed"}'], 1);
  const total = Object.entries(counters).filter(([k]) => k.startsWith('sandrun_requests_total')).reduce((a, [, v]) => a + v, 0);
  const observed = Object.values(histograms).reduce((a, h) => a + h.count, 0);
  assert.equal(observed, total, 'every operation is timed');
  assert.ok(histograms['sandrun_request_ms{operation="submit"}'].sum > 0);
});

test('loggingPlugin redacts secrets; authPlugin refreshes its credential after a 401 (double)', async () => {
  const secret = 'sekret-token-1234567890';
  const privateKey = `0x${'ab'.repeat(32)}`;
  const lines = [];
  const capture = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((l) => [l, (...a) => lines.push(`${l} ${a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')}`)]));
  // A registry double that wants the second token: it answers 401 to the first.
  const seen = [];
  const registry = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization !== `Bearer ${secret}-2`) return res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"bad token"}');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ nodes: [] }));
  });
  await new Promise((r) => registry.listen(0, '127.0.0.1', r));
  let n = 0;
  try {
    const s = Sandrun.create({ apiEndpoint: W[0], registryEndpoint: `http://127.0.0.1:${registry.address().port}` })
      .use(authPlugin(async () => ({ token: `${secret}-${++n}` })))
      .use(loggingPlugin(capture, { level: 'debug' }));
    await rejectsWith(s.pool().discover().join(), 'CONSENSUS_NOT_REACHED', SandrunError);
    assert.deepEqual(seen, [`Bearer ${secret}-1`, `Bearer ${secret}-2`]);
    await s.job().code('print(1)').environment({ PRIVATE_KEY: privateKey }).submit().then((e) => e.wait());
  } finally {
    registry.close();
  }
  const text = lines.join('\n');
  assert.ok(lines.length > 5, text);
  assert.ok(!text.includes(secret), 'no token in the log');
  assert.ok(!text.includes(privateKey.slice(2)), 'no private key in the log');
  assert.match(text, /\[redacted\]/);
  // Worker operations get no credentials by default (reference workers answer no preflight).
  assert.ok(!seen.some((h) => h === undefined));
});

test('use, with and configure return new builders and leave the old ones unchanged', async () => {
  const s = client();
  const p = { name: 'p', version: '1' };
  const m = { execute: (next) => next() };
  assert.notEqual(s.use(p), s);
  assert.notEqual(s.with(m), s);
  const job = s.job().code('print(1)');
  for (const b of [job, s.pool(), s.proof(), s.node()]) {
    for (const next of [b.use(p), b.with(m), b.configure({ defaults: { timeout: 5 } })]) {
      assert.notEqual(next, b);
      assert.equal(next.constructor, b.constructor);
    }
  }
  // The original job still runs without the plugin's rewrite.
  const rewritten = job.use({ name: 'r', version: '1', onSubmit: (j) => ({ ...j, args: ['x'] }) });
  assert.equal((await job.submit().then((e) => e.wait())).stdout, '1\n');
  assert.equal((await rewritten.code('import sys; print(sys.argv[1:])').submit().then((e) => e.wait())).stdout, "['x']\n");
});

test('operations started while onInit runs wait for it; onInit runs once', async () => {
  let inits = 0;
  let ready = false;
  const s = client({ defaults: { consensus: 'none' } }).use({
    name: 'slow-init', version: '1',
    async onInit() { inits++; await new Promise((r) => setTimeout(r, 200)); ready = true; },
    onSubmit() { assert.equal(ready, true, 'onSubmit after onInit finished'); },
  });
  const rs = await Promise.all([0, 1, 2].map((i) => s.job().code(`print(${i})`).submit().then((e) => e.wait())));
  assert.deepEqual(rs.map((r) => r.stdout), ['0\n', '1\n', '2\n']);
  assert.equal(inits, 1);
});
