// Trust against a dishonest worker, played for real: the devnet's relay and stdout-lie
// faults, one worker behind two URLs, replayed proofs, weak keys, allowlists, and a
// rewriting proxy (a real hostile server in front of a real worker) that lies in the
// unsigned fields of /status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandrun, SandrunError, verifyEd25519 } from '@sandrun/wasm';
import { startDevnet, rejectsWith, forwardingProxy } from './support.mjs';

let net;
let sandrun;
const W = {};
const servers = [];
const CODE = 'open("out.txt","w").write("42\\n")\nprint("answer")\n';

before(async () => {
  // 0-2 honest; 3 relays worker 0's signed results; 4 lies about stdout.
  net = await startDevnet(['--workers', '5', '--no-rate-limit', '--fault', '3=relay', '--fault', '4=stdout-lie']);
  [W.a, W.b, W.c, W.relay, W.liar] = net.workers.map((w) => w.url);
  sandrun = Sandrun.create({ apiEndpoint: W.a, registryEndpoint: net.registry });
});
after(async () => {
  for (const s of servers) s.close();
  if (net) await net.stop();
});

const idOf = (url) => net.workers.find((w) => w.url === url).worker_id;

test('a relay that passes on worker 0\'s signed results does not make a 2-of-2 quorum', async () => {
  const pool = await sandrun.pool().nodes([W.a, W.relay]).consensus('2-of-2').join();
  assert.equal(pool.nodes.length, 2, 'the relay shows its own key at /health, so it joins');
  const e = await rejectsWith(sandrun.job().code(CODE).with(pool).submit().then((x) => x.wait()), 'CONSENSUS_NOT_REACHED', SandrunError);
  const relay = e.details.replicas.find((r) => r.worker === W.relay);
  assert.equal(relay.outcome, 'dissented');
  assert.match(relay.detail, /presented key .* at \/health/);
  assert.ok(e.details.dissenting.includes(idOf(W.relay)));
  assert.ok(!e.details.agreeing.length);
  // Worker 0's own replica is a lone valid vote, or still running when the relay's dissent
  // made 2-of-2 unreachable (the relay's copy can finish first).
  const a = e.details.replicas.find((r) => r.worker === W.a);
  assert.ok(/too few agreed/.test(a.detail) || a.outcome === 'unfinished', JSON.stringify(a));
  // Alone, at 'low', the relay's answer is refused too once its key is bound by a pool of one.
  const solo = await sandrun.pool().nodes([W.relay]).join();
  await rejectsWith(sandrun.job().code(CODE).with(solo).submit().then((x) => x.wait()), 'CONSENSUS_NOT_REACHED', SandrunError);
});

test('one worker behind two URLs is one vote', async () => {
  const alias = W.a.replace('127.0.0.1', 'localhost');
  const pool = await sandrun.pool().nodes([W.a, alias, W.b]).consensus('2-of-3').join();
  assert.deepEqual(pool.nodes.map((n) => n.endpoint), [W.a, W.b]);
  assert.match(pool.excluded[0].reason, /same key as/);
  assert.equal(pool.excluded[0].endpoint, alias);
  await rejectsWith(sandrun.job().code(CODE).with(pool).submit(), 'CONSENSUS_NOT_REACHED', SandrunError);
  // A proxy in front of worker 0 (a real forwarding server) is the same key too.
  const proxy = await forward(W.a);
  const p2 = await sandrun.pool().nodes([W.a, proxy]).join();
  assert.equal(p2.nodes.length, 1);
});

test('verify([p, p]) counts one signer once; signers outside the pool are ignored', async () => {
  const pool = await sandrun.pool().nodes([W.a, W.b, W.c]).consensus('2-of-3').join();
  const r = await sandrun.job().code(CODE).consensus('low').submit().then((x) => x.wait());
  const p = r.proof;
  const twice = await pool.verify([p, p]);
  assert.equal(twice.reached, false);
  assert.deepEqual(twice.agreeing, [idOf(W.a)]);
  assert.equal(twice.replicas[1].outcome, 'ignored');
  const b = await Sandrun.create({ apiEndpoint: W.b }).job().code(CODE).submit().then((x) => x.wait());
  assert.equal((await pool.verify([p, b.proof])).reached, true);
  // A pool that does not contain worker 0 ignores its proof.
  const other = await sandrun.pool().nodes([W.b, W.c]).consensus('2-of-2').join();
  const outside = await other.verify([p, b.proof]);
  assert.equal(outside.reached, false);
  assert.equal(outside.replicas.find((x) => x.workerId === idOf(W.a)).outcome, 'ignored');
});

test('a stdout lie is caught at low and is a dissent in a pool', async () => {
  const liar = Sandrun.create({ apiEndpoint: W.liar });
  const e = await rejectsWith(liar.job().code(CODE).submit().then((x) => x.wait()), 'VERIFICATION_FAILED', SandrunError);
  assert.match(e.message, /stdout/);
  const stdoutCheck = e.details.proof.checks.find((c) => c.name === 'stdout');
  assert.equal(stdoutCheck.ok, false);
  const pool = await sandrun.pool().nodes([W.liar, W.a, W.b]).consensus('2-of-3').join();
  const r = await sandrun.job().code(CODE).with(pool).submit().then((x) => x.wait());
  assert.equal(r.stdout, 'answer\n');
  assert.equal(new TextDecoder().decode(r.output), 'answer\n');
  assert.deepEqual(r.proof.consensus.dissenting, [idOf(W.liar)]);
  // An honest result says its stdout was covered by the signature.
  const ok = r.proof.checks.find((c) => c.name === 'stdout');
  assert.equal(ok.ok, true);
  assert.match(ok.detail, /covered by the signature/);
});

test('stdout is signed: agreement covers it, and result.output is the checked bytes', async () => {
  const r = await sandrun.job().code('import sys\nsys.stdout.write("é\\n" * 3)\n').submit().then((x) => x.wait());
  assert.equal(r.stdout, 'é\né\né\n');
  const f = r.files.find((x) => x.path === '_sandrun_stdout.txt');
  assert.ok(f, 'the stdout file is among the signed outputs');
  assert.match(r.proof.signedString, /_sandrun_stdout\.txt:[0-9a-f]{64}\|/);
});

test('the signed stdout is taken from /logs when it hashes to the signed digest; otherwise downloaded and checked', async () => {
  const downloads = [];
  const counting = (url) => Sandrun.create({ apiEndpoint: url }).with({
    name: 'count-downloads',
    execute: (next, ctx) => { if (new URL(ctx.url).pathname.startsWith('/download/')) downloads.push(ctx.url); return next(); },
  });
  // UTF-8 stdout: /logs holds the signed bytes, so nothing is downloaded (inputs and the
  // launcher are the SDK's own copies, hashed locally).
  const r = await counting(W.a).job().code('print("answer")\n').submit().then((x) => x.wait());
  assert.equal(r.proof.verified, true, JSON.stringify(r.proof.checks));
  assert.equal(r.stdout, 'answer\n');
  assert.match(r.proof.checks.find((c) => c.name === 'output:_sandrun_stdout.txt').detail, /matches/);
  assert.deepEqual(downloads, []);
  // Not UTF-8: /logs cannot hold those bytes, so the signed file is downloaded, checked,
  // and result.output is its bytes.
  const raw = await counting(W.a).job().code('import sys\nsys.stdout.buffer.write(bytes([0xff, 0xfe, 0x41, 10]))\n').submit().then((x) => x.wait());
  assert.equal(raw.proof.verified, true, JSON.stringify(raw.proof.checks));
  assert.deepEqual([...raw.output], [0xff, 0xfe, 0x41, 10]);
  assert.equal(downloads.length, 1);
  assert.match(downloads[0], /_sandrun_stdout\.txt$/);
  // A worker whose /logs lies about stdout is still refused (its logs do not hash to the
  // signed digest, so the signed file is downloaded, and differs from what it reported).
  downloads.length = 0;
  const e = await rejectsWith(counting(W.liar).job().code(CODE).submit().then((x) => x.wait()), 'VERIFICATION_FAILED', SandrunError);
  assert.equal(e.details.proof.checks.find((c) => c.name === 'stdout').ok, false);
  assert.ok(downloads.some((u) => /_sandrun_stdout\.txt$/.test(u)), downloads.join(' '));
});

test('jobs differing in one env value have different job hashes; a receipt does not prove the other', async () => {
  const job = (v) => sandrun.job().code('import os\nprint(os.environ["MODE"])\n').environment({ MODE: v });
  const r = await job('a').submit().then((x) => x.wait());
  assert.equal(r.stdout, 'a\n');
  const eb = await job('b').estimate();
  assert.notEqual(eb.jobHash, r.jobHash);
  assert.equal((await sandrun.proof().from(r).job(job("a")).verify()).valid, true);
  const wrong = await sandrun.proof().from(r).job(job("b")).verify();
  assert.equal(wrong.valid, false);
  assert.equal(wrong.checks.find((c) => c.name === 'submitted_job').ok, false);
});

test('allowlists: a result signed by a key outside it fails; pools take only allowed workers', async () => {
  const e = await rejectsWith(sandrun.job().code(CODE).allow([idOf(W.b)]).submit().then((x) => x.wait()), 'VERIFICATION_FAILED', SandrunError);
  assert.match(e.message, /not in the allowlist/);
  const ok = await sandrun.job().code(CODE).allow([idOf(W.a)]).submit().then((x) => x.wait());
  assert.equal(ok.proof.verified, true);
  const cfg = Sandrun.create({ apiEndpoint: W.a, allowedWorkers: [idOf(W.b), idOf(W.c)] });
  await rejectsWith(cfg.job().code(CODE).submit().then((x) => x.wait()), 'VERIFICATION_FAILED', SandrunError);
  const pool = await cfg.pool().nodes([W.a, W.b, W.c]).consensus('2-of-2').join();
  assert.deepEqual(pool.nodes.map((n) => n.endpoint), [W.b, W.c]);
  const r = await cfg.job().code(CODE).with(pool).submit().then((x) => x.wait());
  assert.deepEqual(r.proof.consensus.rules.allowlist, [idOf(W.b), idOf(W.c)]);
  assert.equal(r.proof.consensus.rules.distinctKeys, true);
  await rejectsWith(() => sandrun.job().allow(['not-a-key']), 'INVALID_ARGUMENT', SandrunError);
  await rejectsWith(() => Sandrun.create({ allowedWorkers: [] }), 'INVALID_ARGUMENT', SandrunError);
});

test('discover({ distinctHosts }) keeps one worker per host, and says so', async () => {
  const pool = await sandrun.pool().discover({ distinctHosts: true }).join();
  assert.equal(pool.nodes.length, 1, 'every devnet worker is on 127.0.0.1');
  assert.equal(pool.rules.distinctHosts, true);
  assert.ok(pool.excluded.every((x) => /same host/.test(x.reason) || /same key/.test(x.reason)));
  const regions = await sandrun.pool().discover({ distinctRegions: true }).join().catch((e) => e);
  // devnet workers declare regions; at most one per region joins
  if (regions instanceof SandrunError) assert.equal(regions.code, 'CONSENSUS_NOT_REACHED');
  else assert.equal(new Set(regions.nodes.map((n) => n.region)).size, regions.nodes.length);
});

test("k-of-n with k <= n/2 is refused at the call: a minority never wins", async () => {
  for (const bad of ['1-of-2', '2-of-4', '1-of-3']) {
    const e = await rejectsWith(() => sandrun.job().consensus(bad), 'INVALID_ARGUMENT', SandrunError);
    assert.match(e.message, /strict majority/);
    await rejectsWith(() => sandrun.pool().consensus(bad), 'INVALID_ARGUMENT', SandrunError);
  }
});

test('verifyEd25519 refuses the identity key with a trivial signature', () => {
  const identity = new Uint8Array(32);
  identity[0] = 1;
  const sig = new Uint8Array(64);
  sig.set(identity);
  const key = Buffer.from(identity).toString('base64');
  const s = Buffer.from(sig).toString('base64');
  assert.equal(verifyEd25519(key, s, new TextEncoder().encode('any message')), false);
  assert.equal(verifyEd25519(key, s, new TextEncoder().encode('another')), false);
});

test('completed comes from the signed exit code, not the unsigned status field', async () => {
  // A real proxy in front of a real worker that rewrites "failed" to "completed" in /status.
  const liar = await forward(W.b, (path, body) => (path.startsWith('/status/') ? body.replace('"status": "failed"', '"status": "completed"') : body));
  const s = Sandrun.create({ apiEndpoint: liar });
  const r = await s.job().code('import sys\nprint("x")\nsys.exit(1)\n').submit().then((x) => x.wait());
  assert.equal(r.exitCode, 1);
  assert.equal(r.status, 'failed');
});

/** A forwarding proxy to `target` (a real server); `rewrite(path, text)` may alter JSON answers. */
async function forward(target, rewrite) {
  const p = await forwardingProxy(target, { rewrite });
  servers.push(p);
  return p.url;
}
