// Soak: many jobs through the SDK against a 5-worker devnet (with anvil) while faults
// and 429s are switched on and off under it. Bounded in count (--jobs, default 500) and
// time (--max-seconds, default 600). It checks, with clients independent of the SDK:
// - every job ends in a completed, verified result or a typed SandrunError;
// - no job was submitted twice: the jobs the workers accepted equal the executions the
//   SDK reported (a retried 429 creates no job);
// - the escrow holds 0 wei at the end (viem reads the balance), and every paid job's
//   escrow was released or refunded.
// Prints a summary and one closing line `N passed, N failed` (each check is one).
//
// Usage: node tests/soak/soak.mjs [--jobs 500] [--concurrency 4] [--max-seconds 600] [--seed N]
import { createPublicClient, http as viemHttp } from 'viem';
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import { startDevnet, setFault, acceptedJobs } from '../js/support.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const JOBS = arg('jobs', 500);
const LANES = arg('concurrency', 4);
const MAX_SECONDS = arg('max-seconds', 600);

const started = Date.now();
// Workers 0-4; faults are switched at run time through the devnet's admin endpoint.
const net = await startDevnet(['--workers', '5', '--chain', '--slow-ms', '300', '--no-rate-limit']);
const W = net.workers.map((w) => w.url);
const pub = createPublicClient({ transport: viemHttp(net.chain.rpc) });
const base = {
  registryEndpoint: net.registry,
  escrow: { address: net.chain.escrow, chainId: net.chain.chainId },
  defaults: { timeout: 20 },
};
// One wallet per lane: transactions of one account are sent one at a time.
const wallets = Array.from({ length: LANES }, (_, i) => localWallet(net.chain.accounts[i + 1].privateKey, net.chain.rpc));

// A seeded generator (mulberry32), so a failing run can be replayed with --seed.
let seed = arg('seed', 20261201) >>> 0;
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const FAULTS = ['wrong-output', 'bad-signature', '429', 'stdout-lie', 'slow', null];
let stop = false;
const faultLog = [];
// The chaos loop: every 400 ms one worker gets a random fault or none. Worker 0 stays
// honest so that pools can still reach a quorum.
const chaos = (async () => {
  let n = 0;
  while (!stop) {
    const w = 1 + (n % 4);
    const mode = FAULTS[Math.floor(random() * FAULTS.length)];
    await setFault(W[w], mode).catch(() => {});
    faultLog.push(mode ?? 'none');
    n++;
    await new Promise((r) => setTimeout(r, 400));
  }
  for (const w of W) await setFault(w, null).catch(() => {});
})();

const outcomes = new Map();
let executions = 0;
let typedErrors = 0;
let untyped = [];
let paidJobs = 0;
const paidStates = new Map();
let pool;

async function one(i, lane) {
  const paid = i % 4 === 0;
  const pooled = i % 10 === 5;
  const client = Sandrun.create({ ...base, apiEndpoint: W[i % W.length], web3Provider: wallets[lane] });
  let job = client.job().code(`print(${i} * 2)`).timeout(20);
  if (paid) job = job.payment('0.001', 'ETH');
  if (pooled) {
    pool ??= await client.pool().nodes(W).consensus('2-of-3').join();
    job = job.with(pool);
  }
  let ex;
  try {
    ex = await job.submit();
    const r = await ex.wait();
    if (r.status !== 'completed' || r.stdout !== `${i * 2}\n` || !r.proof.verified) throw new Error(`job ${i}: a result that is not a verified completion: ${r.status} ${JSON.stringify(r.stdout)}`);
    outcomes.set('completed', (outcomes.get('completed') ?? 0) + 1);
    if (paid) paidStates.set(r.cost.state, (paidStates.get(r.cost.state) ?? 0) + 1);
  } catch (e) {
    if (e instanceof SandrunError) {
      typedErrors++;
      outcomes.set(e.code, (outcomes.get(e.code) ?? 0) + 1);
      if (paid) {
        const state = e.details?.cost?.state ?? 'not-opened';
        paidStates.set(state, (paidStates.get(state) ?? 0) + 1);
      }
    } else {
      untyped.push(String(e?.stack ?? e));
    }
  }
  // Every replica the SDK started, replacements included (read after the job settled).
  if (ex) executions += ex.replicas.length;
  if (paid) paidJobs++;
}

let next = 0;
let timedOut = false;
await Promise.all(
  Array.from({ length: LANES }, async (_, lane) => {
    while (next < JOBS) {
      if ((Date.now() - started) / 1000 > MAX_SECONDS) {
        timedOut = true;
        return;
      }
      const i = next++;
      await one(i, lane);
    }
  }),
);
stop = true;
await chaos;
const accepted = (await Promise.all(W.map((w) => acceptedJobs(w)))).reduce((a, b) => a + b, 0);
const escrowWei = await pub.getBalance({ address: net.chain.escrow });
await net.stop();

const checks = [
  [`all ${JOBS} jobs ran within ${MAX_SECONDS} s`, !timedOut && next >= JOBS],
  ['every job ended in a completed result or a typed SandrunError', untyped.length === 0],
  [`no job submitted twice (workers accepted ${accepted}, SDK reported ${executions} executions)`, accepted === executions],
  [`the escrow holds 0 wei at the end (viem: ${escrowWei})`, escrowWei === 0n],
  ['every paid job was released or refunded', [...paidStates.keys()].every((s) => s === 'released' || s === 'refunded' || s === 'not-opened')],
];
console.log(`soak: ${JOBS} jobs, ${LANES} lanes, ${((Date.now() - started) / 1000).toFixed(1)} s; fault switches: ${faultLog.length}`);
console.log(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
console.log(`paid jobs: ${paidJobs}, escrow states: ${JSON.stringify(Object.fromEntries(paidStates))}`);
if (untyped.length) console.log(`untyped errors:\n${untyped.slice(0, 5).join('\n')}`);
for (const [name, ok] of checks) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
const failed = checks.filter(([, ok]) => !ok).length;
console.log(`${checks.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
