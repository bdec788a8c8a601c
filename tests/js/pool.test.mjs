// Pools and consensus on a real devnet whose faulty workers are the test bed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandrun, SandrunError, Pool } from '@sandrun/wasm';
import { startDevnet, rejectsWith, acceptedJobs } from './support.mjs';

let net;
let sandrun;
const W = {};
const CODE = 'open("out.txt","w").write("42\\n")\nprint("answer")\n';

before(async () => {
  // 0-2 honest; 3 wrong-output; 4 bad-signature; 5 anonymous; 6 crash.
  net = await startDevnet(['--workers', '7', '--no-rate-limit', '--fault', '3=wrong-output', '--fault', '4=bad-signature', '--fault', '5=anonymous', '--fault', '6=crash']);
  [W.a, W.b, W.c, W.wrong, W.badsig, W.anon, W.crash] = net.workers.map((w) => w.url);
  sandrun = Sandrun.create({ apiEndpoint: W.a, registryEndpoint: net.registry });
});
after(async () => net && net.stop());

const idOf = (url) => net.workers.find((w) => w.url === url).worker_id;

// First: any later test whose pool draws the crash worker (discovery order follows the
// registry's node ids) kills it, and this test needs it alive.
test('a crashing worker is replaced, and the result says so', async () => {
  const pool = await sandrun.pool().nodes([W.crash, W.a, W.b, W.c]).consensus('3-of-3').join();
  assert.equal(pool.nodes[0].endpoint, W.crash, JSON.stringify(pool.excluded));
  const r = await sandrun.job().code('import time\ntime.sleep(0.5)\nprint("done")').with(pool).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'done\n');
  const reps = r.proof.consensus.replicas;
  assert.equal(reps.find((x) => x.worker === W.crash).outcome, 'failed');
  assert.equal(reps.find((x) => x.replaces === W.crash).worker, W.c);
  assert.deepEqual(r.proof.consensus.dissenting, [idOf(W.crash)]);
});

test('2-of-3 with a wrong-output worker: the correct result, the dissenter named', async () => {
  const pool = await sandrun.pool().nodes([W.a, W.wrong, W.b]).consensus('2-of-3').join();
  assert.ok(pool instanceof Pool);
  assert.equal(pool.nodes.length, 3);
  const ex = await sandrun.job().code(CODE).with(pool).submit();
  // Lazy replication: two replicas start; the wrong worker's failed check starts the third.
  assert.deepEqual(ex.replicas.map((x) => x.worker), [W.a, W.wrong]);
  const r = await ex.wait();
  assert.equal(ex.replicas.length, 3);
  assert.equal(r.proof.consensus.replicas.find((x) => x.worker === W.b).replaces, W.wrong);
  assert.equal(r.status, 'completed');
  assert.equal(r.stdout, 'answer\n');
  const c = r.proof.consensus;
  assert.equal(c.reached, true);
  assert.deepEqual([c.required, c.of], [2, 3]);
  assert.deepEqual(c.agreeing.sort(), [idOf(W.a), idOf(W.b)].sort());
  assert.deepEqual(c.dissenting, [idOf(W.wrong)]);
  assert.match(c.replicas.find((x) => x.worker === W.wrong).detail, /VERIFICATION_FAILED/);
  assert.equal(r.proof.level, '2-of-3');
  // download() takes the files from an agreeing worker, checked against the signed hashes.
  const d = await ex.download();
  assert.equal(new TextDecoder().decode(d.files.find((f) => f.path === 'out.txt').bytes), '42\n');
  assert.notEqual(d.worker, W.wrong);
});

test('replication: lazy starts k replicas and more only on failure or disagreement; eager starts n', async () => {
  const nodes = [W.a, W.b, W.c];
  const jobs = () => Promise.all(nodes.map(acceptedJobs)).then((a) => a.reduce((x, y) => x + y, 0));
  const lazy = await sandrun.pool().nodes(nodes).consensus('2-of-3').join();
  let before = await jobs();
  const r = await sandrun.job().code(CODE).with(lazy).submit().then((e) => e.wait());
  assert.equal(r.proof.consensus.reached, true);
  assert.deepEqual([r.proof.consensus.required, r.proof.consensus.of, r.proof.consensus.agreeing.length], [2, 3, 2]);
  assert.equal(await jobs(), before + 2, 'two agreeing replicas are a majority of three: the third never ran');
  // Valid but different results (each replica prints its own random bytes) start the third,
  // and three different answers are no 2-of-3.
  before = await jobs();
  const e = await rejectsWith(sandrun.job().code('import os\nprint(os.urandom(8).hex())').with(lazy).submit().then((x) => x.wait()), 'CONSENSUS_NOT_REACHED', SandrunError);
  assert.equal(e.details.replicas.length, 3);
  assert.ok(e.details.replicas.every((x) => x.outcome === 'dissented'), JSON.stringify(e.details.replicas));
  assert.equal(await jobs(), before + 3);
  // Eager, and redundancy(3) under lazy, start all three at once.
  for (const p of [sandrun.pool().nodes(nodes).consensus('2-of-3').replication('eager'), sandrun.pool().nodes(nodes).consensus('2-of-3').redundancy(3)]) {
    before = await jobs();
    const ex = await sandrun.job().code(CODE).with(await p.join()).submit();
    assert.equal(ex.replicas.length, 3);
    await ex.wait();
    assert.equal(await jobs(), before + 3);
  }
  assert.throws(() => sandrun.pool().replication('some'), (x) => x instanceof SandrunError && x.code === 'INVALID_ARGUMENT' && /'lazy'/.test(x.message));
});

test('the first replicas of a quorum are submitted at once', async () => {
  const submits = [];
  const tap = {
    name: 'submit-times',
    async execute(next, ctx) {
      if (!ctx.url.endsWith('/submit')) return next();
      const s = { url: ctx.url, start: performance.now(), end: Infinity };
      submits.push(s);
      try { return await next(); } finally { s.end = performance.now(); }
    },
  };
  const s = Sandrun.create({ apiEndpoint: W.a }).with(tap);
  const pool = await s.pool().nodes([W.a, W.b, W.c]).consensus('2-of-3').join();
  const r = await s.job().code(CODE).with(pool).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'answer\n');
  assert.equal(submits.length, 2, submits.map((x) => x.url).join(' '));
  assert.ok(submits[1].start < submits[0].end, 'the second replica was submitted before the first submission answered');
});

test('a bad-signature worker is rejected and never counts', async () => {
  const pool = await sandrun.pool().nodes([W.badsig, W.a, W.c]).join();
  const r = await sandrun.job().code(CODE).consensus('2-of-3').with(pool).submit().then((e) => e.wait());
  assert.deepEqual(r.proof.consensus.dissenting, [idOf(W.badsig)]);
  assert.match(r.proof.consensus.replicas.find((x) => x.worker === W.badsig).detail, /signature/);
});

test('an anonymous worker cannot be part of a verified quorum', async () => {
  const pool = await sandrun.pool().nodes([W.anon, W.a, W.b]).consensus('3-of-3').join();
  const e = await rejectsWith(sandrun.job().code(CODE).with(pool).submit().then((x) => x.wait()), 'CONSENSUS_NOT_REACHED', SandrunError);
  assert.equal(e.details.replicas.length, 3);
  assert.match(e.details.replicas.find((x) => x.worker === W.anon).detail, /did not sign/);
});

test('too few honest workers: CONSENSUS_NOT_REACHED with every replica\'s outcome', async () => {
  const pool = await sandrun.pool().nodes([W.a, W.wrong, W.badsig]).consensus('2-of-3').join();
  const e = await rejectsWith(sandrun.job().code(CODE).with(pool).submit().then((x) => x.wait()), 'CONSENSUS_NOT_REACHED', SandrunError);
  assert.equal(e.details.reached, false);
  assert.deepEqual(e.details.replicas.map((x) => x.worker).sort(), [W.a, W.wrong, W.badsig].sort());
  assert.match(e.message, /2-of-3 not reached/);
  // A pool smaller than the quorum fails before anything is submitted.
  const small = await sandrun.pool().nodes([W.a]).join();
  const before = await acceptedJobs(W.a);
  await rejectsWith(sandrun.job().code(CODE).consensus('high').with(small).submit(), 'CONSENSUS_NOT_REACHED', SandrunError);
  assert.equal(await acceptedJobs(W.a), before);
});

test('discover() filters registry nodes; distribute() runs one replica per worker', async () => {
  const gpu = await sandrun.pool().discover({ minGPUs: 1 }).join();
  // Devnet workers 1 and 4 advertise one simulated nvidia-t4.
  assert.deepEqual(gpu.nodes.map((n) => n.endpoint).sort(), [W.b, W.badsig].sort());
  assert.ok(gpu.capabilities.some((c) => c.label === 'gpu:nvidia-t4'));
  const east = await sandrun.pool().discover({ region: 'us-east', interpreters: ['python3'] }).join();
  assert.ok(east.nodes.every((n) => n.region === 'us-east') && east.nodes.length >= 2);
  await rejectsWith(sandrun.pool().discover({ gpuType: 'h100' }).join(), 'NO_MATCHING_WORKER', SandrunError);
  const pool = await sandrun.pool().nodes([W.a, W.b, W.c]).redundancy(3).join();
  const executions = await pool.distribute(sandrun.job().code('print("r")'));
  assert.equal(executions.length, 3);
  assert.deepEqual(executions.map((e) => e.worker).sort(), [W.a, W.b, W.c].sort());
  const results = await Promise.all(executions.map((e) => e.wait()));
  assert.ok(results.every((r) => r.stdout === 'r\n' && r.proof.verified));
  // verify(): offline agreement of proofs; a tampered one never counts.
  const proofs = results.map((r) => r.proof);
  const tampered = { ...proofs[2], signedString: proofs[2].signedString.replace('|0|', '|1|') };
  const c = await pool.verify([proofs[0], proofs[1], tampered]);
  assert.equal(c.reached, true);
  assert.equal(c.agreeing.length, 2);
  assert.deepEqual(c.dissenting, [proofs[2].workerId]);
});

test('consensus("2-of-3") without a pool discovers workers from the registry', async () => {
  const r = await sandrun.job().code('print("auto")').consensus('2-of-3').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'auto\n');
  assert.equal(r.proof.consensus.agreeing.length >= 2, true);
  await rejectsWith(Sandrun.create({ apiEndpoint: W.a }).job().code('print(1)').consensus('medium').submit(), 'INVALID_ARGUMENT', SandrunError);
});


test('pool builders are immutable and validate at the call', async () => {
  const a = sandrun.pool().nodes([W.a, W.b, W.c]);
  const b = a.consensus('2-of-3');
  // Deriving b left a as it was: a's pool (consensus 'low') runs a job on one worker,
  // b's on three.
  const [pa, pb] = await Promise.all([a.join(), b.join()]);
  const [ea, eb] = await Promise.all([pa, pb].map((p) => p.distribute(sandrun.job().code('print("i")'))));
  assert.deepEqual([ea.length, eb.length], [1, 3]);
  await Promise.all([...ea, ...eb].map((e) => e.wait()));
  for (const bad of [() => a.consensus('most'), () => a.redundancy(0), () => a.nodes([]), () => a.discover({ minGPU: 4 }), () => sandrun.job().with({})]) {
    assert.throws(bad, (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT', bad.toString());
  }
});
