// CommonJS entry: `const { Sandrun } = require('@sandrun/wasm')`.
// The package is ES modules; Node loads them with require() (require(esm), on by default
// since Node 20.19 and 22.12; Bun and Deno have it too), so these are the very objects
// that `import` gives: one wasm instance, one SandrunError class.
'use strict';
let esm;
try {
  esm = require('./index.node.js');
} catch (e) {
  if (e && e.code === 'ERR_REQUIRE_ESM') {
    throw Object.assign(
      new Error(
        `@sandrun/wasm is an ES module and this Node.js (${process.version}) cannot require() one. ` +
          "Use `const { Sandrun } = await import('@sandrun/wasm')`, or Node.js 22.12 or later (supported: 22 and 24).",
      ),
      { code: 'ERR_REQUIRE_ESM', cause: e },
    );
  }
  throw e;
}
// The shape TypeScript's CommonJS interop expects (index.d.cts): named exports, and
// `init` as `default` behind the __esModule marker.
Object.defineProperty(exports, '__esModule', { value: true });
exports.default = esm.default;
for (const name of Object.keys(esm)) if (name !== 'default' && name !== '__esModule') exports[name] = esm[name];
