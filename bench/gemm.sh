#!/bin/sh
# The CPU matmul kernels (oneDNN, OpenBLAS, and BLIS when installed) on gpt2-124m's products at
# B*T = 256 and 4096 rows, with OPENBLAS_CORETYPE as it is here and set to Haswell (as some
# machines set it); the figures say why the CPU backend runs oneDNN first (lib/backend/cpu/gemm.hpp).
# Usage: gemm.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: gemm.sh BIN_DIR}" && pwd)
for rows in 256 4096; do
  echo "-- OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
  "$bin/gemm" --model gpt2-124m --rows $rows
  if [ "${OPENBLAS_CORETYPE:-}" != Haswell ]; then
    echo "-- OPENBLAS_CORETYPE=Haswell"
    OPENBLAS_CORETYPE=Haswell "$bin/gemm" --model gpt2-124m --rows $rows
  fi
done
