#!/usr/bin/env bash
# Installs the real Ethereum nodes the test suite runs against, into .real-nodes/ (ignored by git).
# Idempotent: does nothing when they are already there. Needs Node.js/npm and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

ANVIL_VERSION=1.7.1
anvil_dir=.real-nodes/anvil
anvil_bin=$anvil_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

if [ ! -x "$anvil_bin" ]; then
  echo "installing anvil $ANVIL_VERSION (execution client) into $anvil_dir"
  mkdir -p "$anvil_dir"
  (cd "$anvil_dir" && npm install --no-audit --no-fund --silent "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null)
fi
"$anvil_bin" --version | head -n 1

lodestar_dir=.real-nodes/lodestar
lodestar_bin=$lodestar_dir/node_modules/.bin/lodestar
if [ ! -x "$lodestar_bin" ]; then
  echo "installing Lodestar 1.5.1 (consensus client) into $lodestar_dir (about a minute)"
  rm -rf "$lodestar_dir"
  mkdir -p "$lodestar_dir"
  cp scripts/real-nodes/lodestar/package.json "$lodestar_dir/"
  (cd "$lodestar_dir" && npm install --no-audit --no-fund --silent >/dev/null)
fi
echo "lodestar: $("$lodestar_bin" --version 2>/dev/null | tail -n 1 || echo installed)"
