// The main job: run the spec's first example on a Sandrun worker and check the result.
// With no config the SDK talks to the local devnet that `npm start` runs on 127.0.0.1:7700.
import { Sandrun } from '@sandrun/wasm';

const sandrun = Sandrun.create();
const execution = await sandrun.job().code('console.log("Hello from GPU!")').submit();
console.log(`submitted ${execution.id} to ${execution.worker}`);
const result = await execution.wait();

console.log(`status:   ${result.status} (exit ${result.exitCode}) in ${result.executionTime.toFixed(0)} ms`);
console.log(`output:   ${result.stdout.trim()}`);
console.log(`verified: ${result.proof.verified} (consensus '${result.proof.level}')`);
for (const check of result.proof.checks) console.log(`  ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
console.log(`worker:   ${result.proof.workerId}`);
if (!result.proof.verified || result.stdout !== 'Hello from GPU!\n') process.exit(1);
