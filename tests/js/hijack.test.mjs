// A worker that tries to take over another worker's registry record and payout
// (devnet fault hijack-payout), against the devnet's checking registry and against an
// open one that accepts every write as the reference broker does. Balances are read with
// viem, independently of the SDK.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, http as viemHttp, parseEther } from 'viem';
import { Sandrun, localWallet } from '@sandrun/wasm';
import { startDevnet } from './support.mjs';

const nets = [];
after(async () => {
  for (const n of nets) await n.stop();
});

async function paidJobOnWorker0(net) {
  const pub = createPublicClient({ transport: viemHttp(net.chain.rpc) });
  const balance = (a) => pub.getBalance({ address: a });
  const [w0, w1] = net.workers;
  const before = { w0: await balance(w0.payout), w1: await balance(w1.payout) };
  const sandrun = Sandrun.create({
    apiEndpoint: w0.url,
    registryEndpoint: net.registry,
    escrow: { address: net.chain.escrow, chainId: net.chain.chainId },
    web3Provider: localWallet(net.chain.accounts[0].privateKey, net.chain.rpc),
  });
  const r = await sandrun.job().code('print("work")').payment('0.25', 'ETH').submit().then((e) => e.wait());
  const after = { w0: await balance(w0.payout), w1: await balance(w1.payout), escrow: await balance(net.chain.escrow) };
  return { r, before, after };
}

async function attempts(net) {
  const res = await fetch(`${net.workers[1].url}/_devnet/hijack`);
  return (await res.json()).attempts;
}

test('a hijack is refused by the registry, and worker 0\'s payout receives the payment to the wei', async () => {
  const net = await startDevnet(['--workers', '2', '--no-rate-limit', '--chain', '--fault', '1=hijack-payout']);
  nets.push(net);
  const tried = await attempts(net);
  assert.ok(tried.length >= 4, JSON.stringify(tried));
  for (const a of tried) assert.equal(a.status, 403, `${a.route} was accepted: ${JSON.stringify(a.answer)}`);
  const nodes = (await (await fetch(`${net.registry}/nodes`)).json()).nodes;
  const rec0 = nodes.filter((n) => n.capabilities.worker_id === net.workers[0].worker_id);
  assert.equal(rec0.length, 1);
  assert.equal(rec0[0].capabilities.payout.toLowerCase(), net.workers[0].payout.toLowerCase());
  const { r, before, after } = await paidJobOnWorker0(net);
  assert.equal(r.cost.state, 'released');
  assert.equal(after.w0, before.w0 + parseEther('0.25'), 'worker 0 paid the whole amount');
  assert.equal(after.w1, before.w1, 'the hijacker got nothing');
  assert.equal(after.escrow, 0n);
});

test('with an open registry the writes go through, but the SDK pays only a payout bound by worker 0\'s key', async () => {
  const net = await startDevnet(['--workers', '2', '--no-rate-limit', '--chain', '--unchecked-registry', '--fault', '1=hijack-payout']);
  nets.push(net);
  const tried = await attempts(net);
  assert.ok(tried.some((a) => a.status === 200), 'the open registry accepted the takeover writes');
  const { r, before, after } = await paidJobOnWorker0(net);
  assert.equal(after.w1, before.w1, 'the hijacker got nothing');
  assert.equal(after.escrow, 0n);
  // Worker 0's own binding survives in the registry (replayed under another endpoint), so it
  // is paid; had every bound record been overwritten, the payer would have been refunded.
  if (r.cost.state === 'released') assert.equal(after.w0, before.w0 + parseEther('0.25'));
  else assert.equal(r.cost.state, 'refunded');
});
