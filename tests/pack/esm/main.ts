// A Node ESM project in TypeScript (module NodeNext): import by name, run a job, print.
import { Sandrun, SandrunError, type JobResult } from '@sandrun/wasm';

const endpoint = process.argv[2];
const result: JobResult = await (await Sandrun.create({ apiEndpoint: endpoint }).job().code('print(6 * 7)').submit()).wait();
let code = '';
try {
  Sandrun.create({ apiEndpoint: endpoint }).job().memory(-1);
} catch (e) {
  if (e instanceof SandrunError) code = e.code;
}
console.log(JSON.stringify({ stdout: result.stdout, verified: result.proof?.verified, code }));
