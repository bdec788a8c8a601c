// Payments on a real chain (anvil from the devnet's --chain): escrow opened before the
// job, released to the agreeing workers' registered payout addresses, refunded
// otherwise. Balances are read with viem (test-only), independently of the SDK.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, http as viemHttp, parseEther, formatEther } from 'viem';
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import { startDevnet, acceptedJobs, rejectsWith } from './support.mjs';

let net;
let chain;
let pub;
let W;
const ERC20 = [
  { type: 'function', name: 'balanceOf', stateMutability: 'view', inputs: [{ name: 'a', type: 'address' }], outputs: [{ type: 'uint256' }] },
];

before(async () => {
  net = await startDevnet(['--workers', '4', '--no-rate-limit', '--chain', '--fault', '3=wrong-output']);
  chain = net.chain;
  W = net.workers;
  pub = createPublicClient({ transport: viemHttp(chain.rpc) });
});
after(async () => net && net.stop());

const payer = (i = 0) => chain.accounts[i];
const client = (extra = {}) => Sandrun.create({
  apiEndpoint: W[0].url,
  registryEndpoint: net.registry,
  escrow: { address: chain.escrow, chainId: chain.chainId },
  web3Provider: localWallet(payer().privateKey, chain.rpc),
  ...extra,
});
const balance = (a) => pub.getBalance({ address: a });
const tokenBalance = (a) => pub.readContract({ address: chain.token, abi: ERC20, functionName: 'balanceOf', args: [a] });
async function gasPaid(hashes) {
  let total = 0n;
  for (const h of hashes) {
    const r = await pub.getTransactionReceipt({ hash: h });
    total += r.gasUsed * r.effectiveGasPrice;
  }
  return total;
}
const jobsEverywhere = () => Promise.all(W.map((w) => acceptedJobs(w.url))).then((a) => a.reduce((x, y) => x + y, 0));

test('a paid job: escrow opened, result verified, released to the worker\'s payout address', async () => {
  const [p0, w0] = [await balance(payer().address), await balance(W[0].payout)];
  const r = await client().job().code('print("paid")').payment('0.5', 'ETH').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'paid\n');
  assert.equal(r.cost.state, 'released');
  assert.equal(r.cost.amount, '0.5');
  assert.equal(r.cost.token, 'ETH');
  assert.equal(r.cost.transactions.length, 2, 'open, release');
  const gas = await gasPaid(r.cost.transactions);
  assert.equal(await balance(payer().address), p0 - parseEther('0.5') - gas, 'payer: amount + gas, to the wei');
  assert.equal(await balance(W[0].payout), w0 + parseEther('0.5'), 'worker: the whole amount');
  assert.equal(await balance(chain.escrow), 0n);
  assert.ok(r.cost.gasUsed > 0);
});

test('a rejected wallet request (4001) is USER_REJECTED and nothing is submitted', async () => {
  const inner = localWallet(payer().privateKey, chain.rpc);
  const rejecting = { request: (a) => (a.method === 'eth_sendTransaction' ? Promise.reject(Object.assign(new Error('User rejected the request.'), { code: 4001 })) : inner.request(a)) };
  const before = await jobsEverywhere();
  await rejectsWith(client({ web3Provider: rejecting }).job().code('print(1)').payment('0.1').submit(), 'USER_REJECTED', SandrunError);
  assert.equal(await jobsEverywhere(), before);
});

test('a wallet on the wrong chain is WRONG_CHAIN, and insufficient funds PAYMENT_FAILED; nothing submitted either way', async () => {
  const before = await jobsEverywhere();
  await rejectsWith(client({ escrow: { address: chain.escrow, chainId: 1 } }).job().code('print(1)').payment('0.1').submit(), 'WRONG_CHAIN', SandrunError);
  const broke = localWallet(`0x${'7'.repeat(64)}`, chain.rpc);
  const e = await rejectsWith(client({ web3Provider: broke }).job().code('print(1)').payment('0.1').submit(), 'PAYMENT_FAILED', SandrunError);
  assert.match(e.message, /insufficient funds|funds/i);
  assert.equal(await jobsEverywhere(), before);
  await rejectsWith(Sandrun.create({ apiEndpoint: W[0].url }).job().code('print(1)').payment('0.1').submit(), 'INVALID_ARGUMENT', SandrunError);
});

test('a failed job is refunded: the payer loses only gas', async () => {
  const p0 = await balance(payer().address);
  const r = await client().job().code('import sys\nsys.exit(3)').payment('0.25').submit().then((e) => e.wait());
  assert.equal(r.status, 'failed');
  assert.equal(r.cost.state, 'refunded');
  assert.equal(await balance(payer().address), p0 - (await gasPaid(r.cost.transactions)));
});

test('cancel() refunds the escrow', async () => {
  const p0 = await balance(payer().address);
  const ex = await client().configure({ apiEndpoint: W[1].url }).job().code('import time\ntime.sleep(5)').payment('0.2').submit();
  await ex.cancel();
  const e = await rejectsWith(ex.wait(), 'CANCELLED', SandrunError);
  assert.equal(e.details.cost.state, 'refunded');
  assert.equal(await balance(payer().address), p0 - (await gasPaid(e.details.cost.transactions)));
});

test('a job that times out is refunded', async () => {
  const p0 = await balance(payer().address);
  const e = await rejectsWith(client().configure({ apiEndpoint: W[2].url }).job().code('import time\ntime.sleep(30)').timeout(0.5).payment('0.3').submit().then((x) => x.wait()), 'TIMEOUT', SandrunError);
  assert.equal(e.details.cost.state, 'refunded');
  assert.equal(await balance(payer().address), p0 - (await gasPaid(e.details.cost.transactions)));
});

test('2-of-3 with a wrong-output worker: the two agreeing workers share the payment, the dissenter gets nothing', async () => {
  const s = client();
  const pool = await s.pool().nodes([W[0].url, W[1].url, W[3].url]).consensus('2-of-3').join();
  const before = await Promise.all([W[0], W[1], W[3]].map((w) => balance(w.payout)));
  const r = await s.job().code('open("o.txt","w").write("x")').payment('1').with(pool).submit().then((e) => e.wait());
  assert.equal(r.cost.state, 'released');
  const after = await Promise.all([W[0], W[1], W[3]].map((w) => balance(w.payout)));
  assert.deepEqual(after.map((b, i) => formatEther(b - before[i])), ['0.5', '0.5', '0']);
});

test('an ERC-20 payment: approve, open, release', async () => {
  const [p0, w0] = [await tokenBalance(payer().address), await tokenBalance(W[0].payout)];
  const r = await client().job().code('print(1)').payment('12.5', chain.token).submit().then((e) => e.wait());
  assert.equal(r.cost.state, 'released');
  assert.equal(r.cost.transactions.length, 3, 'approve, open, release');
  assert.equal(await tokenBalance(payer().address), p0 - parseEther('12.5'));
  assert.equal(await tokenBalance(W[0].payout), w0 + parseEther('12.5'));
});

test('estimate() gives price bounds from the workers\' pricing, the timeout, the redundancy and the gas price', async () => {
  const s = client();
  const est = await s.job().code('print(1)').timeout(3600).payment('0.5').estimate();
  // Every devnet worker advertises 0.1/hour for CPU.
  assert.deepEqual(est.workerCost, { low: 0.1, high: 0.1 });
  assert.ok(BigInt(est.gasPriceWei) > 0n);
  assert.ok(Number(est.gasCost) > 0);
  const three = await s.job().code('print(1)').timeout(1800).consensus('2-of-3').estimate();
  assert.equal(three.workers, 3);
  assert.ok(Math.abs(three.workerCost.high - 0.15) < 1e-9, JSON.stringify(three.workerCost));
  assert.equal(est.maxCost, '0.5');
});

test('a release that fails (a payout address that refuses ETH) refunds the payer at once', async () => {
  const s = client();
  // The test token contract has no receive(): ETH sent to it reverts. Register it as W[1]'s payout.
  await s.node().endpoint(W[1].url).payout(chain.token).register();
  const p0 = await balance(payer().address);
  const e = await rejectsWith(s.configure({ apiEndpoint: W[1].url }).job().code('print(1)').payment('0.1').submit().then((x) => x.wait()), 'PAYMENT_FAILED', SandrunError);
  assert.match(e.message, /payer was refunded/);
  assert.equal(e.details.cost.state, 'refunded');
  assert.equal(await balance(payer().address), p0 - (await gasPaid(e.details.cost.transactions)), 'only gas lost');
  assert.equal(await balance(chain.escrow), 0n);
});
