// Browser / bundler entry: `await init()` once before use (idempotent).
import initWasm, { __setHost } from './sandrun_wasm.js';
import { browserHost } from './host-browser.js';

let ready;
/** Load the wasm module. `input` may be a URL, Response or bytes of `sandrun_wasm_bg.wasm`. */
export default function init(input) {
  ready ??= initWasm(input === undefined ? undefined : { module_or_path: input }).then(() => {
    __setHost(browserHost);
  });
  return ready;
}

export * from './api.js';
