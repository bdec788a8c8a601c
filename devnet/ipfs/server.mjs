#!/usr/bin/env node
// The devnet's IPFS node (`sandrun-devnet --ipfs`): Helia's UnixFS (@helia/unixfs, the
// importer every Helia node uses) over an in-memory blockstore, served on loopback as
//   - a Kubo RPC subset: POST /api/v0/add (multipart, Kubo's query options and NDJSON answer)
//   - a trustless gateway: GET /ipfs/{cid}[/path]?format=raw|car (&dag-scope=all|entity|block),
//     and without format the file's bytes (a plain, trusting gateway: the benchmark's baseline).
// Offline by construction: no libp2p, no routers; it holds what was added to it.
//
// Usage: node devnet/ipfs/server.mjs [--api-port N] [--gateway-port N] [--fault tamper|wrong-cid]
// Prints one JSON line {"api": "http://127.0.0.1:P", "gateway": "http://127.0.0.1:Q"} when ready.
// Faults: `tamper` flips a byte of every block the gateway serves (raw and CAR);
// `wrong-cid` makes /api/v0/add answer the CID of other bytes (a node that lies or uses
// other settings).
import { createServer } from 'node:http';
import { unixfs } from '@helia/unixfs';
import { MemoryBlockstore } from 'blockstore-core';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import { CarWriter } from '@ipld/car';
import * as dagPb from '@ipld/dag-pb';
import { UnixFS } from 'ipfs-unixfs';
import { CID } from 'multiformats/cid';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.lastIndexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const fault = arg('--fault', 'none');
if (!['none', 'tamper', 'wrong-cid'].includes(fault)) {
  console.error(`ipfs: unknown --fault ${fault} (none, tamper, wrong-cid)`);
  process.exit(2);
}

const blockstore = new MemoryBlockstore();
const fs = unixfs({ blockstore });
const RAW = 0x55;
const DAG_PB = 0x70;
const MAX_BODY = 256 * 1024 * 1024;

// Kubo's defaults (the `unixfs-v0-2015` profile): 256 KiB fixed-size chunks, balanced DAG
// of 174 links; CID version and raw leaves from the request, as Kubo reads them.
function importOptions(q) {
  const cidVersion = Number(q.get('cid-version') ?? 0);
  const rawLeaves = q.has('raw-leaves') ? q.get('raw-leaves') === 'true' : cidVersion === 1;
  const chunker = q.get('chunker') ?? 'size-262144';
  const m = /^size-(\d+)$/.exec(chunker);
  if (!m) throw new Error(`chunker ${chunker} is not supported (size-N only)`);
  return {
    profile: 'unixfs-v0-2015',
    cidVersion,
    rawLeaves,
    chunker: fixedSize({ chunkSize: Number(m[1]) }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    wrapWithDirectory: q.get('wrap-with-directory') === 'true',
  };
}

// blockstore-core 7 yields a block in parts (a generator); older ones return it.
async function getBlock(cid) {
  let r = blockstore.get(cid);
  if (r && typeof r.then === 'function') r = await r;
  if (r instanceof Uint8Array) return r;
  const parts = [];
  for await (const p of r) parts.push(p);
  return Buffer.concat(parts);
}

/** A served copy of a block: with `tamper`, one byte differs. */
function served(bytes) {
  if (fault !== 'tamper') return bytes;
  const copy = Buffer.from(bytes.length ? bytes : [0]);
  if (bytes.length) copy[copy.length >> 1] ^= 0xff;
  return copy;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
      } else parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

const cors = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, Accept, Authorization, X-API-Key',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Type',
};

function send(res, status, type, body) {
  res.writeHead(status, { ...cors, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function add(req, res, q) {
  const opts = importOptions(q);
  const ct = req.headers['content-type'] ?? '';
  const body = await readBody(req);
  const form = await new Response(body, { headers: { 'content-type': ct } }).formData();
  const entries = [];
  for (const [, v] of form.entries()) {
    if (typeof v === 'string') continue;
    const path = decodeURIComponent(v.name);
    if (v.type === 'application/x-directory') entries.push({ path });
    else entries.push({ path, content: new Uint8Array(await v.arrayBuffer()) });
  }
  if (entries.length === 0) return send(res, 400, 'text/plain', 'no files in the request');
  const lines = [];
  for await (const e of fs.addAll(entries, opts)) {
    let hash = e.cid.toString();
    if (fault === 'wrong-cid') hash = (await fs.addBytes(new TextEncoder().encode(`not ${hash}`), opts)).toString();
    lines.push(JSON.stringify({ Name: e.path, Hash: hash, Size: String(e.size) }));
  }
  send(res, 200, 'application/json', lines.join('\n') + '\n');
}

/** The blocks from `root` along `path`, and the CID at its end. */
async function resolve(root, path) {
  const blocks = [];
  let at = root;
  for (const seg of path) {
    if (at.code !== DAG_PB) return null;
    const bytes = await getBlock(at);
    blocks.push([at, bytes]);
    const node = dagPb.decode(bytes);
    const link = node.Links.find((l) => l.Name === seg);
    if (!link) return null;
    at = link.Hash;
  }
  return { blocks, target: at };
}

/** Every block of the DAG under `cid`, depth first (`entity`: a directory's own block only). */
async function* dag(cid, scope, seen = new Set()) {
  const key = cid.toString();
  if (seen.has(key)) return;
  seen.add(key);
  const bytes = await getBlock(cid);
  yield [cid, bytes];
  if (scope === 'block' || cid.code !== DAG_PB) return;
  const node = dagPb.decode(bytes);
  if (scope === 'entity') {
    const type = node.Data ? UnixFS.unmarshal(node.Data).type : 'file';
    if (type === 'directory') return;
  }
  for (const l of node.Links) yield* dag(l.Hash, scope, seen);
}

async function gateway(req, res, url) {
  const m = /^\/ipfs\/([^/]+)(\/.*)?$/.exec(url.pathname);
  if (!m) return send(res, 404, 'text/plain', 'not found');
  let root;
  try {
    root = CID.parse(m[1]);
  } catch {
    return send(res, 400, 'text/plain', `bad CID ${m[1]}`);
  }
  const path = (m[2] ?? '').split('/').filter(Boolean).map(decodeURIComponent);
  const accept = req.headers.accept ?? '';
  const format = url.searchParams.get('format') ?? (accept.includes('application/vnd.ipld.car') ? 'car' : accept.includes('application/vnd.ipld.raw') ? 'raw' : null);
  if (!(await blockstore.has(root))) return send(res, 404, 'text/plain', `${root} is not here`);
  const r = await resolve(root, path);
  if (!r || !(await blockstore.has(r.target))) return send(res, 404, 'text/plain', `no ${url.pathname}`);
  if (format === 'raw') {
    const bytes = served(await getBlock(r.target));
    res.writeHead(200, { ...cors, 'Content-Type': 'application/vnd.ipld.raw', 'Content-Length': bytes.length });
    return res.end(bytes);
  }
  if (format === 'car') {
    const scope = url.searchParams.get('dag-scope') ?? 'all';
    const { writer, out } = CarWriter.create([root]);
    const chunks = [];
    const collected = (async () => {
      for await (const c of out) chunks.push(c);
    })();
    for (const [c, b] of r.blocks) await writer.put({ cid: c, bytes: served(b) });
    for await (const [c, b] of dag(r.target, scope)) await writer.put({ cid: c, bytes: served(b) });
    await writer.close();
    await collected;
    const body = Buffer.concat(chunks);
    res.writeHead(200, { ...cors, 'Content-Type': 'application/vnd.ipld.car; version=1', 'Content-Length': body.length });
    return res.end(body);
  }
  if (format) return send(res, 400, 'text/plain', `format ${format} is not served here`);
  // A plain (trusting) gateway: the file's bytes as the node reads them.
  const parts = [];
  try {
    for await (const c of fs.cat(r.target)) parts.push(c);
  } catch (e) {
    return send(res, 400, 'text/plain', String(e.message ?? e));
  }
  const body = Buffer.concat(parts);
  res.writeHead(200, { ...cors, 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
  res.end(body);
}

function server(handler) {
  return createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { ...cors, 'Access-Control-Max-Age': '600' });
        return res.end();
      }
      await handler(req, res, url);
    } catch (e) {
      if (!res.headersSent) send(res, 500, 'text/plain', String(e?.message ?? e));
      else res.destroy();
    }
  });
}

const api = server(async (req, res, url) => {
  if (req.method === 'POST' && url.pathname === '/api/v0/add') return add(req, res, url.searchParams);
  if (url.pathname === '/api/v0/id' && req.method === 'POST') return send(res, 200, 'application/json', JSON.stringify({ ID: 'sandrun-devnet-helia', AgentVersion: 'helia-unixfs' }));
  send(res, 404, 'text/plain', 'only POST /api/v0/add is served here');
});
const gw = server(async (req, res, url) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'GET only');
  return gateway(req, res, url);
});

const listen = (s, port) => new Promise((ok, fail) => s.once('error', fail).listen(port, '127.0.0.1', () => ok(s.address().port)));
const apiPort = await listen(api, Number(arg('--api-port', 0)));
const gwPort = await listen(gw, Number(arg('--gateway-port', 0)));
process.stdout.write(JSON.stringify({ api: `http://127.0.0.1:${apiPort}`, gateway: `http://127.0.0.1:${gwPort}` }) + '\n');
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The devnet holds our stdin: when it goes away, so do we.
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
