#!/usr/bin/env bash
# npm run bench: first the goal table of issue 14 (bench/goals.mjs: every goal row with its
# baseline measured in the same run, whether it is met, and what stands in the way), then
# the detailed sections: the devnet benchmark (bench/devnet.sh), the SDK benchmark
# (bench/sdk.mjs), trust, GPU and IPFS, each printing its table with baselines from the run.
#
#   npm run bench                        everything, as Markdown
#   npm run bench -- --json FILE         the same, and the goal figures as JSON in FILE
#   npm run -s bench -- --json           only the goal rows: one JSON document on stdout
#                                        (-s: npm prints no banner; everything else on stderr)
#   npm run bench -- --goals-only        only the goal table
#   node bench/readme.mjs FILE           rewrite README.md's goal table from FILE
#
# Builds what is missing: pkg/ (node scripts/build.mjs) and the release devnet binary
# (`cargo build --release -p sandrun-devnet`; a no-op when fresh).
set -euo pipefail
cd "$(dirname "$0")/.."

JSON=""
GOALS_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --json)
      if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then JSON="$2"; shift 2; else JSON="-"; shift; fi ;;
    --goals-only) GOALS_ONLY=1; shift ;;
    *) echo "unknown flag $1 (--json [FILE], --goals-only)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh >&2

if [ ! -f pkg/index.node.js ] || [ ! -f pkg/sandrun_wasm_bg.wasm ]; then
  echo "pkg/ is missing: building it (node scripts/build.mjs)" >&2
  node scripts/build.mjs >&2
fi
cargo build --release -p sandrun-devnet >&2
export SANDRUN_DEVNET_BIN=${CARGO_TARGET_DIR:-target}/release/sandrun-devnet

if [ "$JSON" = "-" ]; then
  # stdout carries the JSON document and nothing else.
  node bench/goals.mjs --json -
  exit 0
fi

echo "## Goals (issue 14)"
echo
if [ -n "$JSON" ]; then node bench/goals.mjs --json "$JSON"; else node bench/goals.mjs; fi
[ "$GOALS_ONLY" = 1 ] && exit 0
echo
echo "## sandrun-devnet"
echo
bash bench/devnet.sh
echo
echo "## @sandrun/wasm"
echo
node bench/sdk.mjs
echo
echo "## trust: verification and consensus"
echo
node bench/trust.mjs
echo
echo "## GPU: batch SHA-256 (WebGPU vs wasm vs native) and the two wasm modules' sizes"
echo
node bench/gpu.mjs
echo
echo "## IPFS: verified vs unverified fetch of the same bytes"
echo
node bench/ipfs.mjs
