#!/usr/bin/env bash
# npm test: set up, then every test: native Rust (SDK core + devnet), the core in wasm32, the npm package
# from Node against a devnet, the spec's TypeScript examples under tsc --strict, headless
# Chromium (the package, and the dApp in www/), the packed tarball in Node ESM/CommonJS/Vite/
# webpack projects, and Node 22/24, Bun and Deno. Each suite starts the servers it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
echo "== contracts: artifacts match a fresh compile; escrow tests on anvil"
node scripts/compile-contracts.mjs --check
node --test tests/contracts/
echo "== layers: the core's modules import downward only"
python3 scripts/layers.py
echo "== native: cargo test (SDK core, devnet)"
cargo build -q -p sandrun-devnet
cargo test --workspace
echo "== wasm: the core compiled to wasm32, run by wasm-bindgen-test in Node"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test --target wasm32-unknown-unknown --test wasm
echo "== build the npm package"
node scripts/build.mjs
echo "== types: the spec's examples under tsc --strict"
npx tsc -p tests/types
echo "== JS: node:test on the built package, devnet, Chromium"
export SANDRUN_DEVNET_BIN="${CARGO_TARGET_DIR:-target}/debug/sandrun-devnet"
node --test --test-concurrency=1 --test-timeout=300000 tests/js/*.test.mjs tests/e2e/*.test.mjs
echo "== packaging: npm pack, publint, arethetypeswrong, Node ESM + CommonJS + Vite + webpack projects (the bundles in Chromium), tsc strict"
node --test --test-concurrency=1 tests/pack/*.test.mjs
echo "== runtimes: the job flow on Node 22, Node 24, Bun and Deno; the JS suites on Node 22 and 24"
node --test --test-concurrency=1 tests/runtimes/*.test.mjs
echo "== soak: 500 jobs through the SDK on a 5-worker devnet with anvil, faults and 429s switched under it"
node tests/soak/soak.mjs --jobs 500
