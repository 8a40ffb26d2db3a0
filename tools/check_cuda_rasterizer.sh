#!/usr/bin/env bash
# Builds and runs the standalone check of the rasterizer op's CUDA kernel
# (tools/rasterize_triangles_gpu_check.cu.cc, beside this script; the kernel and its headers are
# in mofl/render/ops): GPU against a host replay of the CPU kernel, bit for bit, plus timings.
# Needs nvcc and a CUDA device, no TensorFlow.
#
# The kernel and the check are compiled with the op build's nvcc flags (build_ops.py,
# nvcc_command): -x cu -std=c++17 -O3 --fmad=false -Xcompiler -fPIC -D_GLIBCXX_USE_CXX11_ABI=1,
# SASS for each architecture in $MOFL_CUDA_ARCHS (default 75,80,86,89,90) plus PTX of the first.
# The host side of the check also gets the CPU kernel's -ffp-contract=off, since it plays the CPU
# kernel. Warnings (-Wall -Wextra) are shown, not fatal.
#
# Usage: tools/check_cuda_rasterizer.sh [--sanitize] [--quick] [--host-only] [OUTPUT_DIR]
#   OUTPUT_DIR   where the objects and the binary go (default /tmp/mofl_cuda_check).
#   --quick      small cases only, no timings.
#   --host-only  check the host reference against a brute-force rasterizer; no GPU needed.
#   --sanitize   afterwards run the --quick cases under compute-sanitizer (memcheck, racecheck,
#                initcheck) when it can be found (PATH, next to the real nvcc, /usr/local/cuda).
# Exit status: the check's (0 all passed, 1 a mismatch, 2 no CUDA device), else 3 when a sanitizer
# run reports errors, 4 on a build failure.
set -euo pipefail

start_seconds=$(date +%s.%N)
tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$tools_dir/.." && pwd)
ops_dir="$repo_root/mofl/render/ops"
check_source="$tools_dir/rasterize_triangles_gpu_check.cu.cc"

sanitize=0
check_args=()
output_dir=/tmp/mofl_cuda_check
for argument in "$@"; do
  case "$argument" in
    --sanitize) sanitize=1 ;;
    --quick|--host-only) check_args+=("$argument") ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $argument" >&2; exit 64 ;;
    *) output_dir=$argument ;;
  esac
done

elapsed() {
  echo "$(date +%s.%N) $start_seconds" | awk '{printf "%.1f", $1 - $2}'
}

finish() {
  echo "== total wall time $(elapsed) s, exit status $1"
  exit "$1"
}

echo "== nvcc: $(command -v nvcc)"
nvcc --version | sed -n '/release/p'
echo "== host compiler: $( (g++ --version 2>/dev/null || echo 'g++ not found') | head -1)"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "== GPU: $(nvidia-smi -L 2>&1 | tr '\n' ' ')"
else
  echo "== GPU: nvidia-smi not found"
fi

IFS=',' read -r -a archs <<< "${MOFL_CUDA_ARCHS:-75,80,86,89,90}"
gencode=()
for arch in "${archs[@]}"; do
  arch=${arch// /}
  gencode+=("-gencode=arch=compute_${arch},code=sm_${arch}")
done
first_arch=${archs[0]// /}
gencode+=("-gencode=arch=compute_${first_arch},code=compute_${first_arch}")

# build_ops.py's flags; --threads 0 only compiles the architectures in parallel.
nvcc_flags=(-x cu -std=c++17 -O3 --fmad=false -Xcompiler -fPIC -D_GLIBCXX_USE_CXX11_ABI=1
            "-I$ops_dir" "${gencode[@]}" --threads 0 -Xcompiler -Wall,-Wextra)

mkdir -p "$output_dir"
binary="$output_dir/rasterize_triangles_gpu_check"
echo "== building in $output_dir (archs ${archs[*]})"
build() {
  echo "+ $*"
  "$@" || { echo "== build failed"; finish 4; }
}
build nvcc -c "$ops_dir/rasterize_triangles_gpu.cu.cc" -o "$output_dir/rasterize_triangles_gpu.o" \
  "${nvcc_flags[@]}"
build nvcc -c "$check_source" \
  -o "$output_dir/rasterize_triangles_gpu_check.o" "${nvcc_flags[@]}" -Xcompiler -ffp-contract=off
build nvcc "$output_dir/rasterize_triangles_gpu_check.o" "$output_dir/rasterize_triangles_gpu.o" \
  -o "$binary"
echo "== built in $(elapsed) s"

echo "== running $binary ${check_args[*]:-}"
status=0
"$binary" "${check_args[@]+"${check_args[@]}"}" || status=$?
if [[ $status -ne 0 ]]; then
  finish "$status"
fi

if [[ $sanitize -eq 1 ]]; then
  sanitizer=$(command -v compute-sanitizer || true)
  if [[ -z $sanitizer ]]; then
    for candidate in "$(dirname "$(readlink -f "$(command -v nvcc)")")/compute-sanitizer" \
                     /usr/local/cuda/bin/compute-sanitizer; do
      if [[ -x $candidate ]]; then sanitizer=$candidate; break; fi
    done
  fi
  if [[ -z $sanitizer ]]; then
    echo "== compute-sanitizer not found; sanitizer runs skipped"
  else
    for tool in memcheck racecheck initcheck; do
      tool_flags=(--tool "$tool" --error-exitcode 3)
      if [[ $tool == memcheck ]]; then tool_flags+=(--leak-check full); fi
      echo "== $sanitizer ${tool_flags[*]} $binary --quick"
      "$sanitizer" "${tool_flags[@]}" "$binary" --quick || status=$?
      if [[ $status -ne 0 ]]; then
        echo "== $tool run failed with status $status"
        finish "$status"
      fi
      echo "== $tool clean at $(elapsed) s"
    done
  fi
fi
finish "$status"
