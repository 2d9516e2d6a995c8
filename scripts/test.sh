#!/usr/bin/env bash
# The README's test command: installs missing Debian packages, builds everything and
# runs every test (CTest), then checks that the Bazel build of the same targets still
# works offline (libraries and one test). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
QCAL_WERROR="${QCAL_WERROR:-ON}" bash scripts/build.sh
(cd build && ctest --output-on-failure -j 2)
if [ "${QCAL_SKIP_BAZEL:-0}" != "1" ] && [ -f WORKSPACE.bazel ]; then
  bash scripts/bazel-check.sh
fi
