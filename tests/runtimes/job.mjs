// The package's job flow, written once for every server-side runtime: Node (any line),
// Bun and Deno. It imports '@sandrun/wasm' by name (the runtime resolves the exports
// map itself) and runs, against the devnet named in $SANDRUN_DEVNET:
//   1. a verified job ('low': signature, job hash, outputs, stdout) with its logs streamed,
//   2. a 2-of-3 job with one lying worker named as the dissenter,
//   3. an output downloaded and checked,
//   4. a job paid through escrow with a local key, released to the worker,
//   5. a bad argument rejected with a SandrunError code,
// then prints one JSON line with what it saw. runtimes.test.mjs checks that line.
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';

const env = (name) => (globalThis.Deno ? globalThis.Deno.env.get(name) : globalThis.process.env[name]);
const devnet = JSON.parse(env('SANDRUN_DEVNET'));
const [good0, good1, liar] = devnet.workers.map((w) => w.url);
const report = {
  runtime: globalThis.Deno ? `deno ${globalThis.Deno.version.deno}` : globalThis.Bun ? `bun ${globalThis.Bun.version}` : `node ${globalThis.process.version}`,
};

const s = Sandrun.create({ apiEndpoint: good0 });

// 1. verified job, logs streamed over the job's WebSocket
{
  const ex = await s.job().code('import time\nfor i in range(3):\n    print("line", i, flush=True)\n    time.sleep(0.1)\n').submit();
  let streamed = '';
  for await (const c of await ex.logs()) if (c.stream === 'stdout') streamed += c.text;
  const r = await ex.wait();
  report.single = { stdout: r.stdout, streamed, verified: r.proof.verified, checks: r.proof.checks.filter((c) => !c.ok).map((c) => c.name) };
}

// 2. 2-of-3 with a lying worker
{
  // The liar is among the two replicas lazy replication starts first, so its failed check
  // starts the third and it is named.
  const pool = await s.pool().nodes([good0, liar, good1]).consensus('2-of-3').join();
  const r = await (await s.job().code('open("out.txt","w").write("42")\nprint("agreed")').with(pool).submit()).wait();
  report.consensus = { stdout: r.stdout, reached: r.proof.consensus.reached, agreeing: r.proof.consensus.agreeing.length, dissenting: r.proof.consensus.dissenting.length };
}

// 3. an output file downloaded and checked
{
  const r = await (await s.job().code('open("o.bin","wb").write(bytes(range(256)))').outputs(['o.bin']).submit()).download();
  const f = r.files.find((x) => x.path === 'o.bin');
  report.download = { size: f.size, first: f.bytes[0], last: f.bytes[255], ok: r.proof.checks.find((c) => c.name === 'output:o.bin').ok };
}

// 4. paid through escrow with a local key
if (devnet.chain) {
  const paid = s.configure({
    registryEndpoint: devnet.registry,
    escrow: { address: devnet.chain.escrow, chainId: devnet.chain.chainId },
    web3Provider: localWallet(devnet.chain.accounts[1].privateKey, devnet.chain.rpc),
  });
  const r = await (await paid.job().code('print("paid")').payment('0.01', 'ETH').submit()).wait();
  report.paid = { stdout: r.stdout, state: r.cost.state, transactions: r.cost.transactions.length };
}

// 5. a bad argument is a SandrunError with a code, at the builder call
try {
  s.job().memory(-1);
  report.badArgument = 'accepted';
} catch (e) {
  report.badArgument = e instanceof SandrunError ? e.code : `not a SandrunError: ${e}`;
}

console.log(JSON.stringify(report));
