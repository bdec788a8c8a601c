#!/usr/bin/env node
// Trust benchmarks of @sandrun/wasm, each against a baseline measured in the same run:
//   1. Ed25519 verifications/s in wasm vs Node's native crypto.verify, same inputs
//   2. the CPU candidate search of a signature that matches no candidate (10,001 tried)
//   3. SHA-256 MB/s in wasm vs Node's native crypto, same bytes
//   4. end-to-end time of a 2-of-3 job vs a single unverified job, same devnet
// Usage: node bench/trust.mjs   (needs pkg/ built and a devnet binary; starts its own devnet)
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandrun, verifyEd25519, verifyWorkerStatus, sha256Hex } from '@sandrun/wasm';
import { startDevnet } from '../tests/js/support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vectors = JSON.parse(readFileSync(join(root, 'tests/fixtures/signature-vectors.json'), 'utf8')).vectors;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = (f) => { const t = performance.now(); f(); return performance.now() - t; };
const rows = [];
const row = (metric, sdk, base, unit, higherBetter) => rows.push({ metric: `${metric} (${unit})`, sdk, base, ratio: sdk / base, higherBetter });

// 1. Ed25519
const inputs = vectors.map((v) => {
  const id = v.status.worker_metadata.worker_id;
  const sig = v.status.worker_metadata.signature;
  const msg = new TextEncoder().encode(v.signed_string);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(id, 'base64').toString('base64url') }, format: 'jwk' });
  return { id, sig, msg, key, sigBytes: Buffer.from(sig, 'base64') };
});
const N = 3000;
for (const i of inputs) if (!verifyEd25519(i.id, i.sig, i.msg) || !nodeVerify(null, i.msg, i.key, i.sigBytes)) throw new Error('vector does not verify');
const wasmMs = median([0, 1, 2].map(() => time(() => { for (let n = 0; n < N; n++) { const i = inputs[n % inputs.length]; verifyEd25519(i.id, i.sig, i.msg); } })));
const nodeMs = median([0, 1, 2].map(() => time(() => { for (let n = 0; n < N; n++) { const i = inputs[n % inputs.length]; nodeVerify(null, i.msg, i.key, i.sigBytes); } })));
row('Ed25519 verifications/s, wasm vs node:crypto', N / wasmMs * 1000, N / nodeMs * 1000, '/s', true);

// 2. Candidate search: a signature that verifies for no candidate tries all 10,001.
const bad = structuredClone(vectors[0].status);
const raw = Buffer.from(bad.worker_metadata.signature, 'base64');
raw[32] ^= 1; // S stays canonical, so every candidate is really tried
bad.worker_metadata.signature = raw.toString('base64');
const badJson = JSON.stringify(bad);
const searchMs = median([0, 1, 2].map(() => time(() => { try { verifyWorkerStatus(badJson); } catch (e) { if (e.code !== 'VERIFICATION_FAILED') throw e; } })));
const oneMs = median([0, 1, 2].map(() => time(() => { for (let n = 0; n < 100; n++) verifyEd25519(inputs[0].id, inputs[0].sig, inputs[0].msg); }))) / 100;
row('candidate search, 10,001 candidates, vs 10,001 plain verifies in wasm', searchMs, oneMs * 10001, 'ms', false);
const realMs = median([0, 1, 2].map(() => time(() => verifyWorkerStatus(JSON.stringify(vectors[1].status)))));
const exactMs = median([0, 1, 2].map(() => time(() => { for (let n = 0; n < 100; n++) verifyWorkerStatus(JSON.stringify(vectors[1].status), Number(vectors[1].exact_cpu_string)); }))) / 100;
row(`real vector, ${vectors[1].distinct_candidates_tried} candidates, vs exact CPU from [DONE]`, realMs, exactMs, 'ms', false);

// 3. SHA-256
const bytes = new Uint8Array(16 * 1024 * 1024).map((_, i) => (i * 31 + (i >> 11)) & 255);
sha256Hex(bytes.subarray(0, 1024));
const shaWasm = median([0, 1, 2].map(() => time(() => sha256Hex(bytes))));
const shaNode = median([0, 1, 2].map(() => time(() => createHash('sha256').update(bytes).digest('hex'))));
if (sha256Hex(bytes) !== createHash('sha256').update(bytes).digest('hex')) throw new Error('sha256 mismatch');
row('SHA-256 of 16 MiB, wasm vs node:crypto', 16 / shaWasm * 1000, 16 / shaNode * 1000, 'MiB/s', true);

// 4. End to end
const net = await startDevnet(['--workers', '3', '--no-rate-limit']);
try {
  const sandrun = Sandrun.create({ apiEndpoint: net.workers[0].url });
  const pool = await sandrun.pool().nodes(net.workers.map((w) => w.url)).consensus('2-of-3').join();
  const code = 'print(sum(range(1000)))';
  const single = [];
  const quorum = [];
  for (let n = 0; n < 8; n++) {
    let t = performance.now();
    const a = await sandrun.job().code(code).consensus('none').submit().then((e) => e.wait());
    single.push(performance.now() - t);
    t = performance.now();
    const b = await sandrun.job().code(code).with(pool).submit().then((e) => e.wait());
    quorum.push(performance.now() - t);
    if (a.stdout !== '499500\n' || !b.proof.consensus.reached) throw new Error('wrong result');
  }
  row('2-of-3 verified job vs a single unverified job, median of 8', median(quorum), median(single), 'ms', false);
} finally {
  await net.stop();
}

const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
console.log(`@sandrun/wasm trust benchmark: node ${process.version}`);
console.log('| metric | SDK | baseline | SDK/baseline |');
console.log('| --- | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.metric} | ${fmt(r.sdk)} | ${fmt(r.base)} | ${r.ratio.toFixed(2)}x |`);
