#!/usr/bin/env bash
# npm start: set up, build, start a local devnet on the SDK's default endpoint
# (127.0.0.1:7700) with a local chain, run the main example job through @sandrun/wasm
# from Node, paid through escrow, print the verified result, stop the devnet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p sandrun-devnet
node scripts/build.mjs >/dev/null
data=$(mktemp -d)
target=${CARGO_TARGET_DIR:-target}
"$target/release/sandrun-devnet" --workers 3 --port-base 7700 --chain --json --data-dir "$data" > "$data/devnet.json" 2> "$data/devnet.log" &
devnet=$!
trap 'kill $devnet 2>/dev/null; wait $devnet 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do [ -s "$data/devnet.json" ] && break; kill -0 $devnet 2>/dev/null || { cat "$data/devnet.log" >&2; exit 1; }; sleep 0.1; done
echo "devnet: workers on 127.0.0.1:7700-7702, registry on :7703, chain on :7704"
SANDRUN_DEVNET="$(cat "$data/devnet.json")" node examples/hello.mjs
