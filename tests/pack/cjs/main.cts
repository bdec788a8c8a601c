// A CommonJS project in TypeScript (module NodeNext, a .cts file): the import compiles to
// require('@sandrun/wasm'), which resolves the package's "require" condition (index.cjs, typed
// by index.d.cts).
import { Sandrun, SandrunError } from '@sandrun/wasm';
import type { JobResult } from '@sandrun/wasm';

async function main(): Promise<void> {
  const endpoint = process.argv[2];
  const result: JobResult = await (await Sandrun.create({ apiEndpoint: endpoint }).job().code('print(6 * 7)').submit()).wait();
  let code = '';
  try {
    Sandrun.create({ apiEndpoint: endpoint }).job().memory(-1);
  } catch (e) {
    if (e instanceof SandrunError) code = e.code;
  }
  const esm: typeof import('@sandrun/wasm') = await import('@sandrun/wasm');
  console.log(JSON.stringify({ stdout: result.stdout, verified: result.proof?.verified, code, sameModule: esm.Sandrun === Sandrun }));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
