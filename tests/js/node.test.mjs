// Provider nodes on a real devnet: register a worker with the registry, serve the
// registry's jobs on it, report them, stop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Sandrun, SandrunError, Node, NodeBuilder } from '@sandrun/wasm';
import { startDevnet, rejectsWith, setFault, root, waitFor } from './support.mjs';

let net;
let W0;
let W1;
let sandrun;
const PAYOUT = '0x52908400098527886E0F7030069857D2E4169EE7';
const CHAIN_ID = 31337;
const FAST = { heartbeatInterval: 200, pollInterval: 50 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What worker `i` signs to bind `address` as its payout: its own Ed25519 key (the
 * devnet keeps it at <data-dir>/worker-<i>/key.pem) over the documented text. */
function payoutSignature(i, address, chainId = CHAIN_ID) {
  // The devnet writes PKCS#8 v2 (with the public key), which Node's OpenSSL does not
  // decode: take the 32-byte seed (after OCTET STRING 04 22 04 20) into a v1 key.
  const der = Buffer.from(readFileSync(join(net.dataDir, `worker-${i}`, 'key.pem'), 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const at = der.indexOf(Buffer.from([0x04, 0x22, 0x04, 0x20])) + 4;
  const v1 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), der.subarray(at, at + 32)]);
  const key = createPrivateKey({ key: v1, format: 'der', type: 'pkcs8' });
  return sign(null, Buffer.from(`sandrun-payout-v1|${chainId}|${address.toLowerCase()}`), key).toString('base64');
}

before(async () => {
  net = await startDevnet(['--workers', '2', '--no-rate-limit']);
  [W0, W1] = net.workers.map((w) => w.url);
  sandrun = Sandrun.create({ apiEndpoint: W0, registryEndpoint: net.registry });
});
after(async () => net && net.stop());

const reg = async (path, body) => {
  const res = await fetch(`${net.registry}${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
  return { status: res.status, json: await res.json() };
};

/** Submit a broker job and poll its result (200) for up to `ms`. */
async function brokerRun(code, interpreter = 'python3', ms = 15_000) {
  const { json } = await reg('/submit', { code, interpreter });
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const r = await reg(`/results/${json.job_id}`);
    if (r.status === 200) return r.json;
    await sleep(50);
  }
  throw new Error(`broker job ${json.job_id} did not finish in ${ms} ms: ${JSON.stringify((await reg(`/status/${json.job_id}`)).json)}`);
}

/** Wait until every claimed job's report was answered (the registry stores a result
 * before it answers the node, so a test can see it a moment before the node's counters). */
async function settled(node) {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const s = node.stats;
    if (s.completed + s.failed === s.claimed) return s;
    await sleep(10);
  }
  return node.stats;
}

/** A pass-through proxy in front of the registry that records every `/complete` body. */
async function recordingRegistry() {
  const completes = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    if (req.url === '/complete') completes.push(JSON.parse(body));
    const r = await fetch(`${net.registry}${req.url}`, { method: req.method, headers: { 'Content-Type': req.headers['content-type'] ?? 'application/json' }, body: req.method === 'GET' ? undefined : body });
    res.writeHead(r.status, { 'Content-Type': r.headers.get('content-type') ?? 'application/json' });
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const close = () => new Promise((r) => { server.closeAllConnections(); server.close(r); });
  return { url: `http://127.0.0.1:${server.address().port}`, completes, close };
}

test('node builders are immutable and validate at the call', () => {
  const a = sandrun.node();
  assert.ok(a instanceof NodeBuilder);
  const a0 = JSON.stringify(a.build());
  const b = a.region('us-west-2');
  const b0 = JSON.stringify(b.build());
  const c = b.pricing({ cpu: '0.1/hour' });
  // Deriving b and c left a and b as they were (what each would register).
  assert.equal(JSON.stringify(a.build()), a0);
  assert.equal(JSON.stringify(b.build()), b0);
  assert.equal(a.build().capabilities.region, null);
  assert.deepEqual([b.build().capabilities.region, b.build().capabilities.pricing], ['us-west-2', null]);
  assert.deepEqual([c.build().capabilities.region, c.build().capabilities.pricing], ['us-west-2', { cpu: '0.1/hour' }]);
  const bad = [
    () => a.region(''),
    () => a.region('us west'),
    () => a.payout('0x1234', { chainId: 1, signature: 'A'.repeat(86) + '==' }),
    () => a.payout('52908400098527886E0F7030069857D2E4169EE7', { chainId: 1, signature: 'A'.repeat(86) + '==' }),
    () => a.payout(PAYOUT),
    () => a.payout(PAYOUT, { chainId: 1 }),
    () => a.payout(PAYOUT, { chainId: 1, signature: 'c2ln' }),
    () => a.payout(PAYOUT, { chainId: 0, signature: 'A'.repeat(86) + '==' }),
    () => a.payout(PAYOUT, { chainId: 1, signature: 'A'.repeat(86) + '==', address: PAYOUT }),
    () => a.endpoint('ftp://example.com'),
    () => a.interpreters([]),
    () => a.interpreters(['ruby']),
    () => a.pricing({}),
    () => a.pricing({ cpu: 'cheap' }),
    () => a.pricing({ gpu: '0.5/hour', disk: '1/hour' }),
    () => a.capabilities({ gpus: 2 }),
    () => a.capabilities({ gpu: { type: 'a100', count: 0 } }),
    () => a.capabilities({ gpu: { type: 'a100', vram: '40GB' } }),
    () => a.capabilities({ cpu: { cores: 2.5 } }),
    () => a.capabilities({ cpu: { memory: 'lots' } }),
    () => a.capabilities({ storage: '1 parsec' }),
    () => a.capabilities('big'),
  ];
  for (const f of bad) {
    assert.throws(f, (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT', f.toString());
  }
  // The failed calls changed nothing: `a` still registers as a plain node.
  assert.ok(a.payout(PAYOUT, { chainId: 1, signature: 'A'.repeat(86) + '==' }) instanceof NodeBuilder);
  // Without a binding the error says how to make one.
  const e = (() => { try { a.payout(PAYOUT); } catch (x) { return x; } })();
  assert.match(e.message, /sandrun-payout-v1\|<chainId>\|0x52908400098527886e0f7030069857d2e4169ee7/);
});

test('register(): the registry lists the node with every field', async () => {
  // The endpoint defaults to apiEndpoint; interpreters() replaces the default list.
  const other = await Sandrun.create({ apiEndpoint: W1, registryEndpoint: net.registry }).node().interpreters(['python3', 'sh']).register();
  assert.equal(other.endpoint, W1);
  assert.deepEqual(other.capabilities.interpreters, ['python3', 'sh']);
  assert.equal(other.capabilities.region, null);
  assert.equal(other.capabilities.payout, null);
  const signature = payoutSignature(1, PAYOUT);
  const node = await sandrun
    .node()
    .capabilities({ gpu: { type: 'rtx4090', memory: '24GB', count: 2 }, cpu: { cores: 16, memory: '64GB' }, storage: '1TB' })
    .region('us-west-2')
    .pricing({ gpu: '0.5/hour', cpu: '0.1/hour' })
    .payout(PAYOUT, { chainId: CHAIN_ID, signature })
    .endpoint(W1)
    .register();
  assert.ok(node instanceof Node);
  assert.equal(node.id, createHash('sha256').update(W1).digest('hex').slice(0, 16));
  assert.equal(node.endpoint, W1);
  assert.equal(node.workerId, net.workers[1].worker_id);
  const { json } = await reg('/nodes');
  const rec = json.nodes.find((n) => n.id === node.id);
  assert.equal(rec.endpoint, W1);
  assert.equal(rec.active, 1);
  assert.deepEqual(rec.capabilities, {
    cpu_cores: 16,
    memory_gb: 64,
    gpu: { type: 'rtx4090', memory: 24, count: 2 },
    interpreters: ['python3', 'node', 'bash'],
    storage: 1024,
    region: 'us-west-2',
    pricing: { gpu: '0.5/hour', cpu: '0.1/hour' },
    payout: PAYOUT,
    payout_chain_id: CHAIN_ID,
    payout_signature: signature,
    worker_id: net.workers[1].worker_id,
    sandrun_endpoint: W1,
  });
  assert.deepEqual(node.capabilities, rec.capabilities);
  assert.equal(node.stats.running, false);
  // Discovery finds it by the advertised fields.
  const pool = await sandrun.pool().discover({ gpuType: 'rtx4090', region: 'us-west-2', maxPrice: '0.2/hour' }).join();
  assert.deepEqual(pool.nodes.map((n) => n.id), [node.id]);
  assert.equal(pool.nodes[0].payout, PAYOUT);
});

test('a payout must be bound by the worker\'s own key: another key, chain or address is refused before registering', async () => {
  const id = createHash('sha256').update(W0).digest('hex').slice(0, 16);
  const listed = async () => (await reg('/nodes')).json.nodes.find((n) => n.id === id)?.capabilities.payout ?? null;
  const before = await listed();
  const attempts = [
    ['signed by another worker', PAYOUT, { chainId: CHAIN_ID, signature: payoutSignature(1, PAYOUT) }],
    ['signed for another chain', PAYOUT, { chainId: CHAIN_ID, signature: payoutSignature(0, PAYOUT, 1) }],
    ['signed for another address', PAYOUT, { chainId: CHAIN_ID, signature: payoutSignature(0, '0x' + '11'.repeat(20)) }],
    ['not a signature at all', PAYOUT, { chainId: CHAIN_ID, signature: Buffer.alloc(64).toString('base64') }],
  ];
  for (const [what, address, binding] of attempts) {
    const e = await rejectsWith(sandrun.node().endpoint(W0).payout(address, binding).register(), 'INVALID_ARGUMENT', SandrunError);
    assert.match(e.message, /does not verify under the key of the worker/, what);
    assert.ok(e.message.includes(`sandrun-payout-v1|${CHAIN_ID}|${address.toLowerCase()}`), `${what}: the error names the text to sign: ${e.message}`);
    assert.equal(await listed(), before, `${what}: nothing was registered`);
  }
  // The worker's own signature goes through; a checksummed address signs as lowercase.
  // (On W1: the devnet registry then keeps a payout on the record, and later tests
  // register W0 without one.)
  const ok = await sandrun.node().endpoint(W1).payout(PAYOUT, { chainId: CHAIN_ID, signature: payoutSignature(1, PAYOUT) }).register();
  assert.equal(ok.capabilities.payout, PAYOUT);
  assert.equal((await reg('/nodes')).json.nodes.find((n) => n.id === ok.id).capabilities.payout, PAYOUT);
});

test('a listening node claims, runs and reports broker jobs, with the signed proof', async () => {
  const proxy = await recordingRegistry();
  const node = await Sandrun.create({ apiEndpoint: W0, registryEndpoint: proxy.url }).node().register();
  try {
    await node.startListening(FAST);
    assert.equal(node.stats.running, true);
    assert.ok(node.stats.heartbeats >= 1);
    const ok = await brokerRun('print(6*7)');
    assert.deepEqual([ok.status, ok.exit_code, ok.output, ok.error], ['completed', 0, '42\n', '']);
    const bad = await brokerRun('import sys\nsys.stderr.write("boom\\n")\nsys.exit(3)');
    assert.deepEqual([bad.status, bad.exit_code, bad.output, bad.error], ['failed', 3, '', 'boom\n']);
    const js = await brokerRun('console.log(process.argv.length)', 'node');
    assert.equal(js.output, '2\n');
    const st = await settled(node);
    assert.deepEqual([st.claimed, st.completed, st.failed, st.errors], [3, 2, 1, 0]);
    // Each report carried the worker's checked, signed status (extension field `proof`).
    assert.equal(proxy.completes.length, 3);
    for (const c of proxy.completes) {
      assert.equal(c.node_id, node.id);
      assert.equal(c.proof.verified, true);
      assert.equal(c.proof.level, 'low');
      assert.equal(c.proof.workerId, net.workers[0].worker_id);
      assert.match(c.proof.signedString, /\|/);
      assert.match(c.worker_job_id, /^job_/);
    }
    // A registry that goes away is counted and retried, never thrown.
    await proxy.close();
    await waitFor('an error counted after the registry went away', () => node.stats.errors >= 1, { detail: () => JSON.stringify(node.stats) });
    assert.equal(node.stats.running, true);
    assert.ok(node.stats.errors >= 1);
    assert.match(node.stats.lastError, /NETWORK/);
  } finally {
    await node.stop();
    await proxy.close();
  }
  assert.equal(node.stats.running, false);
});

test('a job the SDK cannot run is reported failed with the reason, not left assigned', async () => {
  const node = await sandrun.node().register();
  try {
    await node.startListening(FAST);
    const r = await brokerRun('puts 1', 'ruby');
    assert.equal(r.status, 'failed');
    assert.equal(r.exit_code, -1);
    assert.match(r.error, /INVALID_ARGUMENT: interpreter "ruby"/);
    assert.equal((await settled(node)).failed, 1);
    assert.match(node.stats.lastError, /ruby/);
  } finally {
    await node.stop();
  }
});

test('stop() ends the loop: heartbeats and polls stop, jobs stay pending', async () => {
  const node = await sandrun.node().register();
  await node.startListening(FAST);
  await node.startListening(FAST); // a second call does not start a second loop
  await waitFor('three heartbeats and three polls', () => node.stats.heartbeats >= 3 && node.stats.polls >= 3, { detail: () => JSON.stringify(node.stats) });
  assert.ok(node.stats.heartbeats >= 3, JSON.stringify(node.stats));
  assert.ok(node.stats.polls >= 3);
  await node.stop();
  const frozen = node.stats;
  assert.equal(frozen.running, false);
  const { json } = await reg('/submit', { code: 'print(1)' });
  // Nothing may happen after stop(): only a window can look for that (a late process
  // sees less in it, never fails wrongly).
  await sleep(600);
  assert.deepEqual(node.stats, frozen);
  assert.equal((await reg(`/status/${json.job_id}`)).json.status, 'pending');
  await node.stop(); // stopping twice is fine
  // Listening again after stop() works, and picks the pending job up.
  await node.startListening(FAST);
  try {
    const until = Date.now() + 10_000;
    while ((await reg(`/results/${json.job_id}`)).status !== 200 && Date.now() < until) await sleep(50);
    assert.equal((await reg(`/results/${json.job_id}`)).json.output, '1\n');
  } finally {
    await node.stop();
  }
});

test('register() fails: unreachable endpoint NETWORK, no registry INVALID_ARGUMENT, anonymous worker refused', async () => {
  await rejectsWith(sandrun.node().endpoint('http://127.0.0.1:1').register(), 'NETWORK', SandrunError);
  await rejectsWith(Sandrun.create({ apiEndpoint: W0, registryEndpoint: 'http://127.0.0.1:1' }).node().register(), 'NETWORK', SandrunError);
  const e = await rejectsWith(Sandrun.create({ apiEndpoint: W0 }).node().register(), 'INVALID_ARGUMENT', SandrunError);
  assert.match(e.message, /registryEndpoint/);
  await setFault(W1, 'anonymous');
  try {
    const a = await rejectsWith(sandrun.node().endpoint(W1).register(), 'INVALID_ARGUMENT', SandrunError);
    assert.match(a.message, /anonymous/);
  } finally {
    await setFault(W1, null);
  }
  const node = await sandrun.node().register();
  await rejectsWith(node.startListening({ pollInterval: 1 }), 'INVALID_ARGUMENT', SandrunError);
  await rejectsWith(node.startListening({ poll: 100 }), 'INVALID_ARGUMENT', SandrunError);
  assert.equal(node.stats.running, false);
});

test('a stopped node does not keep Node.js alive', async () => {
  const script = `
    import { Sandrun } from '@sandrun/wasm';
    const node = await Sandrun.create({ apiEndpoint: ${JSON.stringify(W0)}, registryEndpoint: ${JSON.stringify(net.registry)} }).node().register();
    await node.startListening({ heartbeatInterval: 50000, pollInterval: 30000 });
    await new Promise((r) => setTimeout(r, 300));
    await node.stop();
    console.log(JSON.stringify({ stats: node.stats, stoppedAt: Date.now() }));
  `;
  // Timed from stop(), not from the spawn (a loaded machine starts Node slowly): the
  // heartbeat timer left behind would keep the process ~50 s (the interval above).
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
  const exited = Date.now();
  const { stats, stoppedAt } = JSON.parse(out);
  assert.equal(stats.running, false);
  assert.equal(stats.heartbeats, 1);
  assert.ok(exited - stoppedAt < 10_000, `the script took ${exited - stoppedAt} ms to exit after stop()`);
});

/** A TCP port free right now on 127.0.0.1. */
async function freePort() {
  const s = createTcpServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

test('a node registers again when the registry restarts with an empty database, keeping its id and capabilities', async () => {
  // A registry of its own (a devnet without workers) that the test can restart.
  const port = await freePort();
  const args = ['--workers', '0', '--port-base', String(port)];
  let registry = await startDevnet(args);
  const url = registry.registry;
  const nodes = async () => (await (await fetch(`${url}/nodes`)).json()).nodes;
  let node;
  try {
    node = await Sandrun.create({ apiEndpoint: W0, registryEndpoint: url }).node().region('eu-west').pricing({ cpu: '0.2/hour' }).register();
    const first = (await nodes()).find((n) => n.id === node.id);
    assert.ok(first);
    await node.startListening(FAST);
    await registry.stop();
    registry = await startDevnet(args);
    assert.equal(registry.registry, url);
    // The premise: the restarted registry knows nothing, yet answers an unknown node's heartbeat with 200.
    const hb = await fetch(`${url}/heartbeat`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ node_id: 'not-a-node' }) });
    assert.equal(hb.status, 200);
    const until = Date.now() + 15_000;
    let rec;
    while (!(rec = (await nodes()).find((n) => n.id === node.id)) && Date.now() < until) await sleep(50);
    assert.ok(rec, `the node did not register again within 15 s: ${JSON.stringify(node.stats)}`);
    assert.equal(rec.endpoint, W0);
    assert.deepEqual(rec.capabilities, first.capabilities, 'same capabilities');
    while (node.stats.reregistrations < 1 && Date.now() < until) await sleep(10);
    assert.equal(node.stats.reregistrations, 1);
    assert.equal(node.id, first.id, 'same node id');
    // And it serves the new registry's jobs.
    const { job_id } = await (await fetch(`${url}/submit`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: 'print("again")' }) })).json();
    let res;
    while ((res = await fetch(`${url}/results/${job_id}`)).status !== 200 && Date.now() < until + 10_000) await sleep(50);
    assert.equal((await res.json()).output, 'again\n');
  } finally {
    await node?.stop();
    await registry.stop();
  }
});

test("the spec's Node Registration example compiles (tsc --strict) and runs unchanged", async () => {
  process.env.SANDRUN_API = W0;
  process.env.SANDRUN_REGISTRY = net.registry;
  const out = join(root, 'tests/types/.out');
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tests/types'), '--noEmit', 'false', '--outDir', out], { stdio: 'inherit' });
  const { nodeRegistration } = await import(join(out, 'spec-node-example.js'));
  const node = await nodeRegistration();
  try {
    assert.equal(node.stats.running, true);
    assert.equal(node.capabilities.region, 'us-west-2');
    assert.deepEqual(node.capabilities.gpu, { type: 'rtx4090', memory: 24, count: 2 });
    const r = await brokerRun('print("spec")');
    assert.equal(r.output, 'spec\n');
  } finally {
    await node.stop();
  }
});
