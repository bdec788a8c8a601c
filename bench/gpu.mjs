// npm run bench (GPU section): batch SHA-256 on the same data three ways, and the two
// wasm modules' sizes.
//
//   node bench/gpu.mjs [--messages N] [--size BYTES]
//
// - gpu:    sandrun.gpu().sha256() through WebGPU (the npm package `webgpu`, i.e. Dawn, on
//           Vulkan; here Chromium's SwiftShader driver unless VK_ICD_FILENAMES says
//           otherwise). A software GPU is labelled as such: its figures say nothing about
//           real GPUs.
// - wasm:   Rust's sha2 compiled to wasm (the GPU module's CPU path, sha256Cpu).
// - native: node:crypto (OpenSSL), the baseline every ratio is against.
// Every digest is checked equal across the three before any time is printed.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const messages = arg('--messages', 2048);
const size = arg('--size', 4096);

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
process.env.VK_ICD_FILENAMES ??= existsSync(ICD) ? ICD : undefined;
let webgpu = 'no';
try {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  globalThis.navigator ??= {};
  globalThis.navigator.gpu = create([]);
  webgpu = 'yes';
} catch (e) {
  console.error(`(no WebGPU in Node: ${e.message}; the gpu row falls back to the CPU and says so)`);
}

const { Sandrun } = await import('@sandrun/wasm');
const gpuMod = await import(join(root, 'pkg/gpu/sandrun_gpu.js'));
gpuMod.initSync({ module: readFileSync(join(root, 'pkg/gpu/sandrun_gpu_bg.wasm')) });

const data = Array.from({ length: messages }, () => randomBytes(size));
const mb = (messages * size) / 1e6;

async function time(fn, reps = 3) {
  let best = Infinity;
  let out;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    out = await fn();
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, out };
}

const g = Sandrun.create({}).gpu();
const probe = await g.probe();
const native = await time(async () => data.map((b) => createHash('sha256').update(b).digest('hex')));
const wasm = await time(async () => gpuMod.sha256Cpu(data));
const gpu = await time(() => g.sha256(data));
for (const [name, r] of [['wasm', wasm], ['gpu', gpu]]) {
  if (JSON.stringify(r.out) !== JSON.stringify(native.out)) throw new Error(`${name} digests differ from node:crypto`);
}

const a = probe.adapter;
const gpuLabel = !probe.available
  ? `CPU fallback (no WebGPU: ${probe.reason})`
  : `${a.software ? 'SOFTWARE GPU ' : ''}${a.name || a.vendor || 'GPU'} via WebGPU${a.software ? ' (a CPU emulating a GPU: not a GPU figure)' : ''}`;
const row = (what, r) => `| ${what} | ${r.ms.toFixed(1)} | ${(mb / (r.ms / 1000)).toFixed(1)} | ${(native.ms / r.ms).toFixed(2)}x |`;
console.log(`Batch SHA-256: ${messages} messages x ${size} bytes (${mb.toFixed(1)} MB), best of 3, digests identical across rows.`);
console.log();
console.log('| engine | ms | MB/s | vs native |');
console.log('| --- | ---: | ---: | ---: |');
console.log(row(`gpu: ${gpuLabel}`, gpu));
console.log(row('wasm: sha2 crate in wasm (GPU module CPU path)', wasm));
console.log(row('native: node:crypto (OpenSSL)', native));
if (probe.available) {
  const t = probe.throughput;
  console.log();
  console.log(
    `probe(): sha256 ${t.sha256Mbps.toFixed(1)} MB/s (batch of ${t.sha256Batch} x 4 KiB), dispatch ${t.dispatchMs.toFixed(2)} ms, FP32 ${t.fp32Gflops.toFixed(1)} GFLOP/s; ` +
      `platform hash ${t.cpuSha256Mbps?.toFixed(1)} MB/s; proof threshold: ${t.proofThresholdBytes ? `${(t.proofThresholdBytes / 1e6).toFixed(1)} MB` : 'never (the GPU is slower than the CPU here)'}`,
  );
}
const gz = (p) => gzipSync(readFileSync(join(root, p)), { level: 9 }).length;
const size_ = (p) => readFileSync(join(root, p)).length;
console.log();
console.log('| module | bytes | gzip -9 |');
console.log('| --- | ---: | ---: |');
console.log(`| core: pkg/sandrun_wasm_bg.wasm (every user) | ${size_('pkg/sandrun_wasm_bg.wasm')} | ${gz('pkg/sandrun_wasm_bg.wasm')} |`);
console.log(`| GPU: pkg/gpu/sandrun_gpu_bg.wasm (loaded on first gpu() use, where WebGPU exists) | ${size_('pkg/gpu/sandrun_gpu_bg.wasm')} | ${gz('pkg/gpu/sandrun_gpu_bg.wasm')} |`);
console.log();
console.log(`WebGPU in Node: ${webgpu}; VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? '(unset)'}`);
process.exit(0);
