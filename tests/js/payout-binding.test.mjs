// Payouts go only where the worker said: a registry record's payout is paid only when the
// worker bound it with its own Ed25519 key (capabilities.payout_signature over
// `sandrun-payout-v1|<chainId>|<address>`). Real workers and a real chain (devnet --chain);
// the registry is a test double of a hostile registry (tests/js/hostile-registry.mjs) that
// lists worker 0's record several times, forged and bound.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, http as viemHttp, parseEther } from 'viem';
import { Sandrun, SandrunError, localWallet, payoutMessage, verifyPayoutBinding } from '@sandrun/wasm';
import { startDevnet, gasPaid as gasPaidBy } from './support.mjs';
import { hostileRegistry, record, workerKey, strangerKey, signBinding, bindingMessage, freshAddress } from './hostile-registry.mjs';

let net;
let chain;
let pub;
let W;
let registry;

before(async () => {
  net = await startDevnet(['--workers', '2', '--no-rate-limit', '--chain']);
  chain = net.chain;
  W = net.workers;
  pub = createPublicClient({ transport: viemHttp(chain.rpc) });
  registry = await hostileRegistry();
});
after(async () => {
  await registry?.close();
  await net?.stop();
});

const payer = () => chain.accounts[1];
const client = () => Sandrun.create({
  apiEndpoint: W[0].url,
  registryEndpoint: registry.url,
  escrow: { address: chain.escrow, chainId: chain.chainId },
  web3Provider: localWallet(payer().privateKey, chain.rpc),
});
const balance = (a) => pub.getBalance({ address: a });
const gasPaid = (hashes) => gasPaidBy(pub, hashes);

test('payoutMessage is the documented text; verifyPayoutBinding checks a worker key\'s binding strictly', async () => {
  const addr = '0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199';
  assert.equal(payoutMessage(31337, addr), 'sandrun-payout-v1|31337|0x8626f6940e2eb28930efb4cef49b2d1f2c9c1199');
  assert.equal(payoutMessage(chain.chainId, addr), bindingMessage(chain.chainId, addr));
  assert.throws(() => payoutMessage(1, '0x1234'), (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT');
  assert.throws(() => payoutMessage(1.5, addr), (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT');
  const sig = signBinding(workerKey(net, 0), chain.chainId, addr);
  assert.equal(verifyPayoutBinding(W[0].worker_id, chain.chainId, addr, sig), true);
  assert.equal(verifyPayoutBinding(W[0].worker_id, chain.chainId + 1, addr, sig), false, 'another chain');
  assert.equal(verifyPayoutBinding(W[1].worker_id, chain.chainId, addr, sig), false, 'another worker');
  assert.equal(verifyPayoutBinding(W[0].worker_id, chain.chainId, addr, signBinding(strangerKey(), chain.chainId, addr)), false, 'signed by a stranger');
  // The identity key with a trivial signature verifies every message under plain Ed25519.
  const identity = Buffer.alloc(32); identity[0] = 1;
  const trivial = Buffer.alloc(64); trivial[0] = 1;
  assert.equal(verifyPayoutBinding(identity.toString('base64'), chain.chainId, addr, trivial.toString('base64')), false, 'small-order key');
});

test('a hostile registry lists worker 0 with forged payouts and with its bound one: the bound address is paid, to the wei; the forged ones get nothing', async () => {
  const attacker = freshAddress();
  const bound = freshAddress();
  const key0 = workerKey(net, 0);
  registry.records.splice(0, registry.records.length,
    // forged first, so "the first record wins" would pay the attacker
    record(W[0], { payout: attacker, chainId: chain.chainId, signature: signBinding(strangerKey(), chain.chainId, attacker) }),
    record(W[0], { payout: attacker, chainId: chain.chainId }),
    record(W[0], { payout: attacker, chainId: chain.chainId, signature: 'not base64!' }),
    // worker 0's own signature, but over another address or another chain
    record(W[0], { payout: attacker, chainId: chain.chainId, signature: signBinding(key0, chain.chainId, bound) }),
    record(W[0], { payout: attacker, chainId: 1, signature: signBinding(key0, 1, attacker) }),
    // the one worker 0 made
    record(W[0], { payout: bound, chainId: chain.chainId, signature: signBinding(key0, chain.chainId, bound) }),
  );
  const p0 = await balance(payer().address);
  const r = await client().job().code('print("bound")').payment('0.3').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'bound\n');
  assert.equal(r.cost.state, 'released');
  assert.deepEqual(r.cost.credited, []);
  assert.equal(await balance(bound), parseEther('0.3'), 'the bound payout: the whole amount, to the wei');
  assert.equal(await balance(attacker), 0n, 'the forged payout: nothing');
  assert.equal(await balance(payer().address), p0 - parseEther('0.3') - (await gasPaid(r.cost.transactions)));
  assert.equal(await balance(chain.escrow), 0n);
  assert.ok(registry.requests.some((q) => q.method === 'GET' && q.url.startsWith('/nodes')), 'the payouts came from the hostile registry');
});

test('with only forged records for the agreeing worker the escrow is refunded: the payer loses only gas', async () => {
  const attacker = freshAddress();
  registry.records.splice(0, registry.records.length,
    record(W[0], { payout: attacker, chainId: chain.chainId, signature: signBinding(strangerKey(), chain.chainId, attacker) }),
    record(W[0], { payout: attacker, chainId: chain.chainId }),
    // worker 1 bound this address, but worker 1 did not run the job
    record(W[1], { payout: attacker, chainId: chain.chainId, signature: signBinding(workerKey(net, 1), chain.chainId, attacker) }),
  );
  const p0 = await balance(payer().address);
  const r = await client().job().code('print(2)').payment('0.2').submit().then((e) => e.wait());
  assert.equal(r.status, 'completed');
  assert.equal(r.cost.state, 'refunded');
  assert.equal(await balance(attacker), 0n);
  assert.equal(await balance(payer().address), p0 - (await gasPaid(r.cost.transactions)), 'only gas lost');
  assert.equal(await balance(chain.escrow), 0n);
});

test('a paid job without any payout binding (the registry does not answer) is refunded, not paid to a guess', async () => {
  const s = client().configure({ registryEndpoint: 'http://127.0.0.1:9' });
  const p0 = await balance(payer().address);
  const r = await s.job().code('print(3)').payment('0.1').submit().then((e) => e.wait());
  assert.equal(r.cost.state, 'refunded');
  assert.equal(await balance(payer().address), p0 - (await gasPaid(r.cost.transactions)));
});
