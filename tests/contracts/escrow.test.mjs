// SandrunEscrow against a real EVM: anvil from the npm package @foundry-rs/anvil, the
// committed artifacts in contracts/artifacts/, viem as the client (test-only). Every
// revert is checked twice: by simulation (which names the custom error and its
// arguments) and by a mined transaction with a fixed gas limit (status 'reverted', the
// escrow unchanged). Balances are checked to the wei, gas included.
//
//   node --test tests/contracts/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import {
  createPublicClient,
  createWalletClient,
  createTestClient,
  http,
  parseEther,
  keccak256,
  encodeAbiParameters,
  toHex,
  parseEventLogs,
  decodeErrorResult,
  ContractFunctionRevertedError,
  zeroAddress,
  getAddress,
} from 'viem';
import { foundry } from 'viem/chains';
import { ROOT, compile } from '../../scripts/compile-contracts.mjs';

const require = createRequire(import.meta.url);
const artifact = (name) => JSON.parse(readFileSync(join(ROOT, 'contracts', 'artifacts', `${name}.json`), 'utf8'));
const Escrow = artifact('SandrunEscrow');
const Token = artifact('TestToken');

const State = { None: 0, Open: 1, Released: 2, Refunded: 3 };
const REVERT_GAS = 500_000n; // a fixed gas limit, so a reverting call is mined, not estimated away

let anvil;
let rpcUrl;
let pub;
let wallet;
let testClient;
let escrow; // address
let token; // address
let Attacker; // compiled ReentrantPayee
let deployer, payer, worker1, worker2, stranger, payer2;
let jobCounter = 0;

// ------------------------------------------------------------------ anvil

function anvilBinary() {
  const pkg = `@foundry-rs/anvil-${process.platform === 'win32' ? 'win32' : process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}`;
  try {
    const bin = require.resolve(`${pkg}/bin/anvil${process.platform === 'win32' ? '.exe' : ''}`);
    if (existsSync(bin)) return { cmd: bin, args: [] };
  } catch {
    // fall back to the package's node wrapper
  }
  return { cmd: process.execPath, args: [join(ROOT, 'node_modules', '@foundry-rs', 'anvil', 'bin.mjs')] };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

async function startAnvil() {
  const { cmd, args } = anvilBinary();
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(cmd, [...args, '--host', '127.0.0.1', '--port', String(port), '--quiet'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let exited = false;
    child.on('exit', () => (exited = true));
    const start = Date.now();
    while (!exited && Date.now() - start < 20_000) {
      try {
        const chainId = await rpc(url, 'eth_chainId');
        if (Number(chainId) === foundry.id) return { child, url };
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    if (!exited) throw new Error(`anvil did not answer eth_chainId on ${url} within 20 s: ${stderr}`);
    // exited early (port taken in the meantime?): try another port
  }
  throw new Error('anvil failed to start 3 times');
}

// ------------------------------------------------------------------ helpers

async function mined(hash) {
  return pub.waitForTransactionReceipt({ hash });
}
const gasCost = (r) => r.gasUsed * r.effectiveGasPrice;
const balance = (address) => pub.getBalance({ address });
const tokenBalance = (address) => pub.readContract({ address: token, abi: Token.abi, functionName: 'balanceOf', args: [address] });
const now = async () => (await pub.getBlock()).timestamp;

function newJobHash() {
  return keccak256(toHex(`job-${++jobCounter}-${process.pid}`));
}

function keyOf(payerAddr, jobHash, nonce) {
  return keccak256(
    encodeAbiParameters([{ type: 'address' }, { type: 'bytes32' }, { type: 'uint256' }], [payerAddr, jobHash, nonce]),
  );
}

async function readEscrow(key) {
  const [p, t, amount, deadline, state] = await pub.readContract({ address: escrow, abi: Escrow.abi, functionName: 'escrows', args: [key] });
  return { payer: p, token: t, amount, deadline, state };
}

/** Sends a contract call that must succeed; returns the receipt. */
async function call(account, functionName, args, { value, address = escrow, abi = Escrow.abi } = {}) {
  const hash = await wallet.writeContract({ account, address, abi, functionName, args, value, chain: foundry });
  const r = await mined(hash);
  assert.equal(r.status, 'success', `${functionName} reverted`);
  return r;
}

function revertData(err) {
  const found = typeof err?.walk === 'function' ? err.walk((e) => e instanceof ContractFunctionRevertedError) : null;
  return found?.data ?? null;
}

/**
 * A call that must revert with custom error `name` (and `args`, when given): checked by
 * simulation (`blockOverrides` lets it run at a chosen timestamp), then mined with a fixed
 * gas limit, which must end 'reverted' without changing the escrow under `key`.
 */
async function expectRevert(account, functionName, args, name, { value, errArgs, key, time, address = escrow, abi = Escrow.abi } = {}) {
  const sim = pub.simulateContract({
    account,
    address,
    abi,
    functionName,
    args,
    value,
    ...(time !== undefined ? { blockOverrides: { time } } : {}),
  });
  await assert.rejects(sim, (err) => {
    const data = revertData(err);
    assert.ok(data, `${functionName}: expected revert ${name}, got ${err.shortMessage ?? err.message}`);
    assert.equal(data.errorName, name);
    if (errArgs) assert.deepEqual(data.args, errArgs);
    return true;
  });
  const before = key ? await readEscrow(key) : null;
  if (time !== undefined) await testClient.setNextBlockTimestamp({ timestamp: time });
  const hash = await wallet.writeContract({ account, address, abi, functionName, args, value, gas: REVERT_GAS, chain: foundry });
  const r = await mined(hash);
  assert.equal(r.status, 'reverted', `${functionName} should have reverted on chain`);
  if (key) assert.deepEqual(await readEscrow(key), before);
  return r;
}

/** Opens an ETH (or token) escrow that must succeed; returns { key, receipt, jobHash, nonce, deadline }. */
async function openEscrow(account, { amount, tokenAddr = zeroAddress, deadline, nonce = 1n, jobHash = newJobHash(), value } = {}) {
  deadline ??= (await now()) + 3600n;
  value ??= tokenAddr === zeroAddress ? amount : 0n;
  const receipt = await call(account, 'open', [jobHash, nonce, tokenAddr, amount, deadline], { value });
  return { key: keyOf(account, jobHash, nonce), receipt, jobHash, nonce, deadline };
}

function events(receipt, abi = Escrow.abi, address = escrow) {
  return parseEventLogs({ abi, logs: receipt.logs }).filter((l) => getAddress(l.address) === getAddress(address));
}

// ------------------------------------------------------------------ setup

before(async () => {
  Attacker = compile(['contracts/test/ReentrantPayee.sol']).ReentrantPayee;
  const started = await startAnvil();
  anvil = started.child;
  rpcUrl = started.url;
  const transport = http(rpcUrl);
  pub = createPublicClient({ chain: foundry, transport, pollingInterval: 20 });
  wallet = createWalletClient({ chain: foundry, transport, pollingInterval: 20 });
  testClient = createTestClient({ chain: foundry, transport, mode: 'anvil', pollingInterval: 20 });
  [deployer, payer, worker1, worker2, stranger, payer2] = await wallet.getAddresses();

  const deploy = async (a, args = []) => {
    const hash = await wallet.deployContract({ account: deployer, abi: a.abi, bytecode: a.bytecode, args, chain: foundry });
    const r = await mined(hash);
    assert.equal(r.status, 'success');
    return getAddress(r.contractAddress);
  };
  escrow = await deploy(Escrow);
  token = await deploy(Token, ['Sandrun Test Token', 'SRT']);
});

after(async () => {
  if (anvil && anvil.exitCode === null) {
    const gone = new Promise((r) => anvil.once('exit', r));
    anvil.kill('SIGTERM');
    const timer = setTimeout(() => anvil.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
  }
});

// ------------------------------------------------------------------ tests

test('the deployed code is the committed artifact', async () => {
  assert.equal(await pub.getCode({ address: escrow }), Escrow.deployedBytecode);
  assert.equal(await pub.getCode({ address: token }), Token.deployedBytecode);
  assert.equal(await pub.readContract({ address: token, abi: Token.abi, functionName: 'decimals' }), 18);
});

test('keyOf and the key derivation match keccak256(abi.encode(payer, jobHash, nonce))', async () => {
  const jobHash = newJobHash();
  const onChain = await pub.readContract({ address: escrow, abi: Escrow.abi, functionName: 'keyOf', args: [payer, jobHash, 7n] });
  assert.equal(onChain, keyOf(payer, jobHash, 7n));
  const unknown = await readEscrow(onChain);
  assert.deepEqual(unknown, { payer: zeroAddress, token: zeroAddress, amount: 0n, deadline: 0n, state: State.None });
});

test('ETH: open, release to two payees, remainder back to the payer, to the wei', async () => {
  const amount = parseEther('1');
  const a1 = parseEther('0.3');
  const a2 = parseEther('0.25');
  const remainder = amount - a1 - a2;
  const jobHash = newJobHash();
  const nonce = 42n;
  const deadline = (await now()) + 3600n;

  const [p0, w10, w20, e0] = await Promise.all([balance(payer), balance(worker1), balance(worker2), balance(escrow)]);

  // open: the return value is the key
  const sim = await pub.simulateContract({ account: payer, address: escrow, abi: Escrow.abi, functionName: 'open', args: [jobHash, nonce, zeroAddress, amount, deadline], value: amount });
  const key = keyOf(payer, jobHash, nonce);
  assert.equal(sim.result, key);
  const rOpen = await call(payer, 'open', [jobHash, nonce, zeroAddress, amount, deadline], { value: amount });
  const [opened] = events(rOpen);
  assert.equal(opened.eventName, 'Opened');
  assert.deepEqual(opened.args, { key, payer, jobHash, token: zeroAddress, amount, deadline });
  assert.deepEqual(await readEscrow(key), { payer, token: zeroAddress, amount, deadline, state: State.Open });
  assert.equal(await balance(escrow), e0 + amount);
  assert.equal(await balance(payer), p0 - amount - gasCost(rOpen));

  // release
  const rRel = await call(payer, 'release', [key, [worker1, worker2], [a1, a2]]);
  const evs = events(rRel);
  assert.equal(evs.length, 1);
  assert.equal(evs[0].eventName, 'Released');
  assert.deepEqual(evs[0].args, { key, payees: [worker1, worker2], amounts: [a1, a2], remainderRefunded: remainder });

  assert.equal(await balance(worker1), w10 + a1);
  assert.equal(await balance(worker2), w20 + a2);
  assert.equal(await balance(payer), p0 - amount - gasCost(rOpen) + remainder - gasCost(rRel));
  assert.equal(await balance(escrow), e0);
  assert.equal((await readEscrow(key)).state, State.Released);
});

test('ETH: release to nobody refunds everything; the payer may refund at any time', async () => {
  const amount = parseEther('0.5');
  const p0 = await balance(payer);
  const a = await openEscrow(payer, { amount });
  const rRel = await call(payer, 'release', [a.key, [], []]);
  assert.deepEqual(events(rRel)[0].args, { key: a.key, payees: [], amounts: [], remainderRefunded: amount });
  assert.equal(await balance(payer), p0 - gasCost(a.receipt) - gasCost(rRel));

  const b = await openEscrow(payer, { amount });
  const rRef = await call(payer, 'refund', [b.key]);
  const [ev] = events(rRef);
  assert.equal(ev.eventName, 'Refunded');
  assert.deepEqual(ev.args, { key: b.key, payer, amount, byDeadline: false });
  assert.equal((await readEscrow(b.key)).state, State.Refunded);
  assert.equal(await balance(payer), p0 - gasCost(a.receipt) - gasCost(rRel) - gasCost(b.receipt) - gasCost(rRef));
});

test('ERC-20: approve, open, release; token balances exact; msg.value must be 0', async () => {
  const amount = parseEther('100');
  await call(deployer, 'mint', [payer, parseEther('1000')], { address: token, abi: Token.abi });
  await call(payer, 'approve', [escrow, amount], { address: token, abi: Token.abi });
  const [p0, w10, e0] = await Promise.all([tokenBalance(payer), tokenBalance(worker1), tokenBalance(escrow)]);

  const jobHash = newJobHash();
  const deadline = (await now()) + 3600n;
  await expectRevert(payer, 'open', [jobHash, 1n, token, amount, deadline], 'BadValue', { value: 1n, errArgs: [1n, 0n] });

  const o = await openEscrow(payer, { amount, tokenAddr: token, jobHash, deadline });
  assert.deepEqual(events(o.receipt)[0].args, { key: o.key, payer, jobHash, token, amount, deadline });
  const transfers = events(o.receipt, Token.abi, token).filter((l) => l.eventName === 'Transfer');
  assert.deepEqual(transfers.map((t) => t.args), [{ from: payer, to: escrow, value: amount }]);
  assert.equal(await tokenBalance(payer), p0 - amount);
  assert.equal(await tokenBalance(escrow), e0 + amount);
  assert.equal(await pub.readContract({ address: token, abi: Token.abi, functionName: 'allowance', args: [payer, escrow] }), 0n);
  assert.deepEqual(await readEscrow(o.key), { payer, token, amount, deadline, state: State.Open });

  const pay = parseEther('60');
  const r = await call(payer, 'release', [o.key, [worker1], [pay]]);
  assert.deepEqual(events(r)[0].args, { key: o.key, payees: [worker1], amounts: [pay], remainderRefunded: amount - pay });
  assert.deepEqual(
    events(r, Token.abi, token).map((t) => t.args),
    [
      { from: escrow, to: worker1, value: pay },
      { from: escrow, to: payer, value: amount - pay },
    ],
  );
  assert.equal(await tokenBalance(worker1), w10 + pay);
  assert.equal(await tokenBalance(payer), p0 - pay);
  assert.equal(await tokenBalance(escrow), e0);

  // a token refund goes back to the payer too
  await call(payer, 'approve', [escrow, amount], { address: token, abi: Token.abi });
  const o2 = await openEscrow(payer, { amount, tokenAddr: token });
  await call(payer, 'refund', [o2.key]);
  assert.equal(await tokenBalance(payer), p0 - pay);
  assert.equal(await tokenBalance(escrow), e0);
});

test('ERC-20: open without allowance, without balance, or with a non-contract token reverts clearly', async () => {
  const amount = parseEther('5');
  const deadline = (await now()) + 3600n;
  // payer2 holds tokens but approved nothing
  await call(deployer, 'mint', [payer2, amount], { address: token, abi: Token.abi });
  await expectRevert(payer2, 'open', [newJobHash(), 1n, token, amount, deadline], 'InsufficientAllowance', { errArgs: [token, 0n, amount] });
  // approved less than needed
  await call(payer2, 'approve', [escrow, amount - 1n], { address: token, abi: Token.abi });
  await expectRevert(payer2, 'open', [newJobHash(), 1n, token, amount, deadline], 'InsufficientAllowance', { errArgs: [token, amount - 1n, amount] });
  // stranger approved but holds nothing
  await call(stranger, 'approve', [escrow, amount], { address: token, abi: Token.abi });
  await expectRevert(stranger, 'open', [newJobHash(), 1n, token, amount, deadline], 'InsufficientBalance', { errArgs: [token, 0n, amount] });
  // an address without code is not a token (a call to it would "succeed" with no data)
  await expectRevert(payer2, 'open', [newJobHash(), 1n, worker2, amount, deadline], 'NotAToken', { errArgs: [worker2] });
  assert.equal(await tokenBalance(payer2), amount);
});

test('open reverts: zero amount, deadline in the past, bad msg.value, key in use', async () => {
  const amount = parseEther('0.1');
  const t = await now();
  const jobHash = newJobHash();
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, 0n, t + 100n], 'BadAmount', { value: 0n });
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, 0n], 'DeadlineInPast', { value: amount, time: t + 10n, errArgs: [0n, t + 10n] });
  // deadline == block.timestamp is already too late
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, t + 20n], 'DeadlineInPast', { value: amount, time: t + 20n, errArgs: [t + 20n, t + 20n] });
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, t + 3600n], 'BadValue', { value: amount - 1n, errArgs: [amount - 1n, amount] });
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, t + 3600n], 'BadValue', { value: amount + 1n, errArgs: [amount + 1n, amount] });
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, t + 3600n], 'BadValue', { value: 0n, errArgs: [0n, amount] });

  const o = await openEscrow(payer, { amount, jobHash, nonce: 1n });
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, o.deadline], 'KeyInUse', { value: amount, errArgs: [o.key], key: o.key });
  // another nonce, or another payer, is another key
  const o2 = await openEscrow(payer, { amount, jobHash, nonce: 2n });
  const o3 = await openEscrow(payer2, { amount, jobHash, nonce: 1n });
  assert.equal(new Set([o.key, o2.key, o3.key]).size, 3);
  // a key stays used after it is settled
  await call(payer, 'refund', [o.key]);
  await expectRevert(payer, 'open', [jobHash, 1n, zeroAddress, amount, o.deadline], 'KeyInUse', { value: amount, errArgs: [o.key], key: o.key });
  await call(payer, 'refund', [o2.key]);
  await call(payer2, 'refund', [o3.key]);
  // plain ETH sent to the escrow is refused (no receive/fallback)
  const e0 = await balance(escrow);
  const plain = await mined(await wallet.sendTransaction({ account: payer, to: escrow, value: 1n, gas: REVERT_GAS, chain: foundry }));
  assert.equal(plain.status, 'reverted');
  assert.equal(await balance(escrow), e0);
});

test('release reverts: unknown key, not payer, length mismatch, zero payee, over-release, double release, after refund', async () => {
  const amount = parseEther('1');
  const unknown = keyOf(payer, newJobHash(), 1n);
  await expectRevert(payer, 'release', [unknown, [], []], 'UnknownEscrow', { errArgs: [unknown] });

  const o = await openEscrow(payer, { amount });
  const k = o.key;
  await expectRevert(stranger, 'release', [k, [stranger], [amount]], 'NotPayer', { errArgs: [k, stranger], key: k });
  await expectRevert(worker1, 'release', [k, [], []], 'NotPayer', { errArgs: [k, worker1], key: k });
  await expectRevert(payer, 'release', [k, [worker1, worker2], [1n]], 'LengthMismatch', { errArgs: [2n, 1n], key: k });
  await expectRevert(payer, 'release', [k, [worker1], []], 'LengthMismatch', { errArgs: [1n, 0n], key: k });
  await expectRevert(payer, 'release', [k, [worker1, zeroAddress], [1n, 1n]], 'ZeroPayee', { errArgs: [1n], key: k });
  await expectRevert(payer, 'release', [k, [worker1, worker2], [amount, 1n]], 'OverRelease', { errArgs: [amount, 1n], key: k });
  await expectRevert(payer, 'release', [k, [worker1], [amount + 1n]], 'OverRelease', { errArgs: [amount, 0n], key: k });
  // amounts that would overflow a naive sum
  const max = 2n ** 256n - 1n;
  await expectRevert(payer, 'release', [k, [worker1, worker2], [1n, max]], 'OverRelease', { errArgs: [amount, 1n], key: k });

  // exactly the amount is fine: nothing left for the payer
  const w10 = await balance(worker1);
  const r = await call(payer, 'release', [k, [worker1], [amount]]);
  assert.equal(events(r)[0].args.remainderRefunded, 0n);
  assert.equal(await balance(worker1), w10 + amount);
  await expectRevert(payer, 'release', [k, [worker1], [1n]], 'NotOpen', { errArgs: [k, State.Released], key: k });
  await expectRevert(payer, 'release', [k, [], []], 'NotOpen', { errArgs: [k, State.Released], key: k });

  const o2 = await openEscrow(payer, { amount });
  await call(payer, 'refund', [o2.key]);
  await expectRevert(payer, 'release', [o2.key, [worker1], [1n]], 'NotOpen', { errArgs: [o2.key, State.Refunded], key: o2.key });
});

test('refund reverts: unknown key, double refund, after release, a third party before the deadline', async () => {
  const amount = parseEther('0.2');
  const unknown = keyOf(payer, newJobHash(), 9n);
  await expectRevert(payer, 'refund', [unknown], 'UnknownEscrow', { errArgs: [unknown] });

  const o = await openEscrow(payer, { amount });
  await expectRevert(stranger, 'refund', [o.key], 'NotYetRefundable', { key: o.key });
  await call(payer, 'refund', [o.key]);
  await expectRevert(payer, 'refund', [o.key], 'NotOpen', { errArgs: [o.key, State.Refunded], key: o.key });
  await expectRevert(stranger, 'refund', [o.key], 'NotOpen', { errArgs: [o.key, State.Refunded], key: o.key });

  const o2 = await openEscrow(payer, { amount });
  await call(payer, 'release', [o2.key, [worker1], [1n]]);
  await expectRevert(payer, 'refund', [o2.key], 'NotOpen', { errArgs: [o2.key, State.Released], key: o2.key });
});

test('deadline: a third party cannot refund one second before it, can at it; funds go to the payer', async () => {
  const amount = parseEther('0.7');
  const deadline = (await now()) + 1000n;
  const o = await openEscrow(payer, { amount, deadline });
  const [p0, s0, e0] = await Promise.all([balance(payer), balance(stranger), balance(escrow)]);

  // one second before: simulated and mined at deadline - 1
  const rEarly = await expectRevert(stranger, 'refund', [o.key], 'NotYetRefundable', {
    time: deadline - 1n,
    errArgs: [o.key, deadline, deadline - 1n],
    key: o.key,
  });
  assert.equal((await pub.getBlock({ blockNumber: rEarly.blockNumber })).timestamp, deadline - 1n);

  // at the deadline: anyone may trigger it, the payer gets the funds
  await testClient.setNextBlockTimestamp({ timestamp: deadline });
  const r = await call(stranger, 'refund', [o.key]);
  assert.equal((await pub.getBlock({ blockNumber: r.blockNumber })).timestamp, deadline);
  assert.deepEqual(events(r)[0].args, { key: o.key, payer, amount, byDeadline: true });
  assert.equal(await balance(payer), p0 + amount);
  assert.equal(await balance(stranger), s0 - gasCost(rEarly) - gasCost(r));
  assert.equal(await balance(escrow), e0 - amount);
  assert.equal((await readEscrow(o.key)).state, State.Refunded);
});

test('deadline: after it the payer may still release, and a third party may refund a token escrow', async () => {
  const amount = parseEther('0.3');
  const o = await openEscrow(payer, { amount, deadline: (await now()) + 60n });
  await testClient.increaseTime({ seconds: 3600 });
  await testClient.mine({ blocks: 1 });
  const w10 = await balance(worker1);
  await call(payer, 'release', [o.key, [worker1], [amount]]);
  assert.equal(await balance(worker1), w10 + amount);

  // an ERC-20 escrow refunded by a stranger after the deadline: tokens go to the payer
  const tAmount = parseEther('3');
  await call(deployer, 'mint', [payer, tAmount], { address: token, abi: Token.abi });
  await call(payer, 'approve', [escrow, tAmount], { address: token, abi: Token.abi });
  const t = await openEscrow(payer, { amount: tAmount, tokenAddr: token, deadline: (await now()) + 60n });
  const p0 = await tokenBalance(payer);
  await testClient.increaseTime({ seconds: 61 });
  await testClient.mine({ blocks: 1 });
  const r = await call(stranger, 'refund', [t.key]);
  assert.deepEqual(events(r)[0].args, { key: t.key, payer, amount: tAmount, byDeadline: true });
  assert.equal(await tokenBalance(payer), p0 + tAmount);
  assert.equal(await tokenBalance(stranger), 0n);
  // the payer refunding after the deadline is not "byDeadline"
  const o2 = await openEscrow(payer, { amount, deadline: (await now()) + 60n });
  await testClient.increaseTime({ seconds: 61 });
  await testClient.mine({ blocks: 1 });
  const r2 = await call(payer, 'refund', [o2.key]);
  assert.equal(events(r2)[0].args.byDeadline, false);
});

// ------------------------------------------------------------------ re-entrancy

async function deployAttacker() {
  const hash = await wallet.deployContract({ account: deployer, abi: Attacker.abi, bytecode: Attacker.bytecode, args: [escrow], chain: foundry });
  const r = await mined(hash);
  assert.equal(r.status, 'success');
  return getAddress(r.contractAddress);
}
const readAttacker = (address, functionName) => pub.readContract({ address, abi: Attacker.abi, functionName });
const REENTRANCY = { errorName: 'Reentrancy', args: undefined };
function decodeEscrowError(data) {
  const { errorName, args } = decodeErrorResult({ abi: Escrow.abi, data });
  return { errorName, args };
}

test('re-entrancy: a payer contract re-entering release from its receive() gets nothing extra', async () => {
  const attacker = await deployAttacker();
  const amount = parseEther('1');
  const jobHash = newJobHash();
  const deadline = (await now()) + 3600n;
  const e0 = await balance(escrow);
  const w10 = await balance(worker1);

  // the attacker is the payer
  await call(deployer, 'openEth', [jobHash, 1n, deadline], { address: attacker, abi: Attacker.abi, value: amount });
  const key = keyOf(attacker, jobHash, 1n);
  assert.deepEqual(await readEscrow(key), { payer: attacker, token: zeroAddress, amount, deadline, state: State.Open });
  // on every payment it receives, it tries release(key, [itself], [everything]) again
  await call(deployer, 'arm', [1, key, [attacker], [amount]], { address: attacker, abi: Attacker.abi });
  const r = await call(deployer, 'release', [key, [attacker, worker1], [parseEther('0.4'), parseEther('0.3')]], { address: attacker, abi: Attacker.abi });

  assert.equal(await readAttacker(attacker, 'attempts'), 2n); // its share, then the remainder
  assert.equal(await readAttacker(attacker, 'reentered'), false);
  assert.deepEqual(decodeEscrowError(await readAttacker(attacker, 'lastError')), REENTRANCY);
  assert.equal(await readAttacker(attacker, 'received'), parseEther('0.7'));
  assert.equal(await balance(attacker), parseEther('0.7'));
  assert.equal(await balance(worker1), w10 + parseEther('0.3'));
  assert.equal(await balance(escrow), e0);
  assert.equal((await readEscrow(key)).state, State.Released);
  assert.equal(events(r).filter((e) => e.eventName === 'Released').length, 1);
});

test('re-entrancy: a payee re-entering refund during release (after the deadline) gets nothing extra', async () => {
  const attacker = await deployAttacker();
  const amount = parseEther('1');
  const share = parseEther('0.5');
  const o = await openEscrow(payer, { amount, deadline: (await now()) + 60n });
  // a second open escrow of the payer, also past its deadline, refundable by anyone
  const other = await openEscrow(payer, { amount, deadline: (await now()) + 60n });
  await testClient.increaseTime({ seconds: 120 });
  await testClient.mine({ blocks: 1 });
  const e0 = await balance(escrow);
  const p0 = await balance(payer);

  await call(deployer, 'arm', [2, o.key, [], []], { address: attacker, abi: Attacker.abi });
  const r = await call(payer, 'release', [o.key, [attacker], [share]]);
  assert.equal(await readAttacker(attacker, 'attempts'), 1n);
  assert.equal(await readAttacker(attacker, 'reentered'), false);
  assert.deepEqual(decodeEscrowError(await readAttacker(attacker, 'lastError')), REENTRANCY);
  assert.equal(await balance(attacker), share);
  assert.equal(await balance(payer), p0 + (amount - share) - gasCost(r)); // the remainder, once
  assert.equal(await balance(escrow), e0 - amount);
  assert.equal((await readEscrow(o.key)).state, State.Released);
  assert.equal(events(r).filter((e) => e.eventName === 'Refunded').length, 0);

  // re-entering a different escrow is blocked too (it would only have refunded its payer)
  const attacker2 = await deployAttacker();
  const o3 = await openEscrow(payer, { amount });
  await call(deployer, 'arm', [2, other.key, [], []], { address: attacker2, abi: Attacker.abi });
  await call(payer, 'release', [o3.key, [attacker2], [share]]);
  assert.deepEqual(decodeEscrowError(await readAttacker(attacker2, 'lastError')), REENTRANCY);
  assert.equal((await readEscrow(other.key)).state, State.Open);
  await call(payer, 'refund', [other.key]);
});

// ------------------------------------------------------------------ pull payments

const Mode = { Accept: 0, Release: 1, Refund: 2, Revert: 3, Burn: 4, Withdraw: 5 };
const NO_KEY = '0x' + '00'.repeat(32);
const arm = (attacker, mode, key = NO_KEY) => call(deployer, 'arm', [mode, key, [], []], { address: attacker, abi: Attacker.abi });
const owed = (account, tokenAddr = zeroAddress) => pub.readContract({ address: escrow, abi: Escrow.abi, functionName: 'owed', args: [tokenAddr, account] });
// The attacker's own calls (pull) revert with the escrow's errors: decode with both ABIs.
const AttackerAndEscrowErrors = [...Attacker.abi, ...Escrow.abi.filter((x) => x.type === 'error')];

test('a payee that refuses ETH does not block the release: the honest payee is paid to the wei, the refusing one credited, and it withdraws once it accepts', async () => {
  const attacker = await deployAttacker();
  await arm(attacker, Mode.Revert);
  const amount = parseEther('1');
  const honest = parseEther('0.3');
  const refused = parseEther('0.5');
  const [p0, w10, e0] = await Promise.all([balance(payer), balance(worker1), balance(escrow)]);
  const o = await openEscrow(payer, { amount });
  const r = await call(payer, 'release', [o.key, [worker1, attacker], [honest, refused]]);

  const evs = events(r);
  assert.deepEqual(evs.map((e) => e.eventName), ['Released', 'Credited']);
  assert.deepEqual(evs[1].args, { key: o.key, account: attacker, token: zeroAddress, amount: refused });
  assert.equal(await balance(worker1), w10 + honest, 'the honest payee: its share, to the wei');
  assert.equal(await balance(payer), p0 - amount - gasCost(o.receipt) + (amount - honest - refused) - gasCost(r), 'the payer: the remainder');
  assert.equal(await balance(attacker), 0n);
  assert.equal(await owed(attacker), refused);
  assert.equal(await balance(escrow), e0 + refused, 'the credit stays in the escrow');
  assert.equal((await readEscrow(o.key)).state, State.Released);

  // While it still refuses, a withdrawal fails and the credit stays.
  await expectRevert(deployer, 'pull', [], 'TransferFailed', { address: attacker, abi: AttackerAndEscrowErrors, errArgs: [zeroAddress, attacker, refused] });
  assert.equal(await owed(attacker), refused);

  // It starts accepting ETH: the pull pays exactly the credit, once.
  await arm(attacker, Mode.Accept);
  const w = await call(deployer, 'pull', [], { address: attacker, abi: Attacker.abi });
  assert.deepEqual(events(w).map((e) => [e.eventName, e.args]), [['Withdrawn', { account: attacker, token: zeroAddress, amount: refused }]]);
  assert.equal(await balance(attacker), refused);
  assert.equal(await owed(attacker), 0n);
  assert.equal(await balance(escrow), e0);
  await expectRevert(deployer, 'pull', [], 'NothingOwed', { address: attacker, abi: AttackerAndEscrowErrors, errArgs: [attacker, zeroAddress] });
});

test('a payee that burns all its gas is credited; the release succeeds with bounded gas and pays the others', async () => {
  const attacker = await deployAttacker();
  await arm(attacker, Mode.Burn);
  const amount = parseEther('0.5');
  const w10 = await balance(worker1);
  const o = await openEscrow(payer, { amount });
  // viem estimates the gas limit: the estimate must leave every payee its full SEND_GAS.
  const r = await call(payer, 'release', [o.key, [attacker, worker1], [parseEther('0.4'), parseEther('0.1')]]);
  const sendGas = await pub.readContract({ address: escrow, abi: Escrow.abi, functionName: 'SEND_GAS' });
  assert.equal(sendGas, 100_000n);
  assert.ok(r.gasUsed < sendGas + 150_000n, `the burner cost the payer at most its SEND_GAS (gasUsed ${r.gasUsed})`);
  assert.deepEqual(events(r).filter((e) => e.eventName === 'Credited').map((e) => e.args), [{ key: o.key, account: attacker, token: zeroAddress, amount: parseEther('0.4') }]);
  assert.equal(await balance(worker1), w10 + parseEther('0.1'));
  assert.equal(await owed(attacker), parseEther('0.4'));
  await arm(attacker, Mode.Accept);
  await call(deployer, 'pull', [], { address: attacker, abi: Attacker.abi });
  assert.equal(await balance(attacker), parseEther('0.4'));
});

test('a release whose gas limit cannot give each payee its SEND_GAS reverts InsufficientGas (no payee is starved into a credit)', async () => {
  const amount = parseEther('0.2');
  const o = await openEscrow(payer, { amount });
  const gas = 150_000n;
  await assert.rejects(
    pub.simulateContract({ account: payer, address: escrow, abi: Escrow.abi, functionName: 'release', args: [o.key, [worker1], [amount]], gas }),
    (err) => {
      assert.equal(revertData(err)?.errorName, 'InsufficientGas', err.shortMessage ?? err.message);
      return true;
    },
  );
  const before = await readEscrow(o.key);
  const r = await mined(await wallet.writeContract({ account: payer, address: escrow, abi: Escrow.abi, functionName: 'release', args: [o.key, [worker1], [amount]], gas, chain: foundry }));
  assert.equal(r.status, 'reverted');
  assert.deepEqual(await readEscrow(o.key), before);
  await call(payer, 'refund', [o.key]);
});

test('withdraw / withdrawToken with nothing owed revert NothingOwed', async () => {
  await expectRevert(stranger, 'withdraw', [], 'NothingOwed', { errArgs: [stranger, zeroAddress] });
  await expectRevert(stranger, 'withdrawToken', [token], 'NothingOwed', { errArgs: [stranger, token] });
  assert.equal(await owed(stranger), 0n);
});

test('re-entrancy: a payee re-entering withdraw() from its receive() gets its credit once; re-entry during a release is refused too', async () => {
  const attacker = await deployAttacker();
  await arm(attacker, Mode.Revert);
  const credit = parseEther('0.3');
  const o = await openEscrow(payer, { amount: credit });
  await call(payer, 'release', [o.key, [attacker], [credit]]);
  assert.equal(await owed(attacker), credit);
  const e0 = await balance(escrow);

  // The withdrawal's payment re-enters withdraw(): the lock refuses, the credit is paid once.
  await arm(attacker, Mode.Withdraw);
  await call(deployer, 'pull', [], { address: attacker, abi: Attacker.abi });
  assert.equal(await readAttacker(attacker, 'attempts'), 1n);
  assert.equal(await readAttacker(attacker, 'reentered'), false);
  assert.deepEqual(decodeEscrowError(await readAttacker(attacker, 'lastError')), REENTRANCY);
  assert.equal(await balance(attacker), credit);
  assert.equal(await owed(attacker), 0n);
  assert.equal(await balance(escrow), e0 - credit);

  // A payee still owed a credit that tries to withdraw while being paid by a release.
  const a2 = await deployAttacker();
  await arm(a2, Mode.Revert);
  const o2 = await openEscrow(payer, { amount: credit });
  await call(payer, 'release', [o2.key, [a2], [credit]]);
  await arm(a2, Mode.Withdraw);
  const o3 = await openEscrow(payer, { amount: credit });
  await call(payer, 'release', [o3.key, [a2], [credit]]);
  assert.deepEqual(decodeEscrowError(await readAttacker(a2, 'lastError')), REENTRANCY);
  assert.equal(await balance(a2), credit, 'the release paid it, the nested withdraw did not');
  assert.equal(await owed(a2), credit, 'the earlier credit is still owed');
  await arm(a2, Mode.Accept);
  await call(deployer, 'pull', [], { address: a2, abi: Attacker.abi });
  assert.equal(await balance(a2), 2n * credit);
});

test('a payer that refuses its refund is credited; the refund by anyone after the deadline still settles the escrow', async () => {
  const attacker = await deployAttacker();
  const amount = parseEther('0.25');
  const jobHash = newJobHash();
  await call(deployer, 'openEth', [jobHash, 1n, (await now()) + 60n], { address: attacker, abi: Attacker.abi, value: amount });
  const key = keyOf(attacker, jobHash, 1n);
  await arm(attacker, Mode.Revert);
  await testClient.increaseTime({ seconds: 61 });
  await testClient.mine({ blocks: 1 });
  const r = await call(stranger, 'refund', [key]);
  assert.deepEqual(events(r).map((e) => e.eventName), ['Refunded', 'Credited']);
  assert.equal((await readEscrow(key)).state, State.Refunded);
  assert.equal(await owed(attacker), amount);
  await arm(attacker, Mode.Accept);
  await call(deployer, 'pull', [], { address: attacker, abi: Attacker.abi });
  assert.equal(await balance(attacker), amount);
});

test('the escrow holds exactly what its open escrows and credits hold', async () => {
  // every escrow opened above was settled and every credit withdrawn, so nothing is left
  // behind: no dust, no drain
  assert.equal(await balance(escrow), 0n);
  assert.equal(await tokenBalance(escrow), 0n);
});
