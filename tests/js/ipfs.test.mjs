// IPFS through @sandrun/wasm against the devnet's real IPFS node (`--ipfs`: Helia's UnixFS
// with a Kubo /api/v0/add and a trustless gateway): adds whose CIDs equal the node's own,
// verified cat/ls/get, a tampered gateway refused with nothing used, ipfs:// job inputs
// packed and hashed, and outputs published.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { startDevnet, acceptedJobs, rejectsWith, noise, nodeAdd } from './support.mjs';
// The host the package installed (same module instance): its native hash is wrapped below.
import { nodeHost } from '../../pkg/host-node.js';

let net; // honest IPFS node + 1 worker
let bad; // --ipfs-fault tamper + 1 worker
let liar; // --ipfs-fault wrong-cid
let sandrun;

before(async () => {
  [net, bad, liar] = await Promise.all([
    startDevnet(['--workers', '1', '--no-rate-limit', '--ipfs']),
    startDevnet(['--workers', '1', '--no-rate-limit', '--ipfs-fault', 'tamper']),
    startDevnet(['--workers', '1', '--ipfs-fault', 'wrong-cid']),
  ]);
  sandrun = Sandrun.create({ apiEndpoint: net.workers[0].url, ipfsGateway: net.ipfs.gateway, ipfsApi: net.ipfs.api });
});
after(async () => Promise.all([net, bad, liar].map((n) => n && n.stop())));


test('a 6 MiB file: add() answers the node\'s own CID (v0 and v1), cat() returns the verified bytes', async () => {
  const ipfs = sandrun.ipfs();
  const bytes = noise(6 * 1024 * 1024 + 123);
  const cid = await ipfs.add(bytes);
  assert.match(cid, /^Qm/);
  const own = await nodeAdd(net.ipfs.api, { data: bytes }, 'cid-version=0');
  assert.equal(cid, own.at(-1).Hash);
  const cid1 = await ipfs.add(bytes, { cidVersion: 1 });
  assert.match(cid1, /^bafy/);
  assert.equal(cid1, (await nodeAdd(net.ipfs.api, { data: bytes }, 'cid-version=1')).at(-1).Hash);
  assert.deepEqual(await ipfs.cat(cid), bytes);
  assert.deepEqual(await ipfs.cat(`ipfs://${cid1}`), bytes);
  await rejectsWith(ipfs.cat(cid, { maxBytes: 1024 * 1024 }), 'MALFORMED_RESPONSE', SandrunError);
  await rejectsWith(() => ipfs.add(bytes, { cidVersion: 0, rawLeaves: true }), 'INVALID_ARGUMENT', SandrunError);
});

test('a directory round trip: same root as the node, ls(), get(), cat() of a path', async () => {
  const ipfs = sandrun.ipfs();
  const files = { 'readme.txt': new TextEncoder().encode('hello ipfs\n'), 'data/part-1.bin': noise(700_000, 7), 'data/deep/x.csv': new TextEncoder().encode('a,b\n1,2\n') };
  const root = await ipfs.add(files);
  const own = await nodeAdd(net.ipfs.api, files, 'cid-version=0&wrap-with-directory=true');
  assert.equal(root, own.find((l) => l.Name === '').Hash);
  const listed = await ipfs.ls(root);
  assert.deepEqual(listed.map((e) => [e.name, e.type, e.size]), [['data', 'directory', 0], ['readme.txt', 'file', 11]]);
  const got = await ipfs.get(`ipfs://${root}`);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(files).sort());
  for (const [p, b] of Object.entries(files)) assert.deepEqual(got[p], b, p);
  assert.deepEqual(await ipfs.cat(`ipfs://${root}/data/deep/x.csv`), files['data/deep/x.csv']);
  await rejectsWith(ipfs.cat(root), 'INVALID_ARGUMENT', SandrunError);
  const missing = await rejectsWith(ipfs.cat(`ipfs://${root}/nope.txt`), 'HTTP_STATUS', SandrunError);
  assert.equal(missing.status, 404);
});

test('a gateway that serves wrong bytes is refused: nothing returned, no job submitted', async () => {
  const client = Sandrun.create({ apiEndpoint: bad.workers[0].url, ipfsGateway: bad.ipfs.gateway, ipfsApi: bad.ipfs.api });
  const ipfs = client.ipfs();
  const bytes = noise(2 * 1024 * 1024, 3);
  const cid = await ipfs.add(bytes); // adding is honest; serving is not
  const e = await rejectsWith(ipfs.cat(cid), 'VERIFICATION_FAILED', SandrunError);
  assert.match(e.message, /failed verification/);
  assert.ok(e.details.cid);
  await rejectsWith(ipfs.get(cid), 'VERIFICATION_FAILED', SandrunError);
  const dir = await ipfs.add({ 'x.txt': bytes });
  await rejectsWith(ipfs.ls(dir), 'VERIFICATION_FAILED', SandrunError);
  const job = client.job().code('import os\nprint(open(os.environ["DATASET_URL"], "rb").read()[:10])').environment({ DATASET_URL: `ipfs://${cid}` });
  await rejectsWith(job.submit(), 'VERIFICATION_FAILED', SandrunError);
  assert.equal(await acceptedJobs(bad.workers[0].url), 0, 'a job was submitted with unverified data');
});

/** Run `f` with the host's native SHA-256 (`sha256Into(bytes, out)`: writes 64 hex digits
 * into `out`) wrapped: `wrap(original, bytes, out)`; returns what it saw. */
async function withHostHash(wrap, f) {
  const original = nodeHost.sha256Into;
  assert.equal(typeof original, 'function', 'the Node host offers a synchronous native SHA-256');
  const seen = { calls: 0, bytes: 0 };
  nodeHost.sha256Into = (b, out) => { seen.calls++; seen.bytes += b.length; return wrap(original, b, out); };
  try { await f(); } finally { nodeHost.sha256Into = original; }
  return seen;
}

const ascii = (s) => new TextEncoder().encode(s);
/** Test doubles for a broken host hash (none can be caused with node:crypto): each writes
 * something that is not a digest, and must never be taken as one. */
const brokenHostHashes = {
  'writes nothing': () => {},
  'throws': () => { throw new Error('host hash broke'); },
  'writes "not a digest"': (h, b, out) => { out.set(ascii('not a digest')); },
  'writes 63 of the 64 digits': (h, b, out) => { h(b, out); out[63] = 0; },
  'writes upper-case hex': (h, b, out) => { h(b, out); out.set(ascii(new TextDecoder().decode(out).toUpperCase())); },
  // Writing past the 64-byte view throws, after the real digest is there: still not taken.
  'writes 65 digits (past the end)': (h, b, out) => { h(b, out); const d = new Uint8Array(65).fill(48); d.set(out); out.set(d); },
  'writes a digest of 32 raw bytes': (h, b, out) => { out.set(createHash('sha256').update(b).digest()); },
  // A throw decides even after 64 valid digits were written (a wrong digest here): the
  // exception must reach the SDK (build.mjs inlines the glue's catch for sha256Into).
  'writes a wrong digest, then throws': (h, b, out) => { h(b, out); out[0] = out[0] === 48 ? 49 : 48; throw new Error('host hash broke'); },
};

test('output hashes (the hex path a result check takes) come from the host, and a host that writes no digest is replaced by sha2, never taken', async () => {
  // gpu().sha256 runs gpu::sha256_for_proof's CPU path, the one output checks take.
  const g = Sandrun.create({}).gpu();
  const inputs = [noise(1024, 3), noise(70_000, 4), new Uint8Array(0)];
  const want = inputs.map((b) => createHash('sha256').update(b).digest('hex'));
  const honest = await withHostHash((h, b, out) => h(b, out), async () => assert.deepEqual(await g.sha256(inputs), want));
  assert.equal(honest.calls, inputs.length, 'every output went through the host');
  // The host's digest decides (a lying host is the host's fault; it is not second-guessed).
  await withHostHash((h, b, out) => { h(b, out); out[0] = out[0] === 48 ? 49 : 48; }, async () => {
    const got = await g.sha256(inputs);
    assert.deepEqual(got.map((d) => d.slice(1)), want.map((d) => d.slice(1)));
    assert.notDeepEqual(got, want);
  });
  for (const [what, wrap] of Object.entries(brokenHostHashes)) {
    const seen = await withHostHash(wrap, async () => assert.deepEqual(await g.sha256(inputs), want, `a host hash that ${what}`));
    assert.equal(seen.calls, inputs.length, `a host hash that ${what} was asked`);
  }
});

test('blocks are checked with the host\'s native SHA-256, and a tampered gateway is still refused on that path', async () => {
  const bytes = noise(2 * 1024 * 1024 + 5, 9);
  const cid = await sandrun.ipfs().add(bytes);
  // Honest gateway: every block (9 leaves and the root) went through node:crypto.
  let got;
  const honest = await withHostHash((h, b, out) => h(b, out), async () => { got = await sandrun.ipfs().cat(cid); });
  assert.deepEqual(got, bytes);
  assert.ok(honest.calls >= 10 && honest.bytes >= bytes.length, `host hash saw ${honest.calls} calls, ${honest.bytes} bytes`);
  // Tampering gateway (devnet --ipfs-fault tamper): refused, nothing returned, on the same path.
  const client = Sandrun.create({ ipfsGateway: bad.ipfs.gateway, ipfsApi: bad.ipfs.api });
  const badCid = await client.ipfs().add(bytes);
  const tampered = await withHostHash((h, b, out) => h(b, out), async () => {
    const e = await rejectsWith(client.ipfs().cat(badCid), 'VERIFICATION_FAILED', SandrunError);
    assert.match(e.message, /hash to sha2-256 [0-9a-f]{64}, the CID names [0-9a-f]{64}/);
  });
  assert.ok(tampered.calls >= 1, 'the tampered block was hashed by the host');
  // The host's digest decides: a host hash that answers wrong digests (a test double for
  // a broken host) fails even an honest gateway's bytes, so the check is not bypassed.
  await withHostHash((h, b, out) => { h(b, out); out[0] = out[0] === 48 ? 49 : 48; }, async () => {
    await rejectsWith(sandrun.ipfs().cat(cid), 'VERIFICATION_FAILED', SandrunError);
  });
  // A host hash that writes no digest is replaced by sha2 in wasm: still checked.
  for (const [what, wrap] of Object.entries(brokenHostHashes)) {
    const seen = await withHostHash(wrap, async () => {
      assert.deepEqual(await sandrun.ipfs().cat(cid), bytes, `a host hash that ${what}`);
      await rejectsWith(client.ipfs().cat(badCid), 'VERIFICATION_FAILED', SandrunError);
    });
    assert.ok(seen.calls >= 10, `a host hash that ${what} was asked`);
  }
});

/** Run `f` with the global fetch's bodies counted: returns a function giving the bytes of
 * gateway CAR answers delivered so far (what the SDK has read of them). */
async function withCountedFetch(f) {
  const original = globalThis.fetch;
  let delivered = 0;
  globalThis.fetch = async (...args) => {
    const r = await original(...args);
    const url = typeof args[0] === 'string' ? args[0] : args[0].url;
    if (!url.includes('format=car') || !r.body) return r;
    const counter = new TransformStream({ transform(chunk, c) { delivered += chunk.length; c.enqueue(chunk); } });
    return new Response(r.body.pipeThrough(counter), { status: r.status, headers: r.headers });
  };
  try { await f(() => delivered); } finally { globalThis.fetch = original; }
}

test('blocks are hashed while the CAR downloads; a wrong block stops the download; middleware answers are checked whole', async () => {
  const bytes = noise(8 * 1024 * 1024, 21);
  const cid = await sandrun.ipfs().add(bytes);
  const car = (await (await fetch(`${net.ipfs.gateway}/ipfs/${cid}?format=car&dag-scope=all`)).arrayBuffer()).byteLength;
  // Honest gateway: the first blocks are hashed (by the host) while most of the CAR is
  // still to come, and nothing is hashed twice.
  await withCountedFetch(async (delivered) => {
    const at = [];
    const seen = await withHostHash((h, b, out) => { at.push(delivered()); return h(b, out); }, async () => {
      assert.deepEqual(await sandrun.ipfs().cat(cid), bytes);
    });
    assert.equal(delivered(), car);
    assert.equal(seen.calls, 33, 'each of the 32 leaves and the root hashed once');
    assert.ok(at[0] < car / 4, `the first block was hashed after ${at[0]} of ${car} bytes`);
    assert.ok(at[16] < car, `half the blocks were hashed before the last byte (${at[16]} of ${car})`);
  });
  // Tampering gateway: the first wrong block fails the fetch; the rest is not read.
  const client = Sandrun.create({ ipfsGateway: bad.ipfs.gateway, ipfsApi: bad.ipfs.api });
  const badCid = await client.ipfs().add(bytes);
  await withCountedFetch(async (delivered) => {
    await rejectsWith(client.ipfs().cat(badCid), 'VERIFICATION_FAILED', SandrunError);
    assert.ok(delivered() < car / 2, `stopped after ${delivered()} of ${car} bytes`);
  });
  // A middleware that swaps in other bytes (here the tampering gateway's answer for the
  // honest one's request) sees whole responses: what it returns is what gets checked,
  // never digests taken of the bytes it replaced.
  const swapped = Sandrun.create({ ipfsGateway: net.ipfs.gateway }).with({
    name: 'swap',
    async execute(next, ctx) {
      const r = await next();
      if (!ctx.url.includes('format=car')) return r;
      const other = await fetch(ctx.url.replace(net.ipfs.gateway, bad.ipfs.gateway), { headers: { Accept: 'application/vnd.ipld.car' } });
      return { ...r, body: new Uint8Array(await other.arrayBuffer()) };
    },
  });
  await rejectsWith(swapped.ipfs().cat(cid), 'VERIFICATION_FAILED', SandrunError);
  // The same middleware passing the honest answer through: verified as usual.
  const passing = Sandrun.create({ ipfsGateway: net.ipfs.gateway }).with({ name: 'pass', execute: (next) => next() });
  assert.deepEqual(await passing.ipfs().cat(cid), bytes);
});

test('a node that answers another CID than the bytes make is caught', async () => {
  const ipfs = Sandrun.create({ ipfsApi: liar.ipfs.api, ipfsGateway: liar.ipfs.gateway }).ipfs();
  const e = await rejectsWith(ipfs.add(new TextEncoder().encode('abc')), 'VERIFICATION_FAILED', SandrunError);
  assert.ok(e.details.local && e.details.node && e.details.local !== e.details.node);
  await rejectsWith(ipfs.add({ 'a.txt': new Uint8Array([1]) }), 'VERIFICATION_FAILED', SandrunError);
});

test('the spec pool example shape: a job reads an ipfs:// dataset through environment() and publishes its outputs', async () => {
  const ipfs = sandrun.ipfs();
  const dataset = noise(1_500_000, 11);
  const cid = await ipfs.add(dataset);
  const code = [
    'import hashlib, os',
    'p = os.environ["DATASET_URL"]',
    'data = open(p, "rb").read()',
    'print(p, len(data), hashlib.sha256(data).hexdigest())',
    'open("summary.txt", "w").write("%d bytes\\n" % len(data))',
  ].join('\n');
  const job = sandrun.job().code(code).environment({ DATASET_URL: `ipfs://${cid}` }).outputs(['summary.txt']).publish();
  const result = await job.submit().then((e) => e.download());
  assert.equal(result.status, 'completed', result.stderr);
  assert.equal(result.proof.verified, true);
  assert.equal(result.stdout, `_ipfs/${cid} ${dataset.length} ${createHash('sha256').update(dataset).digest('hex')}\n`);
  // Published: CIDs computed by the SDK, equal to the node's, and fetchable verified.
  const summary = new TextEncoder().encode(`${dataset.length} bytes\n`);
  assert.deepEqual(result.ipfs.files.map((f) => [f.path, f.size]), [['summary.txt', summary.length]]);
  assert.equal(result.ipfs.files[0].cid, (await nodeAdd(net.ipfs.api, { 'summary.txt': summary }, 'cid-version=0')).at(-1).Hash);
  assert.deepEqual(await ipfs.cat(`ipfs://${result.ipfs.root}/summary.txt`), summary);
  // The job hash covers the dataset's bytes: another dataset, another hash.
  const other = await ipfs.add(noise(1000, 12));
  const [a, b] = await Promise.all([job.estimate(), job.environment({ DATASET_URL: `ipfs://${other}` }).estimate()]);
  assert.notEqual(a.jobHash, b.jobHash);
  // Opt-out: the URL reaches the job as text.
  const plain = await sandrun.job().code('import os\nprint(os.environ["DATASET_URL"])').environment({ DATASET_URL: `ipfs://${cid}` }).ipfsInputs(false).submit().then((e) => e.wait());
  assert.equal(plain.stdout, `ipfs://${cid}\n`);
});

test('code(), script() and repository() take ipfs:// URLs', async () => {
  const ipfs = sandrun.ipfs();
  const enc = (s) => new TextEncoder().encode(s);
  const codeCid = await ipfs.add(enc('print("from ipfs code")\n'));
  const r1 = await sandrun.job().code(`ipfs://${codeCid}`).submit().then((e) => e.wait());
  assert.equal(r1.stdout, 'from ipfs code\n');
  const dir = await ipfs.add({ 'run.py': enc('import helper\nhelper.hi()\n'), 'helper.py': enc('def hi():\n    print("helper says hi")\n') });
  const r2 = await sandrun.job().script(`ipfs://${dir}/run.py`).submit().then((e) => e.wait());
  assert.equal(r2.stdout, 'helper says hi\n', r2.stderr);
  const repo = await ipfs.add({ 'main.py': enc('print(open("data/v.txt").read().strip())\n'), 'data/v.txt': enc('repo from ipfs\n') });
  const r3 = await sandrun.job().repository(`ipfs://${repo}`).submit().then((e) => e.wait());
  assert.equal(r3.stdout, 'repo from ipfs\n', r3.stderr);
  assert.throws(() => sandrun.job().repository('ipfs://not-a-cid'), (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT');
  // Without ipfsGateway the job says what to configure.
  const e = await rejectsWith(Sandrun.create({ apiEndpoint: net.workers[0].url }).job().code(`ipfs://${codeCid}`).submit(), 'INVALID_ARGUMENT', SandrunError);
  assert.match(e.message, /ipfsGateway/);
});
