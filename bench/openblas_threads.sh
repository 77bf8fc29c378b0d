#!/usr/bin/env bash
# Builds bench/openblas_threads.cpp against rlfarm's CPU sources (each vector
# kernel with its own flags, as CMakeLists.txt does) and runs it.
#   bash bench/openblas_threads.sh        RLFARM_THREADS=N sets the pool size
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -O3 -pthread -Wno-uninitialized -Inative)
avx2=(-mavx2 -mfma -mf16c)
avx512=(-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c)
for isa in avx2 avx512; do
  declare -n isa_flags=$isa
  for kernel in gemm kernels; do
    g++ "${flags[@]}" "${isa_flags[@]}" -c "native/cpu/${kernel}_${isa}.cpp" -o "$out/${kernel}_${isa}.o"
  done
done
g++ "${flags[@]}" bench/openblas_threads.cpp native/cpu/gemm.cpp native/cpu/dispatch.cpp native/cpu/gemm_generic.cpp \
  native/cpu/kernels_generic.cpp native/core/thread_pool.cpp "$out"/*.o -ldl -o "$out/openblas_threads"
"$out/openblas_threads"
