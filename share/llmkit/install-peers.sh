#!/bin/sh
# Installs the peers that tests and benchmarks compare llmkit with, at the versions pinned in
# share/llmkit/peers/package.json, into DIR (default build/peers): llama.cpp's CPU libraries
# through the npm package node-llama-cpp (no downloads or builds at run time), and OpenAI's
# official client (the npm package openai) that llm-serve's tests drive it with. Needs node >= 20
# and npm; without them, or offline, it says so and exits 0: the tests that need a peer then
# report SKIPPED. Idempotent: nothing to do when the pinned versions are there.
# Usage: install-peers.sh [DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-build/peers}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "install-peers: no node/npm here: tests that compare with llama.cpp will be SKIPPED" >&2
  exit 0
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "install-peers: node $(node --version) is older than 20 (node-llama-cpp needs 20): those tests will be SKIPPED" >&2
  exit 0
fi
if cmp -s "$here/peers/package.json" "$dest/package.json" && [ -d "$dest/node_modules/node-llama-cpp" ] && [ -d "$dest/node_modules/openai" ]; then
  exit 0
fi
cp "$here/peers/package.json" "$dest/package.json"
# --omit=optional --ignore-scripts: only the linux-x64 CPU binaries pinned above, no build step.
if ! (cd "$dest" && npm install --no-audit --no-fund --omit=optional --ignore-scripts --loglevel=error > install.log 2>&1); then
  echo "install-peers: npm install failed (offline?): tests that compare with llama.cpp will be SKIPPED; see $dest/install.log" >&2
  rm -f "$dest/package.json"
  exit 0
fi
echo "install-peers: node-llama-cpp $(node -p "require('$dest/node_modules/node-llama-cpp/package.json').version")," \
  "openai $(node -p "require('$dest/node_modules/openai/package.json').version") in $dest" >&2
