#!/usr/bin/env bash
# Configures and builds qcal with CMake (Release) into ./build.
# QCAL_WERROR=ON turns warnings in qcal's own code into errors (the test command sets
# it); when QCAL_WERROR is unset an existing build keeps its setting, so running the
# first README command after the second does not rebuild everything.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
werror=()
if [ -n "${QCAL_WERROR:-}" ]; then werror=(-DQCAL_WERROR="$QCAL_WERROR"); fi
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${werror[@]}" "$@"
else
  cmake -S . -B build "${werror[@]}" "$@" >/dev/null
fi
cmake --build build -j "$(nproc)"
