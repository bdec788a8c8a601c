// GPUs: placement of gpu() jobs on a devnet with two GPU workers and one CPU worker,
// NO_MATCHING_WORKER, the honest result without a registry, estimate(); then the local
// GPU: sandrun.gpu() without WebGPU (plain Node: nothing throws, CPU digests), and with
// WebGPU from the npm package `webgpu` on Chromium's SwiftShader Vulkan driver
// (bit-exact kernels, probe, cached probe, proof checks hashed on the GPU).
//
//   node --test tests/js/gpu.test.mjs
//
// About 15 s: one devnet, a few short jobs, one calibration on a software GPU.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { startDevnet, rejectsWith } from './support.mjs';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const sha = (b) => createHash('sha256').update(b).digest('hex');

let net;
let W; // worker URLs: a100 x4, rtx4090 x2, CPU
let sandrun;
before(async () => {
  net = await startDevnet(['--workers', '3', '--no-rate-limit', '--gpu', '0=a100:40:4', '--gpu', '1=rtx4090:24:2']);
  W = net.workers.map((w) => w.url);
  sandrun = Sandrun.create({ apiEndpoint: W[2], registryEndpoint: net.registry });
});
after(() => net?.stop());

const GPU_ENV = 'import os; print(os.environ.get("CUDA_VISIBLE_DEVICES", "-"), os.environ.get("SANDRUN_GPU_TYPE", "-"))';

test('a gpu() job runs on the worker whose registry entry declares a matching GPU, and says so', async () => {
  const r = await (await sandrun.job().code(GPU_ENV).gpu({ type: 'a100', memory: '40GB', count: 4 }).submit()).wait();
  assert.equal(r.worker, W[0]);
  assert.equal(r.stdout, '0,1,2,3 a100\n', 'the devnet exposes the declared GPUs to the job');
  assert.equal(r.placement.gpuChecked, true);
  assert.equal(r.placement.worker, W[0]);
  assert.deepEqual(r.placement.declared, { type: 'a100', memory: 40, count: 4 });
  assert.equal(r.proof.verified, true);
  const rtx = await (await sandrun.job().code(GPU_ENV).gpu({ type: 'rtx4090', memory: 24 * 1024 }).submit()).wait();
  assert.equal(rtx.worker, W[1]);
  assert.equal(rtx.stdout, '0,1 rtx4090\n');
  // 'cuda' takes any NVIDIA GPU (both are, by the GPU table), never the CPU worker.
  const cuda = await (await sandrun.job().code('print("Hello from GPU!")').gpu({ type: 'cuda', memory: '2GB' }).submit()).wait();
  assert.ok([W[0], W[1]].includes(cuda.worker), cuda.worker);
  // A job without gpu() is untouched: the configured worker, no placement record.
  const plain = await (await sandrun.job().code(GPU_ENV).submit()).wait();
  assert.equal(plain.worker, W[2]);
  assert.equal(plain.stdout, '- -\n');
  assert.equal(plain.placement, undefined);
});

test('no match: NO_MATCHING_WORKER names what was asked and what the registry offers', async () => {
  const e = await rejectsWith(sandrun.job().code('print(1)').gpu({ type: 'h100' }).submit(), 'NO_MATCHING_WORKER', SandrunError);
  assert.match(e.message, /h100/);
  assert.match(e.message, /a100 x4 \(40GB\)/);
  assert.match(e.message, /rtx4090 x2 \(24GB\)/);
  assert.match(e.message, /no GPU/);
  assert.equal(e.details.asked.type, 'h100');
  assert.equal(e.details.offered.length, 3);
  const more = await rejectsWith(sandrun.job().code('print(1)').gpu({ type: 'a100', count: 8 }).submit(), 'NO_MATCHING_WORKER', SandrunError);
  assert.match(more.message, /8/);
  const mem = await rejectsWith(sandrun.job().code('print(1)').gpu({ memory: '80GB' }).submit(), 'NO_MATCHING_WORKER', SandrunError);
  assert.match(mem.details.offered.find((o) => o.endpoint === W[0]).why, /40GB of memory/);
  // Any discover() criteria that match no node: the same code.
  const d = await rejectsWith(sandrun.pool().discover({ gpuType: 'h100' }).join(), 'NO_MATCHING_WORKER', SandrunError);
  assert.match(d.message, /discover\(/);
});

test('in a pool: replicas go only to matching workers; too few matches is NO_MATCHING_WORKER', async () => {
  const pool = await sandrun.pool().discover({}).join();
  assert.equal(pool.nodes.length, 3);
  const r = await (await sandrun.job().code('print("both")').gpu({ type: 'cuda' }).consensus('2-of-2').with(pool).submit()).wait();
  assert.equal(r.proof.consensus.reached, true);
  assert.deepEqual(r.proof.consensus.replicas.map((x) => x.worker).sort(), [W[0], W[1]].sort());
  assert.equal(r.placement.gpuChecked, true);
  const e = await rejectsWith(sandrun.job().code('print(1)').gpu({ type: 'a100' }).consensus('2-of-2').with(pool).submit(), 'NO_MATCHING_WORKER', SandrunError);
  assert.match(e.message, /2 workers/);
  // A quorum level without a pool discovers one from the registry and narrows it the same way.
  await rejectsWith(sandrun.job().code('print(1)').gpu({ type: 'rtx4090' }).consensus('2-of-3').submit(), 'NO_MATCHING_WORKER', SandrunError);
});

test('without a registry the GPU requirement is not checked, and the result says so', async () => {
  const bare = Sandrun.create({ apiEndpoint: W[2] });
  const r = await (await bare.job().code('print("sent anyway")').gpu({ type: 'a100' }).submit()).wait();
  assert.equal(r.worker, W[2]);
  assert.equal(r.placement.gpuChecked, false);
  assert.match(r.placement.detail, /NOT checked/);
  const est = await bare.job().code('print(1)').gpu({ type: 'a100' }).estimate();
  assert.equal(est.placement.checked, false);
  assert.equal(est.placement.gpuMet, undefined, 'not checked');
  assert.deepEqual(est.placement.workers, [W[2]]);
});

test('estimate() says where the job would run and whether its GPU requirements can be met', async () => {
  const ok = await sandrun.job().code('print(1)').gpu({ type: 'a100', memory: '40GB' }).estimate();
  assert.deepEqual(ok.placement.workers, [W[0]]);
  assert.equal(ok.placement.gpuMet, true);
  const no = await sandrun.job().code('print(1)').gpu({ type: 'h100' }).estimate();
  assert.equal(no.placement.gpuMet, false);
  assert.deepEqual(no.placement.workers, []);
  assert.match(no.placement.detail, /cannot be met/);
  assert.match(no.placement.detail, /a100/);
  // Plain Node has no WebGPU: the local estimate says so, it does not throw.
  assert.equal(ok.localGpu.available, false);
  assert.equal(ok.localGpu.canRun, false);
  assert.equal(ok.localGpu.reference.name, 'a100');
  const cpu = await sandrun.job().code('print(1)').estimate();
  assert.equal(cpu.placement.workers.length, 3);
  assert.equal(cpu.localGpu, undefined);
});

test('sandrun.gpu() without WebGPU: probe() says available: false, sha256 runs on the CPU', async () => {
  assert.equal(globalThis.navigator?.gpu, undefined);
  const g = Sandrun.create({}).gpu();
  const p = await g.probe();
  assert.equal(p.available, false);
  assert.match(p.reason, /navigator\.gpu/);
  const inputs = [new Uint8Array(0), new TextEncoder().encode('abc'), randomBytes(1000)];
  assert.deepEqual(await g.sha256(inputs), inputs.map(sha));
  assert.deepEqual(await g.sha256([]), []);
  await rejectsWith(g.sha256(['not bytes']), 'INVALID_ARGUMENT', SandrunError);
  assert.ok(g.types().some((t) => t.name === 'rtx4090' && t.fp32Tflops > 80));
});

// Inputs that exercise every padding case: NIST vectors, every length 0..200 (55, 56,
// 63, 64, 119, 120 ... at every alignment), block edges, random lengths.
function vectors() {
  const enc = new TextEncoder();
  const out = [enc.encode(''), enc.encode('abc'), enc.encode('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), new Uint8Array(1_000_000).fill(97)];
  for (let n = 0; n <= 200; n++) out.push(randomBytes(n));
  for (const n of [255, 256, 4095, 4096, 4097, 65_535]) out.push(randomBytes(n));
  for (let i = 0; i < 100; i++) out.push(randomBytes(Math.floor(Math.random() * 3000)));
  return out;
}

test('WebGPU in Node (npm webgpu on SwiftShader): kernels bit-exact, probe cached, proof checks on the GPU', async (t) => {
  if (!existsSync(SWIFTSHADER_ICD)) {
    t.skip(`no ${SWIFTSHADER_ICD} (Debian's chromium package; scripts/setup.sh --browser installs it)`);
    return;
  }
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  globalThis.navigator ??= {};
  globalThis.navigator.gpu = create([]);
  try {
    const client = Sandrun.create({ apiEndpoint: W[2], registryEndpoint: net.registry });
    const g = client.gpu();
    const p = await g.probe();
    assert.equal(p.available, true, p.reason);
    assert.equal(p.adapter.backend, 'webgpu');
    assert.equal(p.adapter.software, true, 'SwiftShader is a software GPU');
    assert.ok(p.throughput.sha256Mbps > 0 && p.throughput.fp32Gflops > 0 && p.throughput.cpuSha256Mbps > 0, JSON.stringify(p.throughput));
    assert.ok(p.limits.maxStorageBufferBindingSize >= 128 << 20);
    // Cached per client: no second calibration.
    const t0 = performance.now();
    assert.deepEqual(await g.probe(), p);
    assert.ok(performance.now() - t0 < 100);
    assert.equal(globalThis.Window, undefined, 'the loader removes its Window shim');

    const inputs = vectors();
    assert.deepEqual(await g.sha256(inputs), inputs.map(sha));

    // estimate() uses the probe: local GPU available, speed against the table.
    const est = await client.job().code('print(1)').gpu({ type: 'a100' }).estimate();
    assert.equal(est.localGpu.available, true);
    assert.equal(est.localGpu.software, true);
    assert.ok(est.localGpu.relativeSpeed > 0 && est.localGpu.relativeSpeed < 1, String(est.localGpu.relativeSpeed));

    // A software GPU is slower than the CPU: the measured rule never sends proofs there.
    assert.equal(p.throughput.proofThresholdBytes, undefined);
    const job = client.job().code('import os\nfor i in range(70): open(f"f{i}.bin", "wb").write(os.urandom(1000 + i))').outputs(['*.bin']);
    const cpuRun = await (await job.submit()).wait();
    assert.ok(cpuRun.proof.checks.filter((c) => c.name.startsWith('output:')).every((c) => c.ok && !/GPU/.test(c.detail)));
    // Forced: the same proof check hashes its 70 outputs in one GPU batch, and passes.
    g.proofThreshold(0);
    try {
      const gpuRun = await (await job.submit()).wait();
      const outs = gpuRun.proof.checks.filter((c) => c.name.startsWith('output:'));
      assert.equal(outs.length, 71, 'the 70 files and the signed stdout');
      assert.ok(outs.every((c) => c.ok && /hashed on the GPU/.test(c.detail)), JSON.stringify(outs[0]));
      assert.equal(gpuRun.proof.verified, true);
    } finally {
      g.proofThreshold(null);
    }
  } finally {
    delete globalThis.navigator.gpu;
  }
});
