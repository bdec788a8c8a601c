#!/usr/bin/env bash
# npm run www: set up, build the devnet and the package, then start a devnet (--chain, and
# --ipfs where the devnet has it) and serve the dApp in www/ on 127.0.0.1. The page's URL is
# printed on a line of its own; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p sandrun-devnet
node scripts/build.mjs >/dev/null
exec node scripts/www.mjs "$@"
