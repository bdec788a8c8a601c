// Payments on a real chain (anvil from the devnet's --chain): escrow opened before the
// job, released to the agreeing workers' registered payout addresses, refunded
// otherwise. Balances are read with viem (test-only), independently of the SDK.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, http as viemHttp, parseEther, formatEther } from 'viem';
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import { readFileSync } from 'node:fs';
import { startDevnet, acceptedJobs, rejectsWith, root, gasPaid as gasPaidBy } from './support.mjs';
import { hostileRegistry, record, workerKey, signBinding, freshAddress } from './hostile-registry.mjs';

const ESCROW_ABI = JSON.parse(readFileSync(`${root}/contracts/artifacts/SandrunEscrow.json`, 'utf8')).abi;

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
const gasPaid = (hashes) => gasPaidBy(pub, hashes);
/** Plain JSON-RPC to anvil (test control: automine, mine). */
async function rpc(method, params = []) {
  const res = await fetch(chain.rpc, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
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

test('a receipt that does not come in time leaves the escrow key and hashes in the error; sandrun.refund(key) settles it later, to the wei', async () => {
  const s = client({ escrow: { address: chain.escrow, chainId: chain.chainId, receiptTimeout: 0.5 } });
  assert.equal(s.config.escrow.receiptTimeout, 0.5);
  const p0 = await balance(payer().address);
  const jobs0 = await jobsEverywhere();
  // Blocks stop coming: the open transaction stays pending, for real.
  await rpc('evm_setAutomine', [false]);
  let e;
  try {
    e = await rejectsWith(s.job().code('print(1)').payment('0.4').submit(), 'TIMEOUT', SandrunError);
    assert.match(e.message, /not mined within 0.5 s/);
    assert.match(e.message, /sandrun\.refund\(/);
    const d = e.details;
    assert.equal(d.state, 'opening');
    assert.equal(d.escrow.address.toLowerCase(), chain.escrow.toLowerCase());
    assert.equal(d.escrow.chainId, chain.chainId);
    assert.equal(d.escrow.payer.toLowerCase(), payer().address.toLowerCase());
    assert.match(d.escrow.key, /^0x[0-9a-f]{64}$/);
    assert.equal(d.transactions.length, 1, 'the open');
    assert.equal(await jobsEverywhere(), jobs0, 'nothing was submitted');
    // Still pending: there is no escrow under the key yet.
    const none = await rejectsWith(s.refund(d.escrow.key), 'PAYMENT_FAILED', SandrunError);
    assert.equal(none.details.state, 'none');
    assert.match(none.message, /still pending/);
  } finally {
    await rpc('evm_mine');
    await rpc('evm_setAutomine', [true]);
  }
  const { key } = e.details.escrow;
  const opened = await pub.getTransactionReceipt({ hash: e.details.transactions[0] });
  assert.equal(opened.status, 'success', 'the open went through after all');
  assert.equal(opened.logs[0].topics[1], key, 'the key in the error is the one the escrow opened');
  assert.equal(await balance(payer().address), p0 - parseEther('0.4') - (await gasPaid(e.details.transactions)));

  const info = await s.refund(key);
  assert.equal(info.state, 'refunded');
  assert.equal(info.amount, '0.4');
  assert.equal(info.token, 'ETH');
  assert.equal(info.transactions.length, 1);
  assert.equal(await balance(payer().address), p0 - (await gasPaid([...e.details.transactions, ...info.transactions])), 'the payer got it all back but gas, to the wei');
  // Twice is safe: nothing is sent, the answer is the same state.
  const again = await s.refund(key);
  assert.deepEqual([again.state, again.transactions], ['refunded', []]);
  await rejectsWith(s.refund('0x1234'), 'INVALID_ARGUMENT', SandrunError);
});

test('a release whose receipt does not come in time is left alone (no refund raced behind it); details name it, and refund(key) later says it was released', async () => {
  const s = client({ escrow: { address: chain.escrow, chainId: chain.chainId, receiptTimeout: 0.5 } });
  const w0 = await balance(W[0].payout);
  const ex = await s.job().code('print(1)').payment('0.1').submit();
  await rpc('evm_setAutomine', [false]);
  let e;
  try {
    e = await rejectsWith(ex.wait(), 'PAYMENT_FAILED', SandrunError);
    assert.match(e.message, /not mined within 0.5 s/);
    assert.equal(e.details.state, 'releasing');
    assert.equal(e.details.transactions.length, 2, 'open, release');
    assert.equal(e.details.cost.state, 'pending');
    assert.match(e.details.escrow.key, /^0x[0-9a-f]{64}$/);
  } finally {
    await rpc('evm_mine');
    await rpc('evm_setAutomine', [true]);
  }
  assert.equal((await pub.getTransactionReceipt({ hash: e.details.transactions[1] })).status, 'success', 'the release went through after all');
  assert.equal(await balance(W[0].payout), w0 + parseEther('0.1'));
  const r = await rejectsWith(s.refund(e.details.escrow.key), 'PAYMENT_FAILED', SandrunError);
  assert.equal(r.details.state, 'released');
});

test('RPC URLs in errors show only their origin: an Infura-style key in the path or query never appears', async () => {
  const SECRET = 'f00dfeedc0ffee0123456789abcdef01';
  const urls = [`http://127.0.0.1:9/v3/${SECRET}`, `http://user:${SECRET}@127.0.0.1:9/?apikey=${SECRET}`];
  for (const url of urls) {
    const w = localWallet(payer().privateKey, url);
    const e = await rejectsWith(w.request({ method: 'eth_chainId' }), 'NETWORK', SandrunError);
    assert.ok(!JSON.stringify({ m: e.message, c: String(e.cause ?? ''), d: e.details ?? null }).includes(SECRET), e.message);
    assert.match(e.message, /127\.0\.0\.1:9/, 'the origin is still named');
    // Through a paid job too.
    const e2 = await rejectsWith(client({ web3Provider: w }).job().code('print(1)').payment('0.1').submit(), 'NETWORK', SandrunError);
    assert.ok(!`${e2.message} ${e2.cause ?? ''}`.includes(SECRET), e2.message);
  }
  // A server that answers something else than JSON-RPC.
  const e3 = await localWallet(payer().privateKey, `${W[0].url}/v3/${SECRET}?k=${SECRET}`).request({ method: 'eth_chainId' }).then(() => null, (x) => x);
  assert.ok(e3 instanceof SandrunError, String(e3));
  assert.ok(!`${e3.message} ${e3.cause ?? ''}`.includes(SECRET), e3.message);
  const e4 = await rejectsWith(() => localWallet(payer().privateKey, `wss://mainnet.example.io/v3/${SECRET}`), 'INVALID_ARGUMENT', SandrunError);
  assert.ok(!e4.message.includes(SECRET), e4.message);
});

test('a payee that refuses ETH no longer blocks the release: the honest worker is paid to the wei, the refusing one is credited', async () => {
  // TEST DOUBLE of a registry (see hostile-registry.mjs): both workers bound their payouts
  // with their own keys; worker 1's is the test token contract, which has no receive().
  const honest = freshAddress();
  const reg = await hostileRegistry([
    record(W[0], { payout: honest, chainId: chain.chainId, signature: signBinding(workerKey(net, 0), chain.chainId, honest) }),
    record(W[1], { payout: chain.token, chainId: chain.chainId, signature: signBinding(workerKey(net, 1), chain.chainId, chain.token) }),
  ]);
  try {
    const s = client({ registryEndpoint: reg.url });
    const pool = await s.pool().nodes([W[0].url, W[1].url]).consensus('2-of-2').join();
    const [p0, e0, t0] = [await balance(payer().address), await balance(chain.escrow), await balance(chain.token)];
    const r = await s.job().code('print(1)').payment('0.1').with(pool).submit().then((x) => x.wait());
    assert.equal(r.cost.state, 'released');
    assert.deepEqual(r.cost.credited, [chain.token.toLowerCase()]);
    assert.equal(r.cost.transactions.length, 2, 'open, release: no refund');
    assert.equal(await balance(honest), parseEther('0.05'), 'the honest payee: its share, to the wei');
    assert.equal(await balance(chain.token), t0, 'the refusing payee got nothing pushed');
    const owed = await pub.readContract({ address: chain.escrow, abi: ESCROW_ABI, functionName: 'owed', args: ['0x0000000000000000000000000000000000000000', chain.token] });
    assert.equal(owed, parseEther('0.05'), 'its share is credited to it in the escrow');
    assert.equal(await balance(chain.escrow), e0 + parseEther('0.05'));
    assert.equal(await balance(payer().address), p0 - parseEther('0.1') - (await gasPaid(r.cost.transactions)), 'the payer paid the amount and gas, once');
    // A released escrow cannot be refunded, and refund(key) says why.
    const key = (await pub.getTransactionReceipt({ hash: r.cost.transactions[0] })).logs[0].topics[1];
    const e = await rejectsWith(s.refund(key), 'PAYMENT_FAILED', SandrunError);
    assert.equal(e.details.state, 'released');
    assert.match(e.message, /already released/);
  } finally {
    await reg.close();
  }
});
