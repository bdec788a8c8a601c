// Node.js entry: loads the wasm synchronously, so no init() call is needed.
import { readFileSync } from 'node:fs';
import { initSync, __setHost } from './sandrun_wasm.js';
import { nodeHost } from './host-node.js';

initSync({ module: readFileSync(new URL('./sandrun_wasm_bg.wasm', import.meta.url)) });
__setHost(nodeHost);

export * from './api.js';
/** A no-op in Node (already initialized); present so the same code runs everywhere. */
export default async function init() {}
