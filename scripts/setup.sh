#!/usr/bin/env bash
# Installs what building and testing @sandrun/wasm needs on a fresh machine, and
# nothing that is already there: the wasm32 target, the wasm-bindgen CLI at the version
# Cargo.lock pins, npm packages, and (with --browser) Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

for tool in cargo rustup node npm python3; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is required but not installed" >&2; exit 1; }
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wb_version (a few minutes, once)"
  # Not --locked: a locked install fails here on a crate version missing from the registry.
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

if [ ! -d node_modules/typescript ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The tests' own npm projects (their installs are kept in their node_modules): other
# runtimes (Node 22/24, Bun, Deno: binaries inside npm packages), and the bundlers and
# package linters of the packaging tests. Only for the tests (--browser): npm start needs none.
if [ "$want_browser" = 1 ]; then
  for dir in tests/runtimes tests/pack; do
    [ -f "$dir/package-lock.json" ] || continue
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      echo "setup: installing npm packages of $dir"
      npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
  done
fi

# The GPU kernels' native tests (cargo test -p sandrun-gpu) run on Mesa's lavapipe, a
# Vulkan driver on the CPU: wgpu needs the Vulkan loader and one driver.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "setup: installing Mesa's Vulkan drivers (lavapipe) for the GPU kernel tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Chromium (Debian package) for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "setup: ready"
