#!/bin/sh
# Runs every benchmark in bench/ with the build's commands. Usage: run-all.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: run-all.sh BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*.sh; do
  case "$(basename "$b")" in run-all.sh | lib.sh) continue ;; esac
  echo "== $(basename "$b" .sh)"
  sh "$b" "$bin"
done
