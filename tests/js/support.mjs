// Test support: start a real devnet (the sandrun-devnet binary) and talk to its
// devnet-only admin endpoints. Nothing here fakes a Sandrun worker.
import { spawn } from 'node:child_process';
import { mkdtempSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** The devnet binary: $SANDRUN_DEVNET_BIN, else the newer of the release and debug builds. */
export function devnetBin() {
  if (process.env.SANDRUN_DEVNET_BIN) return process.env.SANDRUN_DEVNET_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  const built = [join(target, 'release/sandrun-devnet'), join(target, 'debug/sandrun-devnet')].filter((p) => existsSync(p));
  const bin = built.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!bin) throw new Error('sandrun-devnet is not built: run `cargo build -p sandrun-devnet` (npm test does)');
  return bin;
}

/** Start a devnet; resolves with its JSON line plus `stop()`. */
export async function startDevnet(args = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandrun-devnet-'));
  const child = spawn(devnetBin(), ['--json', '--data-dir', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`devnet did not start in 60 s:\n${stderr}`)), 60_000);
    rl.once('line', (l) => { clearTimeout(timer); resolve(l); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`devnet exited with ${code}:\n${stderr}`)); });
  });
  const net = JSON.parse(line);
  net.dataDir = dataDir;
  net.stderr = () => stderr;
  net.stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  return net;
}

async function admin(url, path, body) {
  const res = await fetch(`${url}/_devnet/${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
  if (!res.ok) throw new Error(`admin ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Set (or clear with null) a worker's fault mode at run time. */
export const setFault = (url, mode) => admin(url, 'fault', { mode });
/** How many jobs a worker ever accepted (proves a retry did not submit twice). */
export const acceptedJobs = async (url) => (await admin(url, 'jobs')).accepted;

/** Expect a promise (or a function's throw) to fail with a SandrunError of `code`. */
export async function rejectsWith(fnOrPromise, code, SandrunError) {
  try {
    await (typeof fnOrPromise === 'function' ? fnOrPromise() : fnOrPromise);
  } catch (e) {
    if (!(e instanceof SandrunError)) throw new Error(`expected a SandrunError ${code}, got ${e?.stack ?? e}`);
    if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`expected a SandrunError ${code}, but it succeeded`);
}

/**
 * A real forwarding HTTP proxy on loopback in front of `target` (a worker or registry),
 * for tests that must see or alter what crosses the wire. Header names are forwarded as
 * sent (a reference worker matches them case-sensitively). `log` collects every request
 * `{ method, url, headers }` (lowercased names); `rewrite(path, text)` may alter JSON
 * answers (a lying worker in front of an honest one). WebSocket upgrades are refused,
 * so the SDK falls back to polling. Resolves with `{ url, close() }`.
 */
export async function forwardingProxy(target, { log, rewrite } = {}) {
  const http = await import('node:http');
  const t = new URL(target);
  const s = http.createServer((req, res) => {
    log?.push({ at: performance.now(), method: req.method, url: req.url, headers: req.headers });
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const headers = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() !== 'host') headers[req.rawHeaders[i]] = req.rawHeaders[i + 1];
      headers.Host = t.host;
      // agent: false, one connection per request: a reference worker (and the devnet)
      // closes the socket after each answer without saying so, and Node 20's keep-alive
      // global agent would reuse a socket the server has just closed ("socket hang up").
      const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers, agent: false }, (ur) => {
        const body = [];
        ur.on('data', (c) => body.push(c));
        ur.on('end', () => {
          let out = Buffer.concat(body);
          if (rewrite && /json/.test(ur.headers['content-type'] ?? '')) out = Buffer.from(rewrite(req.url, out.toString('latin1')), 'latin1');
          res.writeHead(ur.statusCode, { ...ur.headers, 'content-length': String(out.length) }).end(out);
        });
      });
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(chunks));
    });
  });
  s.on('upgrade', (req, socket) => socket.destroy());
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${s.address().port}`, close: () => s.close() };
}

/** Wei spent on gas by these transactions, read from their receipts with a viem client. */
export async function gasPaid(pub, hashes) {
  let total = 0n;
  for (const h of hashes) {
    const r = await pub.getTransactionReceipt({ hash: h });
    total += r.gasUsed * r.effectiveGasPrice;
  }
  return total;
}

/**
 * Wait until `cond()` (sync or async) is truthy, checking every `everyMs`, and resolve
 * with its value; after `timeoutMs` fail saying `what` did not happen (and, if given,
 * `detail()`). Tests wait on the event they need, not on a fixed sleep: on a loaded
 * machine the event may come later than any fixed window.
 */
export async function waitFor(what, cond, { timeoutMs = 30_000, everyMs = 20, detail } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() >= until) throw new Error(`waited ${timeoutMs} ms for ${what}; it did not happen${detail ? `: ${await detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Bytes without a period (xorshift32), so every 256 KiB IPFS chunk differs; also as
 * source, for pages to build the same bytes. */
export const noiseSrc = `(n, seed = 1) => { const o = new Uint8Array(n); let x = seed >>> 0 || 1; for (let i = 0; i < n; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; o[i] = x & 255; } return o; }`;
export const noise = (0, eval)(noiseSrc);

/** What the IPFS node itself answers for `files` (Kubo RPC from Node, no SDK involved). */
export async function nodeAdd(api, files, query) {
  const form = new FormData();
  const dirs = new Set();
  for (const p of Object.keys(files)) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of [...dirs].sort()) form.append('file', new Blob([], { type: 'application/x-directory' }), encodeURIComponent(d));
  for (const [p, b] of Object.entries(files)) form.append('file', new Blob([b]), encodeURIComponent(p));
  const res = await fetch(`${api}/api/v0/add?${query}`, { method: 'POST', body: form });
  if (res.status !== 200) throw new Error(`the IPFS node answered HTTP ${res.status} to add: ${await res.text()}`);
  return (await res.text()).trim().split('\n').map((l) => JSON.parse(l));
}
