// Bounded, and nothing lost: downloadTo() writes only checked files where it may, a
// paid job downloaded with it is settled; every response, WebSocket frame, upgrade,
// pool join and timer is bounded. Faults come from the real devnet where it has them
// (wrong-output, --chain); servers named "double" are test doubles of a hostile worker
// for faults no honest server produces (endless bodies, dripping answers, huge frames,
// upgrades that never come).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, readdirSync, symlinkSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createPublicClient, http as viemHttp, parseEther } from 'viem';
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import { stats } from '../../pkg/host-node.js';
import { startDevnet, rejectsWith, waitFor } from './support.mjs';

let net;
let W;
let chain;
let pub;
const servers = [];

before(async () => {
  net = await startDevnet(['--workers', '2', '--no-rate-limit', '--chain', '--fault', '1=wrong-output']);
  W = net.workers;
  chain = net.chain;
  pub = createPublicClient({ transport: viemHttp(chain.rpc) });
});
after(async () => {
  for (const s of servers) { s.closeAllConnections?.(); s.close(); }
  if (net) await net.stop();
});

const fresh = (name) => mkdtempSync(join(tmpdir(), `sandrun-${name}-`));
/** Every entry under `dir`, recursively, as relative paths (symlinks not followed). */
function tree(dir, rel = '') {
  const out = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    out.push(p);
    if (e.isDirectory()) out.push(...tree(dir, p));
  }
  return out.sort();
}

/** A one-off HTTP server on loopback (a test double); `routes(req, res)` answers. */
async function serve(routes, onUpgrade) {
  const s = http.createServer(routes);
  if (onUpgrade) s.on('upgrade', onUpgrade);
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `http://127.0.0.1:${s.address().port}`;
}

/** A double that runs no job: a completed, unsigned status (use with consensus 'none'). */
function fakeWorker(files = {}, overrides = {}) {
  const output_files = {};
  for (const [p, body] of Object.entries(files)) output_files[p] = { size_bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), type: 'text' };
  const status = {
    job_id: 'job_1_1', status: 'completed', queue_position: 0,
    execution_metadata: { cpu_seconds: 0.01, memory_peak_bytes: 0, memory_peak_mb: 0, wall_time_ms: 0, exit_code: 0, environment: '', interpreter: 'python3' },
    job_hash: 'x', output_files, worker_metadata: { worker_id: null, signature: null },
  };
  return (req, res) => {
    if (overrides[req.url.split('/')[1]]) return overrides[req.url.split('/')[1]](req, res);
    if (req.url === '/health') return res.end('{"status":"healthy","worker_id":null}');
    if (req.url === '/submit') { req.resume(); return res.end('{"job_id":"job_1_1","status":"queued"}'); }
    if (req.url.startsWith('/status/')) return res.end(JSON.stringify(status));
    if (req.url.startsWith('/logs/')) return res.end('{"stdout":"","stderr":""}');
    if (req.url.startsWith('/download/')) {
      const p = decodeURIComponent(req.url.split('/').slice(3).join('/'));
      if (files[p] !== undefined) return res.end(files[p]);
    }
    res.writeHead(404).end('{"error":"Not found"}');
  };
}

// ---- downloadTo ----------------------------------------------------------------

test('downloadTo: a tampered output (wrong-output) leaves no file, not even a partial one', async () => {
  const dir = join(fresh('tamper'), 'out');
  const ex = await Sandrun.create({ apiEndpoint: W[1].url }).job().code('open("o.txt","w").write("x" * 100000)').outputs(['*.txt']).submit();
  await rejectsWith(ex.downloadTo(dir), 'VERIFICATION_FAILED', SandrunError);
  const left = existsSync(dir) ? tree(dir) : [];
  assert.deepEqual(left, [], `nothing under the target: ${left}`);
});

test('downloadTo: only files matching outputs() are written, never the stdout capture (double lists more)', async () => {
  // A worker that ignores the patterns and lists every file: the SDK still writes only matches.
  const url = await serve(fakeWorker({ 'keep.txt': 'keep\n', 'extra.bin': 'nope', 'results/r.csv': 'a,b\n' }));
  const dir = fresh('patterns');
  const ex = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').outputs(['*.txt', 'results/*']).consensus('none').submit();
  assert.equal(await ex.downloadTo(dir), undefined);
  assert.deepEqual(tree(dir), ['keep.txt', 'results', 'results/r.csv']);
  // Against the devnet: patterns honoured, the SDK's stdout capture not written.
  const dir2 = fresh('patterns2');
  await Sandrun.create({ apiEndpoint: W[0].url }).job().code('print("hi")\nopen("a.txt","w").write("a")\nopen("b.log","w").write("b")').outputs(['*.txt']).submit().then((e) => e.downloadTo(dir2));
  assert.deepEqual(tree(dir2), ['a.txt']);
  assert.equal(readFileSync(join(dir2, 'a.txt'), 'utf8'), 'a');
});

test('downloadTo: an existing file is not overwritten (nothing written), unless { overwrite: true }', async () => {
  const dir = fresh('exists');
  writeFileSync(join(dir, 'out.txt'), 'mine');
  const ex = await Sandrun.create({ apiEndpoint: W[0].url }).job().code('open("new.txt","w").write("new")\nopen("out.txt","w").write("theirs")').outputs(['*.txt']).submit();
  const e = await rejectsWith(ex.downloadTo(dir), 'IO', SandrunError);
  assert.match(e.message, /out\.txt/);
  assert.match(e.message, /overwrite/);
  assert.equal(e.details.path, join(dir, 'out.txt'));
  assert.equal(readFileSync(join(dir, 'out.txt'), 'utf8'), 'mine');
  assert.deepEqual(tree(dir), ['out.txt'], 'new.txt not written either');
  await rejectsWith(ex.downloadTo(dir, { overwrite: 'yes' }), 'INVALID_ARGUMENT', SandrunError);
  await rejectsWith(ex.downloadTo(dir, { clobber: true }), 'INVALID_ARGUMENT', SandrunError);
  await ex.downloadTo(dir, { overwrite: true });
  assert.equal(readFileSync(join(dir, 'out.txt'), 'utf8'), 'theirs');
  assert.equal(readFileSync(join(dir, 'new.txt'), 'utf8'), 'new');
});

test('downloadTo: a symlink inside the target pointing outside is never followed', async () => {
  const base = fresh('symlink');
  const outside = join(base, 'outside');
  mkdirSync(outside);
  const dir = join(base, 'out');
  mkdirSync(dir);
  symlinkSync(outside, join(dir, 'results'));
  const code = 'import os\nos.makedirs("results", exist_ok=True)\nopen("results/r.csv","w").write("evil")\nopen("victim.txt","w").write("evil")';
  const ex = await Sandrun.create({ apiEndpoint: W[0].url }).job().code(code).outputs(['results/*', '*.txt']).submit();
  const e = await rejectsWith(ex.downloadTo(dir), 'IO', SandrunError);
  assert.match(e.message, /symbolic link/);
  assert.deepEqual(readdirSync(outside), []);
  // A symlink at a file's own name: refused even with overwrite, its target untouched.
  const dir2 = join(base, 'out2');
  mkdirSync(dir2);
  writeFileSync(join(outside, 'victim.txt'), 'safe');
  symlinkSync(join(outside, 'victim.txt'), join(dir2, 'victim.txt'));
  await rejectsWith(ex.downloadTo(dir2, { overwrite: true }), 'IO', SandrunError);
  assert.equal(readFileSync(join(outside, 'victim.txt'), 'utf8'), 'safe');
  assert.ok(lstatSync(join(dir2, 'victim.txt')).isSymbolicLink());
  // The target itself a symlink: refused at once.
  symlinkSync(outside, join(base, 'link'));
  await rejectsWith(ex.downloadTo(join(base, 'link')), 'IO', SandrunError);
  assert.deepEqual(readdirSync(outside), ['victim.txt']);
});

test('downloadTo: a multi-MiB output streams to disk with bounded memory', async () => {
  const size = 12 * 1024 * 1024;
  const dir = fresh('big');
  const ex = await Sandrun.create({ apiEndpoint: W[0].url }).job()
    .code(`import random\nrandom.seed(7)\nopen("big.bin","wb").write(random.randbytes(${size}))`).outputs(['*.bin']).submit();
  stats.maxBufferedBytes = 0;
  await ex.downloadTo(dir);
  const bytes = readFileSync(join(dir, 'big.bin'));
  assert.equal(bytes.length, size);
  const r = await ex.wait();
  assert.equal(createHash('sha256').update(bytes).digest('hex'), r.files.find((f) => f.path === 'big.bin').sha256);
  assert.equal(r.proof.verified, true);
  assert.ok(stats.maxBufferedBytes < 1024 * 1024, `the host buffered ${stats.maxBufferedBytes} bytes at most for a ${size}-byte file`);
  assert.deepEqual(tree(dir), ['big.bin'], 'no temporary file left');
});

test('downloadTo on a paid job releases the escrow and runs onResult; a tampered one is refunded and runs onError', async () => {
  const seen = [];
  const plugin = { name: 'spy', version: '1', onResult: (r) => { seen.push(`result:${r.cost.state}`); return r; }, onError: (e) => { seen.push(`error:${e.code}:${e.details?.cost?.state}`); } };
  const client = (url) => Sandrun.create({ apiEndpoint: url, registryEndpoint: net.registry, escrow: { address: chain.escrow, chainId: chain.chainId }, web3Provider: localWallet(chain.accounts[0].privateKey, chain.rpc) }).use(plugin);
  const w0 = await pub.getBalance({ address: W[0].payout });
  const dir = fresh('paid');
  const ex = await client(W[0].url).job().code('open("o.txt","w").write("paid")').outputs(['*.txt']).payment('0.5').submit();
  await ex.downloadTo(dir);
  assert.equal(readFileSync(join(dir, 'o.txt'), 'utf8'), 'paid');
  assert.equal(await pub.getBalance({ address: W[0].payout }), w0 + parseEther('0.5'), 'released to the worker');
  assert.equal(await pub.getBalance({ address: chain.escrow }), 0n);
  const w1 = await pub.getBalance({ address: W[1].payout });
  const dir2 = fresh('paid2');
  const bad = await client(W[1].url).job().code('open("o.txt","w").write("paid")').outputs(['*.txt']).payment('0.25').submit();
  const e = await rejectsWith(bad.downloadTo(dir2), 'VERIFICATION_FAILED', SandrunError);
  assert.equal(e.details.cost.state, 'refunded');
  assert.equal(await pub.getBalance({ address: W[1].payout }), w1, 'the tampering worker is not paid');
  assert.equal(await pub.getBalance({ address: chain.escrow }), 0n);
  assert.deepEqual(tree(dir2), []);
  assert.deepEqual(seen, ['result:released', 'error:VERIFICATION_FAILED:refunded']);
});

// ---- responses, sockets, joins, timers ------------------------------------------

test('an endless response body is cut off at the cap: MALFORMED_RESPONSE, not a hang (double)', async () => {
  const url = await serve(fakeWorker({}, {
    status: (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const chunk = Buffer.alloc(256 * 1024, 32);
      const pump = () => { while (res.write(chunk)); };
      res.on('drain', pump);
      res.write('{"job_id":"');
      pump();
    },
  }));
  const t0 = performance.now();
  const ex = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').timeout(60).submit();
  const e = await rejectsWith(ex.wait(), 'MALFORMED_RESPONSE', SandrunError);
  assert.match(e.message, /larger than|more than/);
  assert.ok(performance.now() - t0 < 20_000);
});

test('a node that drips its /health cannot hang join(): it is dropped and reported (double)', async () => {
  const drip = await serve((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
    const t = setInterval(() => res.write(' '), 200);
    res.on('close', () => clearInterval(t));
  });
  const t0 = performance.now();
  const pool = await Sandrun.create().pool().nodes([W[0].url, drip]).join();
  const took = performance.now() - t0;
  assert.ok(took < 16_000, `join took ${took} ms`);
  assert.deepEqual(pool.nodes.map((n) => n.endpoint), [W[0].url]);
  assert.equal(pool.excluded.length, 1);
  assert.equal(pool.excluded[0].endpoint, drip);
  assert.match(pool.excluded[0].reason, /within|no complete answer/);
});

test('a huge WebSocket frame closes the socket and the job ends through /status (double)', async () => {
  let sent = 0;
  let closedAt = null;
  const url = await serve(fakeWorker(), (req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const head = Buffer.alloc(10);
    head[0] = 0x81; head[1] = 127; head.writeBigUInt64BE(1n << 40n, 2);
    socket.write(head);
    const chunk = Buffer.alloc(256 * 1024, 120);
    const pump = () => { while (!socket.destroyed && sent < 512 * 1024 * 1024 && socket.write(chunk)) sent += chunk.length; };
    socket.on('drain', pump);
    socket.on('close', () => { closedAt = sent; });
    socket.on('error', () => {});
    pump();
  });
  const r = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').timeout(60).submit().then((e) => e.wait());
  assert.equal(r.status, 'completed');
  await waitFor('the SDK to close the socket', () => closedAt !== null, { timeoutMs: 20_000, detail: () => `${sent} bytes sent` });
  assert.notEqual(closedAt, null, 'the SDK closed the socket');
  assert.ok(closedAt < 64 * 1024 * 1024, `the socket was closed after ${closedAt} bytes`);
});

test('a stream that stalls without [DONE] does not hold wait(): /status shows the end within seconds (double)', async () => {
  // Seen on the devnet: a socket that connected as its job ended got "Job started" and
  // then nothing. A double that upgrades, says the job started, and goes silent, while
  // /status says it completed: wait() must not last until the job's 60 s deadline.
  const sockets = [];
  const url = await serve(fakeWorker(), (req, socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const text = Buffer.from('[STATUS] Job started\n');
    socket.write(Buffer.concat([Buffer.from([0x81, text.length]), text]));
  });
  const t0 = performance.now();
  const r = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').timeout(60).submit().then((e) => e.wait());
  const ms = performance.now() - t0;
  assert.equal(r.status, 'completed');
  assert.equal(sockets.length, 1, 'the stream was opened');
  assert.ok(ms < 15_000, `wait() took ${Math.round(ms)} ms`);
  for (const s of sockets) s.destroy();
});

test('frames that arrive with the 101 answer are read at once: [DONE] in the upgrade packet ends the wait from the stream (double)', async () => {
  // A job that ends as its socket connects: the worker writes the upgrade answer and every
  // frame up to [DONE] at once, then waits for a client frame (as the reference does).
  // Node hands those frames to the upgrade as its `head`; they must be parsed then, not
  // when a next packet comes (none does). The SDK answers [DONE] with a frame of its own;
  // when it missed [DONE] (the /status safety net ends the wait) it sends none.
  let clientFrames = 0;
  const sockets = [];
  const url = await serve(fakeWorker(), (req, socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('data', (d) => { if ((d[0] & 0x0f) === 1) clientFrames++; });
    const frame = (t) => { const b = Buffer.from(t); return Buffer.concat([Buffer.from([0x81, b.length]), b]); };
    socket.write(Buffer.concat([
      Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
      frame('[STATUS] Job status: queued\n'),
      frame('[STATUS] Job started\n'),
      frame('[DONE] Job completed (exit=0, CPU=0.010000s, Mem=8MB)\n'),
    ]));
  });
  const r = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').timeout(60).submit().then((e) => e.wait());
  assert.equal(r.status, 'completed');
  assert.equal(sockets.length, 1, 'the stream was opened');
  await waitFor('the SDK to answer [DONE]', () => clientFrames > 0, { timeoutMs: 5_000 }).catch(() => {});
  assert.equal(clientFrames, 1, 'the SDK answered the [DONE] it found in the upgrade packet');
  for (const s of sockets) s.destroy();
});

test('a WebSocket upgrade that never completes times out and the job ends through /status (double)', async () => {
  const url = await serve(fakeWorker(), (req, socket) => { socket.on('error', () => {}); /* never answers */ });
  const t0 = performance.now();
  const r = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').timeout(40).submit().then((e) => e.wait());
  assert.equal(r.status, 'completed');
  const took = performance.now() - t0;
  assert.ok(took < 20_000, `took ${took} ms`);
});

test('a timeout beyond setTimeout\'s range is clamped, not fired at once', async () => {
  // 3e6 s is about 35 days: past 2^31-1 ms, where setTimeout fires immediately.
  const r = await Sandrun.create({ apiEndpoint: W[0].url }).job().code('import time\ntime.sleep(0.3)\nprint("ok")').timeout(3e6).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'ok\n');
});
