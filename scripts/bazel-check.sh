#!/usr/bin/env bash
# Checks that the Bazel build (WORKSPACE.bazel, BUILD.bazel files; see docs/bazel.md)
# still mirrors the CMake build: compares every CMake target with its Bazel rule
# (third_party/bazel/check_mirror.py), builds every library and the product
# binaries, and runs a few tests. Offline and non-interactive;
# scripts/test.sh calls it when WORKSPACE.bazel exists.
#
# Environment: BAZEL (default: bazel), QCAL_BAZEL_JOBS (default: 2),
# QCAL_WERROR (default ON, as in scripts/test.sh: warnings are errors),
# QCAL_SKIP_MIRROR_CHECK=1 skips the target-by-target comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

bazel_bin="${BAZEL:-bazel}"
jobs="${QCAL_BAZEL_JOBS:-2}"
if ! command -v "$bazel_bin" >/dev/null 2>&1; then
  echo "bazel-check: '$bazel_bin' not found (Debian: apt-get install bazel-bootstrap)" >&2
  exit 1
fi

flags=(--jobs="$jobs")
if [ "${QCAL_WERROR:-ON}" = "ON" ]; then
  flags+=(--config=werror)
fi

# The product binaries: each links a different part of the system libraries
# (libtorch; gRPC reflection, RocksDB and prometheus-cpp; the client).
binaries=(
  //worker:qcal-worker
  //server:qcal-coordinator
  //client:qcal
)
# A few tests: plain, statistics, and libtorch with the test data.
tests=(
  //common:safetensors_test
  //common/stats:tensor_stats_test
  //tests:model_reference_test
)

start=$(date +%s)
if [ "${QCAL_SKIP_MIRROR_CHECK:-0}" != "1" ]; then
  python3 third_party/bazel/check_mirror.py --bazel "$bazel_bin"
fi
# Every library (the twin of each CMake library; the system libraries in
# //third_party have nothing to build).
library_list=$("$bazel_bin" query --noshow_progress \
  'kind("cc_library rule", //...) except //third_party/...')
mapfile -t libraries <<<"$library_list"
echo "bazel-check: building ${#libraries[@]} libraries and ${#binaries[@]} binaries"
"$bazel_bin" build "${flags[@]}" "${libraries[@]}" "${binaries[@]}"
"$bazel_bin" test "${flags[@]}" "${tests[@]}"
echo "bazel-check: OK ($(( $(date +%s) - start )) s)"
