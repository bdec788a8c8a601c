// The browser host: fetch and WebSocket. Only CORS-simple requests reach a reference
// Sandrun worker (it answers no preflight), so nothing here adds headers of its own.
import { makeError, hostFailure } from './errors.js';

const FORBIDDEN = new Set(['content-length', 'host', 'connection']);

/** setTimeout fires at once past 2^31-1 ms: never arm more than that. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const clampMs = (ms) => Math.max(0, Math.min(Number(ms) || 0, MAX_TIMER_MS));

function request(method, url, headers, body, timeoutMs, maxBytes = 16 * 1024 * 1024) {
  const ctrl = new AbortController();
  const promise = send(ctrl, method, url, headers, body, timeoutMs, maxBytes);
  promise.catch(() => {});
  return { promise, cancel: () => ctrl.abort() };
}

async function send(ctrl, method, url, headers, body, timeoutMs, maxBytes) {
  // A total deadline: the abort also stops a body that drips forever.
  const timer = timeoutMs > 0 ? setTimeout(() => ctrl.abort(), clampMs(timeoutMs)) : undefined;
  let tooLarge = false;
  try {
    // Pairs, not a Headers object: Chromium lowercases names set on a Headers object,
    // and a reference worker reads only `Content-Type` spelled exactly so.
    const h = [];
    for (const [k, v] of headers) if (!FORBIDDEN.has(k.toLowerCase())) h.push([k, v]);
    // A request carrying credentials (authPlugin) must not be redirected by the browser:
    // fetch keeps headers such as X-API-Key across origins. The SDK follows the redirects
    // it needs itself, each hop as a request of its own that middleware sees.
    const credentials = h.some(([k]) => /^(authorization|x-api-key)$/i.test(k));
    const res = await fetch(url, { method, headers: h, body: method === 'GET' ? undefined : body, signal: ctrl.signal, redirect: credentials ? 'manual' : 'follow' });
    if (res.type === 'opaqueredirect') throw hostFailure('network', `${method} ${url}: answered a redirect, which a request carrying credentials does not follow in a browser (the browser would send them to the new origin)`);
    // Read the body piece by piece and stop past the cap, instead of arrayBuffer(),
    // which would hold an endless body until memory runs out.
    const declared = Number(res.headers.get('content-length'));
    if (Number.isFinite(declared) && declared > maxBytes) { tooLarge = true; ctrl.abort(); }
    const parts = [];
    let size = 0;
    if (!tooLarge && res.body) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.length;
        if (size > maxBytes) { tooLarge = true; ctrl.abort(); break; }
        parts.push(value);
      }
    }
    if (tooLarge) throw new Error('too large');
    const buf = new Uint8Array(size);
    let at = 0;
    for (const p of parts) { buf.set(p, at); at += p.length; }
    return { status: res.status, headers: [...res.headers.entries()], body: buf };
  } catch (e) {
    if (tooLarge) throw hostFailure('too_large', `${method} ${url}: the answer is larger than ${maxBytes} bytes; stopped reading (a broken or hostile server)`);
    if (ctrl.signal.aborted) throw hostFailure('timeout', `${method} ${url}: no answer within ${timeoutMs} ms`);
    throw hostFailure('network', `${method} ${url}: ${e.message} (server down, or blocked by CORS)`);
  } finally {
    clearTimeout(timer);
  }
}

function websocket(url, upgradeTimeoutMs = 10_000, maxFrameBytes = 16 * 1024 * 1024) {
  if (typeof WebSocket === 'undefined') return Promise.resolve(null);
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    const frames = [];
    const waiters = [];
    let closed = false;
    let queued = 0;
    // An upgrade that never comes: no socket, and the SDK polls /status instead.
    const upgradeTimer = setTimeout(() => { ws.close(); resolve(null); }, clampMs(upgradeTimeoutMs));
    const end = () => { if (!closed) { closed = true; const w = waiters.shift(); if (w) w(null); else frames.push(null); while (waiters.length) waiters.shift()(null); } };
    const push = (v) => {
      const w = waiters.shift();
      if (w) return w(v);
      frames.push(v);
      queued += v.length;
      if (queued > maxFrameBytes) { ws.close(); end(); }
    };
    // The browser assembles a frame before we see it; one over the cap closes the
    // socket (and the SDK reads the rest from /status and /logs).
    ws.onmessage = (ev) => {
      const text = typeof ev.data === 'string' ? ev.data : '';
      if (text.length > maxFrameBytes) { ws.close(); end(); return; }
      push(text);
    };
    ws.onclose = () => { clearTimeout(upgradeTimer); end(); };
    ws.onerror = () => { if (ws.readyState !== WebSocket.OPEN) { clearTimeout(upgradeTimer); resolve(null); } };
    ws.onopen = () => { clearTimeout(upgradeTimer); resolve({
      next: () => new Promise((r) => { if (frames.length) { const v = frames.shift(); if (v) queued -= v.length; r(v); } else if (closed) r(null); else waiters.push(r); }),
      send: (t) => { if (ws.readyState === WebSocket.OPEN) ws.send(t); },
      close: () => ws.close(),
    }); };
  });
}

// No `gzip` here: CompressionStream takes no level (zlib's default, 6) and measured 1.2-2.4x
// slower than the SDK's own level-1 deflate in wasm in Chromium (bench/pack-browser.mjs;
// docs/decisions.md), so browsers keep the Rust path.

const unsupported = (what) => () => Promise.reject(hostFailure('unsupported', `${what} is not available in browsers; use a URL with script(), or download() instead of downloadTo()`));
const unsupportedOp = (what) => () => ({ promise: unsupported(what)(), cancel: () => {} });

export const browserHost = {
  request,
  websocket,
  requestToFile: unsupportedOp('writing downloads to local files'),
  timer: (ms) => { let id; const promise = new Promise((r) => { id = setTimeout(r, clampMs(ms)); }); return { promise, cancel: () => clearTimeout(id) }; },
  now: () => performance.now(),
  lstat: unsupported('inspecting local paths'),
  makeDir: unsupported('creating local directories'),
  writeNewFile: unsupported('writing local files'),
  commitFile: unsupported('writing local files'),
  removeFile: unsupported('removing local files'),
  readFile: unsupported('reading local files'),
  readDir: unsupported('listing local directories'),
  writeFile: unsupported('writing local files'),
  // SHA-256 on the verification path (src/platform/js.rs `sha256`): WebCrypto, a Promise
  // of the raw digest; digest() copies `bytes` (a view of wasm memory) before returning.
  // Absent outside a secure context (no crypto.subtle): the SDK hashes in wasm then.
  sha256Digest: globalThis.crypto?.subtle ? (bytes) => globalThis.crypto.subtle.digest('SHA-256', bytes) : undefined,
  makeError,
};
