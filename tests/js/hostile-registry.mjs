// TEST DOUBLE of a hostile registry: a real HTTP server that answers `GET /nodes` with
// whatever records the test puts in it (forged payouts, duplicate records for one worker)
// and records every request it gets. A real registry that lies cannot be had on demand,
// so this one stands in for it; everything else in the tests (workers, chain) is real.
//
// Also: payout bindings made the way a provider operator makes them, with the worker's
// own key (the devnet keeps it at <data-dir>/worker-<i>/key.pem) and node:crypto, so the
// SDK's verifier is checked against an independent signer.
import { createServer } from 'node:http';
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Start the double; `records` is the mutable list `/nodes` serves. */
export async function hostileRegistry(records = []) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.method === 'GET' && req.url.split('?')[0] === '/nodes') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ nodes: records }));
      } else {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: 'not found' }));
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    records,
    requests,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** The message a worker signs, built by hand (not by the SDK): the test's own oracle. */
export const bindingMessage = (chainId, address) => `sandrun-payout-v1|${chainId}|${address.toLowerCase()}`;

/**
 * The devnet worker `i`'s private key. The devnet writes PKCS#8 v2 (the public key
 * attached), which OpenSSL's decoder may refuse; the 32-byte seed is taken out of it
 * (`04 22 04 20 <seed>`) and wrapped as PKCS#8 v1.
 */
export function workerKey(net, i) {
  const pem = readFileSync(join(net.dataDir, `worker-${i}`, 'key.pem'), 'utf8');
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const at = der.indexOf(Buffer.from([0x04, 0x22, 0x04, 0x20]));
  if (at < 0) throw new Error(`worker ${i}: key.pem holds no Ed25519 seed`);
  const seed = der.subarray(at + 4, at + 36);
  return createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
}

/** A key that is nobody's worker key (an attacker's). */
export const strangerKey = () => generateKeyPairSync('ed25519').privateKey;

/** Standard base64 of the pure Ed25519 signature by `key` over the binding. */
export const signBinding = (key, chainId, address) => sign(null, Buffer.from(bindingMessage(chainId, address), 'utf8'), key).toString('base64');

/** A registry record for a worker (`{ url, worker_id }` from the devnet's JSON line). */
export function record(worker, { id, payout, chainId, signature } = {}) {
  const capabilities = { worker_id: worker.worker_id, sandrun_endpoint: worker.url, interpreters: ['python3'] };
  if (payout !== undefined) capabilities.payout = payout;
  if (chainId !== undefined) capabilities.payout_chain_id = chainId;
  if (signature !== undefined) capabilities.payout_signature = signature;
  return { id: id ?? `node-${Math.random().toString(36).slice(2)}`, endpoint: worker.url, active: 1, capabilities, jobs_completed: 0, jobs_failed: 0 };
}

/** A fresh address nobody holds (balance 0), for exact balance checks. */
export const freshAddress = () => `0x${[...crypto.getRandomValues(new Uint8Array(20))].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
