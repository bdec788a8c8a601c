// The main job: run the spec's first example on a Sandrun worker, check the result, and,
// when the devnet runs a chain (npm start starts one), pay for it through escrow.
// With no apiEndpoint the SDK talks to the local devnet on 127.0.0.1:7700.
import { Sandrun, localWallet } from '@sandrun/wasm';

const devnet = process.env.SANDRUN_DEVNET ? JSON.parse(process.env.SANDRUN_DEVNET) : undefined;
let sandrun = Sandrun.create();
if (devnet?.chain) {
  sandrun = sandrun.configure({
    registryEndpoint: devnet.registry,
    escrow: { address: devnet.chain.escrow, chainId: devnet.chain.chainId },
    web3Provider: localWallet(devnet.chain.accounts[0].privateKey, devnet.chain.rpc),
  });
}
let job = sandrun.job().code('console.log("Hello from GPU!")');
if (devnet?.chain) job = job.payment('0.01', 'ETH');
const execution = await job.submit();
console.log(`submitted ${execution.id} to ${execution.worker}`);
const result = await execution.wait();

console.log(`status:   ${result.status} (exit ${result.exitCode}) in ${result.executionTime.toFixed(0)} ms`);
console.log(`output:   ${result.stdout.trim()}`);
console.log(`verified: ${result.proof.verified} (consensus '${result.proof.level}')`);
for (const check of result.proof.checks) console.log(`  ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
console.log(`worker:   ${result.proof.workerId}`);
if (result.cost.state !== 'none') {
  console.log(`paid:     ${result.cost.amount} ${result.cost.token}, ${result.cost.state} (${result.cost.transactions.length} transactions, ${result.cost.gasUsed} gas)`);
}
const paidOk = !devnet?.chain || result.cost.state === 'released';
if (!result.proof.verified || result.stdout !== 'Hello from GPU!\n' || !paidOk) process.exit(1);
