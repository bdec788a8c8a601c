// webpack 5, production mode, nothing special for the wasm: the package loads it with
// new URL('sandrun_wasm_bg.wasm', import.meta.url), which webpack emits as an asset.
import { fileURLToPath } from 'node:url';

export default {
  mode: 'production',
  target: 'web',
  entry: './src/main.js',
  output: { path: fileURLToPath(new URL('./dist', import.meta.url)), filename: 'main.js', clean: true },
  performance: { hints: false },
};
