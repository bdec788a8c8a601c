// Browser / bundler entry: `await init()` once before use (idempotent).
import initWasm, { __setHost, __setGpuHost } from './sandrun_wasm.js';
import { browserHost } from './host-browser.js';
import { gpuHost } from './gpu.js';

let ready;
/** Load the wasm module. `input` may be a URL, Response or bytes of `sandrun_wasm_bg.wasm`. */
export default function init(input) {
  ready ??= initWasm(input === undefined ? undefined : { module_or_path: input }).then(() => {
    __setHost(browserHost);
    // Fetched on the first sandrun.gpu() call (or big proof check), where WebGPU exists.
    __setGpuHost(
      gpuHost(async () => {
        const m = await import('./gpu/sandrun_gpu.js');
        await m.default({ module_or_path: new URL('./gpu/sandrun_gpu_bg.wasm', import.meta.url) });
        return m;
      }),
    );
  });
  return ready;
}

export * from './api.js';
