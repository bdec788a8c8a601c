// The spec's shapes at run time (build() on every builder, Job, Node, Capability) and one
// lifecycle for every operation (plugins' hooks, payment, consensus, authentication), on a
// real devnet with anvil. Requests are recorded by a real forwarding proxy in front of the
// registry, named as such.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createPublicClient, http as viemHttp, parseEther } from 'viem';
import { Sandrun, SandrunError, Job, Node, Pool, localWallet } from '@sandrun/wasm';
import { startDevnet, rejectsWith, forwardingProxy } from './support.mjs';

let net;
let W;
let pub;
const servers = [];
const CODE = 'print("shape")';

before(async () => {
  net = await startDevnet(['--workers', '4', '--no-rate-limit', '--chain', '--fault', '3=wrong-output']);
  W = net.workers;
  pub = createPublicClient({ transport: viemHttp(net.chain.rpc) });
});
after(async () => {
  for (const s of servers) s.close();
  if (net) await net.stop();
});

const paidConfig = (i = 0) => ({
  apiEndpoint: W[0].url,
  registryEndpoint: net.registry,
  escrow: { address: net.chain.escrow, chainId: net.chain.chainId },
  web3Provider: localWallet(net.chain.accounts[i].privateKey, net.chain.rpc),
});
const balance = (a) => pub.getBalance({ address: a });

/** A recording forwarding proxy (a real server) in front of `target`. */
async function recordingProxy(target, log) {
  const p = await forwardingProxy(target, { log });
  servers.push(p);
  return p.url;
}

test('build() on every builder gives the spec\'s value; a Job is immutable and inspectable', async () => {
  const sandrun = Sandrun.create({ apiEndpoint: W[0].url });
  const client = sandrun.build();
  assert.ok(client instanceof Sandrun);
  assert.equal(client.config.apiEndpoint, W[0].url);
  const job = sandrun.job().code(CODE).timeout(30).environment({ A: '1' }).args(['x']).outputs(['*.txt']).build();
  assert.ok(job instanceof Job);
  assert.deepEqual([job.timeout, job.environment, job.args, job.outputs], [30, { A: '1' }, ['x'], ['*.txt']]);
  assert.throws(() => { job.timeout = 5; }, TypeError, 'a Job is read-only');
  assert.equal(job.timeout, 30);
  assert.equal(JSON.parse(JSON.stringify(job)).timeout, 30);
  const changed = job.toBuilder().timeout(60).build();
  assert.deepEqual([job.timeout, changed.timeout], [30, 60]);
  const pool = sandrun.pool().nodes([W[0].url, W[1].url]).build();
  assert.ok(pool instanceof Pool);
  assert.deepEqual(pool.nodes, [], 'a built pool joins on first use');
  const node = sandrun.node().endpoint(W[0].url).region('us-west-2').build();
  assert.ok(node instanceof Node);
  assert.equal(node.endpoint, W[0].url);
  assert.equal(node.region, 'us-west-2', 'a built node shows what it was built with');
  await rejectsWith(() => sandrun.proof().build(), 'INVALID_ARGUMENT', SandrunError);
});

test('Pool.distribute(job: Job) joins a built pool, and Pool.nodes are Nodes, capabilities are Capabilities', async () => {
  const sandrun = Sandrun.create({ apiEndpoint: W[0].url, registryEndpoint: net.registry });
  const pool = sandrun.pool().nodes([W[0].url, W[1].url, W[2].url]).consensus('2-of-3').build();
  const executions = await pool.distribute(sandrun.job().code(CODE).build());
  assert.equal(executions.length, 3);
  const results = await Promise.all(executions.map((e) => e.wait()));
  assert.deepEqual(results.map((r) => r.stdout), ['shape\n', 'shape\n', 'shape\n']);
  assert.equal(pool.nodes.length, 3);
  assert.ok(pool.nodes.every((n) => n instanceof Node && typeof n.workerId === 'string'));
  assert.equal(pool.nodes[0].endpoint, W[0].url);
  await rejectsWith(pool.nodes[0].startListening(), 'UNSUPPORTED', SandrunError);
  const discovered = await sandrun.pool().discover({}).join();
  const py = discovered.capabilities.find((c) => c.label === 'interpreter:python3');
  assert.deepEqual([py.kind, py.value, py.nodes], ['interpreter', 'python3', 4]);
  // A JobBuilder is still accepted.
  assert.equal((await pool.distribute(sandrun.job().code(CODE))).length, 3);
});

test('a distributed paid job is paid and settled like a submitted one: released to the agreeing workers', async () => {
  const sandrun = Sandrun.create(paidConfig(2));
  const pool = await sandrun.pool().nodes([W[0].url, W[3].url, W[1].url]).consensus('2-of-3').join();
  const payouts = [W[0].payout, W[1].payout, W[3].payout];
  const before = await Promise.all(payouts.map(balance));
  const executions = await pool.distribute(sandrun.job().code(CODE).payment('0.2', 'ETH').build());
  const settled = await Promise.allSettled(executions.map((e) => e.wait()));
  const ok = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  assert.ok(ok.length >= 2, JSON.stringify(settled.map((s) => s.reason?.message ?? s.value.cost)));
  assert.deepEqual(ok.map((r) => r.cost.state), ok.map(() => 'released'), 'every replica reads the settled state');
  const afterB = await Promise.all(payouts.map(balance));
  assert.equal(afterB[0] - before[0], parseEther('0.1'), 'worker 0 gets half');
  assert.equal(afterB[1] - before[1], parseEther('0.1'), 'worker 1 gets half');
  assert.equal(afterB[2], before[2], 'the wrong-output worker gets nothing');
  assert.equal(await balance(net.chain.escrow), 0n);
});

test('estimate() counts the job\'s pool: its n and its workers', async () => {
  const sandrun = Sandrun.create({ apiEndpoint: W[0].url, registryEndpoint: net.registry });
  const pool = await sandrun.pool().nodes([W[0].url, W[1].url, W[2].url]).consensus('2-of-3').join();
  assert.equal((await sandrun.job().code(CODE).estimate()).workers, 1);
  assert.equal((await sandrun.job().code(CODE).with(pool).estimate()).workers, 3);
  assert.equal((await sandrun.job().code(CODE).consensus('3-of-3').with(pool).estimate()).workers, 3);
});

test('onInit runs before the first network operation of every kind; onError sees every failure; onBuild every builder', async () => {
  const log = [];
  const registry = await recordingProxy(net.registry, log);
  for (const op of ['join', 'estimate', 'register', 'proof', 'distribute']) {
    const events = [];
    const plugin = {
      name: 'order',
      version: '1',
      onInit: async () => {
        events.push('init');
        await new Promise((r) => setTimeout(r, 20));
      },
      onBuild: (b) => events.push(`build:${b.constructor.name}`),
      middleware: { execute: (next, ctx) => { events.push(`net:${ctx.operation}`); return next(); } },
    };
    const s = Sandrun.create({ apiEndpoint: W[0].url, registryEndpoint: registry }).use(plugin);
    if (op === 'join') await s.pool().discover({}).join();
    if (op === 'estimate') await s.job().code(CODE).estimate();
    // The devnet registry may refuse this registration (the worker's record has a bound payout): onInit still came first.
    if (op === 'register') await s.node().endpoint(W[1].url).register().catch(() => {});
    if (op === 'proof') {
      const r = await Sandrun.create({ apiEndpoint: W[0].url }).job().code(CODE).submit().then((e) => e.wait());
      await s.proof().from(r).job(s.job().code(CODE)).verify();
    }
    if (op === 'distribute') await s.pool().nodes([W[0].url]).build().distribute(s.job().code(CODE).build());
    const firstNet = events.findIndex((e) => e.startsWith('net:'));
    assert.ok(events.includes('init'), `${op}: onInit did not run (${events})`);
    if (firstNet >= 0) assert.ok(events.indexOf('init') < firstNet, `${op}: a network operation came before onInit: ${events}`);
  }
  const built = [];
  const s = Sandrun.create({ apiEndpoint: W[0].url }).use({ name: 'b', version: '1', onBuild: (b) => built.push(b.constructor.name) });
  s.job(); s.pool(); s.node(); s.proof();
  assert.deepEqual(built, ['JobBuilder', 'PoolBuilder', 'NodeBuilder', 'ProofBuilder']);
  const seen = [];
  const watcher = { name: 'errors', version: '1', onError: (e, ctx) => { seen.push(`${ctx.operation}:${e.code}`); } };
  const dead = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9', registryEndpoint: 'http://127.0.0.1:9' }).use(watcher);
  await rejectsWith(dead.pool().discover({}).join(), 'NETWORK', SandrunError);
  await rejectsWith(dead.node().register(), 'NETWORK', SandrunError);
  await rejectsWith(dead.job().code(CODE).submit(), 'NETWORK', SandrunError);
  await rejectsWith(dead.pool().discover({}).build().distribute(dead.job().code(CODE).build()), 'NETWORK', SandrunError);
  assert.deepEqual(seen, ['join:NETWORK', 'register:NETWORK', 'submit:NETWORK', 'join:NETWORK']);
});

test('configure() on a builder keeps the wallet, and a web3Provider in it replaces the wallet', async () => {
  const sandrun = Sandrun.create(paidConfig(3));
  const payer3 = net.chain.accounts[3].address;
  const payer4 = net.chain.accounts[4].address;
  const [b3, b4] = [await balance(payer3), await balance(payer4)];
  const kept = await sandrun.job().code(CODE).payment('0.01').configure({ defaults: { timeout: 30 } }).submit().then((e) => e.wait());
  assert.equal(kept.cost.state, 'released');
  assert.ok((await balance(payer3)) < b3 - parseEther('0.01') + 1n, 'the original wallet paid');
  const swapped = await sandrun.job().code(CODE).payment('0.01').configure({ web3Provider: localWallet(net.chain.accounts[4].privateKey, net.chain.rpc) }).submit().then((e) => e.wait());
  assert.equal(swapped.cost.state, 'released');
  assert.ok((await balance(payer4)) <= b4 - parseEther('0.01'), 'the new wallet paid');
});

test('config.authentication goes to the registry (and gateway) origins only, on every operation', async () => {
  const log = [];
  const registry = await recordingProxy(net.registry, log);
  // A worker double that records every request and answers like a busy worker (429), so
  // the submit is real HTTP with nothing run.
  const workerLog = [];
  const worker = http.createServer((req, res) => {
    workerLog.push({ url: req.url, headers: req.headers });
    if (req.url === '/health') return res.end('{"status":"healthy","worker_id":null}');
    res.writeHead(429).end('{"error":"Rate limit exceeded"}');
  });
  await new Promise((r) => worker.listen(0, '127.0.0.1', r));
  servers.push(worker);
  const workerUrl = `http://127.0.0.1:${worker.address().port}`;
  const s = Sandrun.create({ apiEndpoint: workerUrl, registryEndpoint: registry, authentication: { token: 'reg-secret', apiKey: 'reg-key' }, defaults: { retries: 0 } });
  await s.pool().discover({}).join();
  await s.job().code(CODE).estimate();
  await rejectsWith(s.job().code(CODE).submit(), 'RATE_LIMITED', SandrunError);
  await s.pool().nodes([workerUrl]).join();
  assert.ok(log.length >= 2, 'the registry was asked');
  for (const r of log) {
    assert.equal(r.headers.authorization, 'Bearer reg-secret', r.url);
    assert.equal(r.headers['x-api-key'], 'reg-key', r.url);
  }
  assert.deepEqual(workerLog.map((r) => r.url).sort(), ['/health', '/submit']);
  for (const r of workerLog) {
    assert.equal(r.headers.authorization, undefined, `the worker got the registry's token on ${r.url}`);
    assert.equal(r.headers['x-api-key'], undefined, `the worker got the registry's key on ${r.url}`);
  }
});

test('errors name what the caller passed', async () => {
  const job = Sandrun.create().job();
  const m = await rejectsWith(() => job.memory('2GB'), 'INVALID_ARGUMENT', SandrunError);
  assert.match(m.message, /got the string "2GB"/);
  assert.match(m.message, /memory\(2048\)/);
  const g = await rejectsWith(() => job.gpu('a100'), 'INVALID_ARGUMENT', SandrunError);
  assert.match(g.message, /got the string "a100"/);
  assert.match(g.message, /\{ type: 'a100'/);
  const t = await rejectsWith(() => job.timeout('soon'), 'INVALID_ARGUMENT', SandrunError);
  assert.match(t.message, /got the string "soon"/);
});

test('JobResult.output is a Buffer in Node: output.toString() is the text', async () => {
  const s = Sandrun.create({ apiEndpoint: W[0].url });
  const r = await s.job().code('print("buffered")').submit().then((e) => e.wait());
  assert.ok(Buffer.isBuffer(r.output));
  assert.equal(r.output.toString(), 'buffered\n');
  const d = await s.job().code('print("again")').submit().then((e) => e.download());
  assert.ok(Buffer.isBuffer(d.output));
});

test('JobExecution.status is current after every awaited call', async () => {
  const s = Sandrun.create({ apiEndpoint: W[0].url, registryEndpoint: net.registry });
  const ex = await s.job().code('import time\ntime.sleep(0.3)\nprint(1)').submit();
  assert.ok(['queued', 'running'].includes(ex.status));
  await ex.wait();
  assert.equal(ex.status, 'completed');
  const failing = await s.job().code('import sys\nsys.exit(2)').submit();
  await failing.wait();
  assert.equal(failing.status, 'failed');
  const cancelled = await s.job().code('import time\ntime.sleep(2)').submit();
  await cancelled.cancel();
  assert.equal(cancelled.status, 'cancelled');
  const logs = await s.job().code('print("x")').submit();
  for await (const _ of await logs.logs());
  assert.equal(logs.status, 'completed', 'after the log stream ended');
  const pool = await s.pool().nodes([W[0].url, W[1].url, W[2].url]).consensus('2-of-3').join();
  const pooled = await s.job().code(CODE).with(pool).submit();
  await pooled.wait();
  assert.equal(pooled.status, 'completed');
});
