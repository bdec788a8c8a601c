// The browser host: fetch and WebSocket. Only CORS-simple requests reach a reference
// Sandrun worker (it answers no preflight), so nothing here adds headers of its own.
import { makeError, hostFailure } from './errors.js';

const FORBIDDEN = new Set(['content-length', 'host', 'connection']);

function request(method, url, headers, body, timeoutMs) {
  const ctrl = new AbortController();
  const promise = send(ctrl, method, url, headers, body, timeoutMs);
  promise.catch(() => {});
  return { promise, cancel: () => ctrl.abort() };
}

async function send(ctrl, method, url, headers, body, timeoutMs) {
  const timer = timeoutMs > 0 ? setTimeout(() => ctrl.abort(), timeoutMs) : undefined;
  try {
    // Pairs, not a Headers object: Chromium lowercases names set on a Headers object,
    // and a reference worker reads only `Content-Type` spelled exactly so.
    const h = [];
    for (const [k, v] of headers) if (!FORBIDDEN.has(k.toLowerCase())) h.push([k, v]);
    const res = await fetch(url, { method, headers: h, body: method === 'GET' ? undefined : body, signal: ctrl.signal });
    const buf = new Uint8Array(await res.arrayBuffer());
    return { status: res.status, headers: [...res.headers.entries()], body: buf };
  } catch (e) {
    if (ctrl.signal.aborted) throw hostFailure('timeout', `${method} ${url}: no answer within ${timeoutMs} ms`);
    throw hostFailure('network', `${method} ${url}: ${e.message} (server down, or blocked by CORS)`);
  } finally {
    clearTimeout(timer);
  }
}

function websocket(url) {
  if (typeof WebSocket === 'undefined') return Promise.resolve(null);
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    const frames = [];
    const waiters = [];
    let closed = false;
    const push = (v) => { const w = waiters.shift(); if (w) w(v); else frames.push(v); };
    ws.onmessage = (ev) => push(typeof ev.data === 'string' ? ev.data : '');
    ws.onclose = () => { if (!closed) { closed = true; push(null); while (waiters.length) waiters.shift()(null); } };
    ws.onerror = () => { if (ws.readyState !== WebSocket.OPEN) resolve(null); };
    ws.onopen = () => resolve({
      next: () => new Promise((r) => { if (frames.length) r(frames.shift()); else if (closed) r(null); else waiters.push(r); }),
      send: (t) => { if (ws.readyState === WebSocket.OPEN) ws.send(t); },
      close: () => ws.close(),
    });
  });
}

const unsupported = (what) => () => Promise.reject(hostFailure('unsupported', `${what} is not available in browsers; use a URL with script(), or download() instead of downloadTo()`));

export const browserHost = {
  request,
  websocket,
  timer: (ms) => { let id; const promise = new Promise((r) => { id = setTimeout(r, ms); }); return { promise, cancel: () => clearTimeout(id) }; },
  now: () => performance.now(),
  readFile: unsupported('reading local files'),
  readDir: unsupported('listing local directories'),
  writeFile: unsupported('writing local files'),
  sha256: async (bytes) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join(''),
  makeError,
};
