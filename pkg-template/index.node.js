// Node.js entry: loads the wasm synchronously, so no init() call is needed.
import { initSync, __setHost, __setGpuHost } from './sandrun_wasm.js';
import { nodeHost } from './host-node.js';
import { gpuHost } from './gpu.js';

// Not `import ... from 'node:fs'`: that also loads the streams (a cold start's cost,
// issue 14 row 7); host-node.js has checked that getBuiltinModule exists.
const { readFileSync } = process.getBuiltinModule('node:fs');

initSync({ module: readFileSync(new URL('./sandrun_wasm_bg.wasm', import.meta.url)) });
__setHost(nodeHost);
// The GPU module is read only when first used, and only where navigator.gpu exists (in
// Node: the npm package `webgpu`, see the README).
__setGpuHost(
  gpuHost(async () => {
    const m = await import('./gpu/sandrun_gpu.js');
    m.initSync({ module: readFileSync(new URL('./gpu/sandrun_gpu_bg.wasm', import.meta.url)) });
    return m;
  }),
);

// The spec types JobResult.output as a Buffer: in Node it is one (a Uint8Array subclass,
// so code written for browsers keeps working).
import { JobExecution } from './api.js';
const withBuffer = (r) => {
  if (r && r.output instanceof Uint8Array && !Buffer.isBuffer(r.output)) r.output = Buffer.from(r.output.buffer, r.output.byteOffset, r.output.byteLength);
  return r;
};
for (const method of ['wait', 'download']) {
  const original = JobExecution.prototype[method];
  JobExecution.prototype[method] = function (...args) {
    return original.apply(this, args).then(withBuffer);
  };
}

export * from './api.js';
/** A no-op in Node (already initialized); present so the same code runs everywhere. */
export default async function init() {}
