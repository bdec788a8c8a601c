#!/usr/bin/env node
// Benchmark of @sandrun/wasm (pkg/), each figure against a baseline measured in the same run:
//   1. wasm size (raw, gzip -9, brotli q11) vs the same wasm before wasm-opt
//   2. Node init: a fresh `node` importing the package vs one importing node:zlib
//   3. tar.gz packing (MiB/s) of a 16 MiB compressible file through estimate() vs zlib.gzipSync level 1
//   4. submit -> result latency of print(1) through the SDK (consensus 'none' and 'low') vs
//      node:http requests written by hand, against the same devnet worker, samples interleaved.
//
// Usage: node bench/sdk.mjs [--devnet '<json line>'] [--samples 15] [--init-samples 15]
// Without --devnet it starts target/release/sandrun-devnet (or target/debug) itself.
// Needs pkg/ built (node scripts/build.mjs).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { root, pkgDir, entry, wasmPath, flag, now, median, needPackage } from './common.mjs';

const SAMPLES = Number(flag('--samples', 15));
const INIT_SAMPLES = Number(flag('--init-samples', 15));
const PACK_SAMPLES = 5;
const PACK_BYTES = 16 * 1024 * 1024;

needPackage('bench/sdk.mjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[sdk bench]', ...a);

// ---------------------------------------------------------------------------------------
// The devnet: given, or started here (killed on exit).
let devnetProc = null;
let devnetTmp = null;
function stopDevnet() {
  if (devnetProc && devnetProc.exitCode === null) devnetProc.kill('SIGTERM');
  devnetProc = null;
}
process.on('exit', () => {
  stopDevnet();
  if (devnetTmp) rmSync(devnetTmp, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

async function startDevnet() {
  const given = flag('--devnet', process.env.SANDRUN_DEVNET_JSON);
  if (given) return JSON.parse(given);
  const bin = [process.env.SANDRUN_DEVNET_BIN, path.join(root, 'target/release/sandrun-devnet'), path.join(root, 'target/debug/sandrun-devnet')]
    .find((p) => p && existsSync(p));
  if (!bin) throw new Error('no sandrun-devnet binary: run `cargo build --release -p sandrun-devnet`');
  // Resolve python3 through any shim (pyenv) once, as bench/devnet.sh does.
  const env = { ...process.env };
  try {
    const pydir = execFileSync('python3', ['-c', 'import os, sys; print(os.path.dirname(os.path.realpath(sys.executable)))'], { encoding: 'utf8' }).trim();
    env.PATH = `${pydir}:${env.PATH}`;
  } catch {}
  devnetTmp = mkdtempSync(path.join(os.tmpdir(), 'sdk-bench-'));
  devnetProc = spawn(bin, ['--workers', '3', '--json', '--no-rate-limit', '--data-dir', path.join(devnetTmp, 'data')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errText = '';
  devnetProc.stderr.on('data', (d) => { errText = (errText + d).slice(-4000); });
  return await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`devnet did not start within 30 s:\n${errText}`)), 30000);
    devnetProc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        try { resolve(JSON.parse(out.slice(0, nl))); } catch (e) { reject(e); }
      }
    });
    devnetProc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`devnet exited (${code}):\n${errText}`)); });
  }).then((info) => ({ ...info, bin }));
}

// ---------------------------------------------------------------------------------------
// 1. wasm size
function sizes(bytes) {
  return {
    raw: bytes.length,
    gzip: zlib.gzipSync(bytes, { level: 9 }).length,
    brotli: zlib.brotliCompressSync(bytes, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
    }).length,
  };
}

/** The same wasm without wasm-opt: wasm-bindgen run again on cargo's output (no cargo build). */
function unoptimizedWasm() {
  const cargoWasm = path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'wasm32-unknown-unknown/wasm/sandrun_wasm.wasm');
  if (!existsSync(cargoWasm)) return { why: 'no cargo wasm output' };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sdk-bench-wasm-'));
  try {
    execFileSync('wasm-bindgen', [cargoWasm, '--target', 'web', '--out-dir', dir, '--out-name', 'sandrun_wasm'], { stdio: 'pipe' });
    return { bytes: readFileSync(path.join(dir, 'sandrun_wasm_bg.wasm')) };
  } catch (e) {
    return { why: `wasm-bindgen failed: ${String(e.message).split('\n')[0]}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// 2. Node init: fresh processes, interleaved. The child also reports the import() alone.
function initSample(spec) {
  const code = `const t = performance.now(); await import(${JSON.stringify(spec)}); process.stdout.write(String(performance.now() - t));`;
  const t = now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
  const wall = now() - t;
  if (r.status !== 0) throw new Error(`node -e import(${spec}) failed: ${r.stderr}`);
  return { wall, inner: Number(r.stdout) };
}

// ---------------------------------------------------------------------------------------
// 3. packing data: repeating text with a counter (compressible, never identical lines).
function packData() {
  const buf = Buffer.alloc(PACK_BYTES);
  let off = 0;
  for (let i = 0; off < PACK_BYTES; i++) {
    off += buf.write(`${String(i).padStart(9, '0')} the quick brown fox jumps over the lazy dog ${(i * 2654435761) >>> 0}\n`, off);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

// ---------------------------------------------------------------------------------------
// 4. The by-hand client: ustar + gzip, multipart with canonical header names, node:http.
function ustar(files) {
  const blocks = [];
  for (const [name, data] of files) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function httpCall(base, method, p, headers = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(p, base), { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

async function handJob(base, code) {
  const tgz = zlib.gzipSync(ustar([['main.py', Buffer.from(code)]]), { level: 1 });
  const manifest = JSON.stringify({ entrypoint: 'main.py', interpreter: 'python3', args: [] });
  const B = `----sdkBench${Math.random().toString(16).slice(2)}`;
  const body = Buffer.concat([
    Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="files"; filename="job.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n`),
    tgz,
    Buffer.from(`\r\n--${B}\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n${manifest}\r\n--${B}--\r\n`),
  ]);
  const sub = await httpCall(base, 'POST', '/submit', { 'Content-Type': `multipart/form-data; boundary=${B}`, 'Content-Length': String(body.length) }, body);
  if (sub.status !== 200) throw new Error(`hand submit: ${sub.status} ${sub.body}`);
  const id = JSON.parse(sub.body).job_id;
  let st;
  for (;;) {
    const r = await httpCall(base, 'GET', `/status/${id}`);
    st = JSON.parse(r.body).status;
    if (st === 'completed' || st === 'failed') break;
    await sleep(20);
  }
  const logs = JSON.parse((await httpCall(base, 'GET', `/logs/${id}`)).body);
  return { status: st, stdout: logs.stdout };
}

// ---------------------------------------------------------------------------------------
const rows = [];
const notes = [];
const fmt = (x, d = 1) => (typeof x === 'number' ? x.toFixed(d) : x);
const row = (metric, sdk, base, d = 1, ratio) =>
  rows.push([metric, fmt(sdk, d), fmt(base, d), ratio ?? (typeof sdk === 'number' && typeof base === 'number' ? `${(sdk / base).toFixed(2)}x` : '-')]);

const t0 = now();

// 1. wasm size
{
  const sdk = sizes(readFileSync(wasmPath));
  const un = unoptimizedWasm();
  const base = un.bytes ? sizes(un.bytes) : null;
  if (!base) notes.push(`wasm size baseline unavailable (${un.why})`);
  for (const k of ['raw', 'gzip', 'brotli']) {
    const label = { raw: 'raw', gzip: 'gzip -9', brotli: 'brotli q11' }[k];
    row(`wasm size, ${label} (KiB)`, sdk[k] / 1024, base ? base[k] / 1024 : '-');
  }
  log(`sizes done (${fmt(now() - t0, 0)} ms)`);
}

// 2. Node init
{
  const pkgUrl = pathToFileURL(entry).href;
  initSample(pkgUrl); initSample('node:zlib'); // warm the page cache
  const sdk = [], base = [];
  for (let i = 0; i < INIT_SAMPLES; i++) {
    if (i % 2) { sdk.push(initSample(pkgUrl)); base.push(initSample('node:zlib')); }
    else { base.push(initSample('node:zlib')); sdk.push(initSample(pkgUrl)); }
  }
  row(`Node init, fresh \`node -e\` + import(), median of ${INIT_SAMPLES} (ms)`, median(sdk.map((s) => s.wall)), median(base.map((s) => s.wall)));
  row(`Node init, the import() alone inside it (ms)`, median(sdk.map((s) => s.inner)), median(base.map((s) => s.inner)), 2);
  log(`init done (${fmt(now() - t0, 0)} ms)`);
}

const { Sandrun } = await import(pathToFileURL(entry).href);

// 3. packing
{
  const data = packData();
  const s = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9', defaults: { consensus: 'none' } });
  const sdkOnce = async () => {
    const tb = now();
    const b = s.job().code('print(1)').file('data.bin', data);
    const te = now();
    const e = await b.estimate();
    const t = now();
    b.free?.();
    return { estimate: t - te, chain: t - tb, bytes: e.uploadBytes };
  };
  const baseOnce = () => {
    const t = now();
    const out = zlib.gzipSync(data, { level: 1 });
    return { ms: now() - t, bytes: out.length };
  };
  await sdkOnce(); baseOnce(); // warm-up
  const sdk = [], base = [];
  for (let i = 0; i < PACK_SAMPLES; i++) { sdk.push(await sdkOnce()); base.push(baseOnce()); }
  const mib = PACK_BYTES / 1048576;
  row(`tar.gz packing 16 MiB, estimate() vs gzipSync(level 1), median of ${PACK_SAMPLES} (MiB/s, higher is better)`,
    mib / (median(sdk.map((x) => x.estimate)) / 1000), mib / (median(base.map((x) => x.ms)) / 1000));
  row(`same, job().code().file().estimate() incl. copying into wasm (MiB/s)`,
    mib / (median(sdk.map((x) => x.chain)) / 1000), mib / (median(base.map((x) => x.ms)) / 1000));
  row(`packed size of the 16 MiB file (KiB)`, sdk[0].bytes / 1024, base[0].bytes / 1024);
  log(`packing done (${fmt(now() - t0, 0)} ms)`);
}

// 4. latency
let devnet;
try {
  devnet = await startDevnet();
} catch (e) {
  console.error(`bench/sdk.mjs: ${e.message}`);
  process.exit(1);
}
{
  const url = devnet.workers[0].url;
  const sdkNone = Sandrun.create({ apiEndpoint: url, defaults: { consensus: 'none' } });
  const sdkLow = Sandrun.create({ apiEndpoint: url, defaults: { consensus: 'low' } });
  const candidates = [];
  const viaSdk = async (s, verify) => {
    const t = now();
    const r = await (await s.job().code('print(1)').submit()).wait();
    const ms = now() - t;
    if (r.status !== 'completed' || r.stdout !== '1\n') throw new Error(`SDK job: ${r.status} ${JSON.stringify(r.stdout)}`);
    if (verify) {
      if (!r.proof?.verified) throw new Error(`SDK 'low' result not verified: ${JSON.stringify(r.proof)}`);
      const m = /\((\d+) candidate/.exec(r.proof.checks.find((c) => c.name === 'signature')?.detail ?? '');
      if (m) candidates.push(Number(m[1]));
    }
    return ms;
  };
  const byHand = async () => {
    const t = now();
    const r = await handJob(url, 'print(1)');
    const ms = now() - t;
    if (r.status !== 'completed' || r.stdout !== '1\n') throw new Error(`hand job: ${r.status} ${JSON.stringify(r.stdout)}`);
    return ms;
  };
  await byHand(); await viaSdk(sdkNone, false); await viaSdk(sdkLow, true); // warm-up
  candidates.length = 0;
  const base = [], none = [], low = [];
  const kinds = [[base, () => byHand()], [none, () => viaSdk(sdkNone, false)], [low, () => viaSdk(sdkLow, true)]];
  for (let i = 0; i < SAMPLES; i++) {
    for (let k = 0; k < 3; k++) {
      const [xs, f] = kinds[(i + k) % 3]; // rotate the order so drift hits all three alike
      xs.push(await f());
    }
  }
  const b = median(base);
  row(`submit -> result, print(1), SDK consensus 'none', median of ${SAMPLES} (ms)`, median(none), b);
  row(`submit -> result, print(1), SDK consensus 'low', median of ${SAMPLES} (ms)`, median(low), b);
  notes.push(`latency baseline: node:http by hand (ustar+gzip, multipart, POST /submit, GET /status every 20 ms, GET /logs), same worker ${url}` +
    ` (${path.relative(root, devnet.bin ?? '') || 'given devnet'}); samples min/max: hand ${fmt(Math.min(...base))}/${fmt(Math.max(...base))},` +
    ` none ${fmt(Math.min(...none))}/${fmt(Math.max(...none))}, low ${fmt(Math.min(...low))}/${fmt(Math.max(...low))} ms`);
  if (candidates.length) {
    notes.push(`'low' signature check: CPU-seconds candidates tried per job, median ${median(candidates)} (min ${Math.min(...candidates)}, max ${Math.max(...candidates)})`);
  }
  log(`latency done (${fmt(now() - t0, 0)} ms)`);
}
stopDevnet();

// ---------------------------------------------------------------------------------------
const header = ['metric', 'SDK', 'baseline', 'SDK/baseline'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
console.log(`@sandrun/wasm benchmark: node ${process.version}, ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}`.trim());
console.log('Baselines: wasm before wasm-opt; `node -e import("node:zlib")`; zlib.gzipSync level 1; node:http by hand.');
console.log();
console.log(line(header));
console.log(`|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|')}|`);
for (const r of rows) console.log(line(r));
console.log();
for (const n of notes) console.log(`- ${n}`);
console.log(`- total ${fmt((now() - t0) / 1000)} s`);
