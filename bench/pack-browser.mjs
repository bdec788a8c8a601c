#!/usr/bin/env node
// Packing in Chromium: `estimate()` of a job with one input file, packed the way the browser
// host does it (tar + deflate level 1 in wasm: the browser host has no `gzip`), vs the
// browser's CompressionStream('gzip') alone on the same bytes (no tar, zlib's default level,
// as it takes none): the measurement that kept browsers on the Rust path.
// Text (compresses about 7x) and random bytes (does not), 1, 4 and 16 MiB; median of 5;
// also the longest main-thread stall during one pack (a 1 ms interval's largest gap).
//
//   node bench/pack-browser.mjs        (needs pkg/ built and /usr/bin/chromium, or $CHROMIUM)
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const server = createServer(async (req, res) => {
  if (req.url === '/') { res.setHeader('content-type', 'text/html'); return res.end('<!doctype html><title>pack</title>'); }
  try {
    const p = path.join(root, 'pkg', path.normalize(decodeURIComponent(req.url.replace(/^\/pkg\//, ''))));
    const b = await readFile(p);
    res.setHeader('content-type', p.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
    res.end(b);
  } catch { res.statusCode = 404; res.end(); }
}).listen(0, '127.0.0.1');
await new Promise((r) => server.on('listening', r));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const rows = await page.evaluate(async () => {
    const sdk = await import('/pkg/index.browser.js');
    await sdk.default();
    const s = sdk.Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9', defaults: { consensus: 'none' } });
    const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const enc = new TextEncoder();
    const make = (n, kind) => {
      const d = new Uint8Array(n);
      if (kind === 'random') { for (let i = 0; i < n; i += 65536) crypto.getRandomValues(d.subarray(i, Math.min(n, i + 65536))); return d; }
      let off = 0;
      for (let i = 0; off < n; i++) {
        const l = enc.encode(`${String(i).padStart(9, '0')} the quick brown fox jumps over the lazy dog ${(i * 2654435761) >>> 0}\n`);
        const k = Math.min(l.length, n - off);
        d.set(l.subarray(0, k), off); off += k;
      }
      return d;
    };
    const stall = async (f) => {
      let last = performance.now(), max = 0;
      const id = setInterval(() => { const t = performance.now(); max = Math.max(max, t - last); last = t; }, 1);
      await f();
      max = Math.max(max, performance.now() - last);
      clearInterval(id);
      return max;
    };
    const pack = async (data) => {
      const ts = [];
      let bytes = 0, stallMs = 0;
      for (let i = 0; i < 5; i++) {
        const b = s.job().code('print(1)').file('data.bin', data);
        const t = performance.now();
        if (i === 0) stallMs = await stall(async () => { bytes = (await b.estimate()).uploadBytes; });
        else bytes = (await b.estimate()).uploadBytes;
        ts.push(performance.now() - t);
      }
      return { ms: Math.round(med(ts)), KiB: Math.round(bytes / 1024), stallMs: Math.round(stallMs) };
    };
    const CS = globalThis.CompressionStream;
    const out = [];
    for (const kind of ['text', 'random']) {
      for (const mib of [1, 4, 16]) {
        const data = make(mib << 20, kind);
        const rust = await pack(data);
        const raw = [];
        let rawKiB = 0;
        for (let i = 0; i < 5; i++) {
          const t = performance.now();
          const c = new CS('gzip'); const w = c.writable.getWriter(); w.write(data); w.close();
          rawKiB = Math.round((await new Response(c.readable).arrayBuffer()).byteLength / 1024);
          raw.push(performance.now() - t);
        }
        out.push({ input: `${mib} MiB ${kind}`, rust, compressionStreamMs: Math.round(med(raw)), compressionStreamKiB: rawKiB, compressionStreamVsSdk: +(med(raw) / rust.ms).toFixed(2) });
      }
    }
    return out;
  });
  console.log('| input | SDK estimate() (tar + deflate level 1 in wasm): ms, KiB, stall ms | CompressionStream alone: ms, KiB | CompressionStream time / SDK time |');
  console.log('|---|---|---|---|');
  for (const r of rows) {
    const f = (x) => `${x.ms}, ${x.KiB}, ${x.stallMs}`;
    console.log(`| ${r.input} | ${f(r.rust)} | ${r.compressionStreamMs}, ${r.compressionStreamKiB} | ${r.compressionStreamVsSdk} |`);
  }
} finally {
  await browser.close();
  server.close();
}
