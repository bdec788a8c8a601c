#!/usr/bin/env bash
# npm run bench: the devnet benchmark (bench/devnet.sh), then the SDK benchmark
# (bench/sdk.mjs), the trust benchmark and the GPU benchmark (bench/gpu.mjs), each printing
# its table with baselines measured in the same run.
# Builds what is missing: pkg/ (node scripts/build.mjs) and the release devnet binary
# (bench/devnet.sh runs `cargo build --release -p sandrun-devnet`; a no-op when fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2

if [ ! -f pkg/index.node.js ] || [ ! -f pkg/sandrun_wasm_bg.wasm ]; then
  echo "pkg/ is missing: building it (node scripts/build.mjs)" >&2
  node scripts/build.mjs >&2
fi

echo "## sandrun-devnet"
echo
bash bench/devnet.sh
echo
echo "## @sandrun/wasm"
echo
SANDRUN_DEVNET_BIN=${CARGO_TARGET_DIR:-target}/release/sandrun-devnet node bench/sdk.mjs
echo
echo "## trust: verification and consensus"
echo
SANDRUN_DEVNET_BIN=${CARGO_TARGET_DIR:-target}/release/sandrun-devnet node bench/trust.mjs
echo
echo "## GPU: batch SHA-256 (WebGPU vs wasm vs native) and the two wasm modules' sizes"
echo
node bench/gpu.mjs
echo
echo "## IPFS: verified vs unverified fetch of the same bytes"
echo
SANDRUN_DEVNET_BIN=${CARGO_TARGET_DIR:-target}/release/sandrun-devnet node bench/ipfs.mjs
