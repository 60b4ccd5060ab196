#!/bin/sh
# Installs the Debian 12 packages llmkit needs to build, test and run its demo.
# Idempotent: installs only what is missing, so `make` calls it every time at almost no cost.
# Usage: install-deps.sh [--check]   (--check lists what is missing and exits 1 if anything is)
set -eu

PKGS="build-essential cmake pkg-config ninja-build
libsimdjson-dev nlohmann-json3-dev libxxhash-dev libzstd-dev zlib1g-dev
libicu-dev libre2-dev libcld2-dev libgumbo-dev libsentencepiece-dev sentencepiece
libcpp-httplib-dev libssl-dev libbrotli-dev
libopenblas-openmp-dev libdnnl-dev libblis4-openmp
catch2 libopenmpi-dev openmpi-bin
mandoc bsdextrautils python3.11-doc zstd gnuplot-nox python3-jinja2
slurm-wlm munge"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing:$missing"
  exit 1
fi

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once when they are absent or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
