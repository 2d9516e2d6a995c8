#!/usr/bin/env bash
# The README's first command: installs missing Debian packages, builds, and runs the
# main job on the bundled defaults (the trained llama-small model and the bundled
# calibration corpus), writing the statistics to ./out/calibration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/worker/qcal-worker calibrate \
  --model tests/data/models/llama-small \
  --corpus tests/data/corpus/calib.jsonl.zst --num-samples 64 --seq-len 256 \
  --batch-size 8 --out out/calibration "$@"
