#!/usr/bin/env bash
# The README's first command: installs missing Debian packages, builds, and runs the
# whole workflow on this machine with the bundled defaults: `qcal run` starts a
# coordinator and 2 workers, calibrates the trained llama-small model on the bundled
# calibration corpus, evaluates the outlier thresholds on the bundled evaluation
# corpus, prints the recommended threshold and its shadow layers, and exports the
# model at that threshold. Results (mllm's act_scales_distribution.json and
# model_res_acc.json, SmoothQuant's act_scales, evaluation.json, export-mllm/ and
# export-compressed-tensors/, logs/) go to ./qcal-out. Extra arguments go to
# `qcal run` (e.g. --workers 1, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/client/qcal run \
  --model tests/data/models/llama-small \
  --corpus tests/data/corpus/calib.jsonl.zst --num-samples 128 --seq-len 256 \
  --eval-corpus tests/data/corpus/eval.jsonl.zst --out qcal-out "$@"
