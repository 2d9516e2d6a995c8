#!/usr/bin/env bash
# Configures and builds qcal with CMake (Release) into ./build.
# QCAL_WERROR=ON turns warnings in qcal's own code into errors (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DQCAL_WERROR="${QCAL_WERROR:-OFF}" "$@"
else
  cmake -S . -B build -DQCAL_WERROR="${QCAL_WERROR:-OFF}" "$@" >/dev/null
fi
cmake --build build -j "$(nproc)"
