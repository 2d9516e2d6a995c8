#!/usr/bin/env bash
# The README's first command: installs missing Debian packages, builds, and runs the
# whole workflow on this machine with the bundled defaults: `qcal run` starts a
# coordinator and 2 workers, calibrates llama-small-outliers (the trained llama-small
# with outliers planted in layers 1 and 4, same function; scripts/make-outlier-model.sh)
# on the bundled calibration corpus, evaluates the outlier thresholds on the bundled
# evaluation corpus with a 4 % perplexity budget, prints the recommended threshold and
# its shadow layers ({1, 4}), exports the model at that threshold and writes the
# report. Results (mllm's act_scales_distribution.json and model_res_acc.json,
# SmoothQuant's act_scales, evaluation.json, report.html, export-mllm/ and
# export-compressed-tensors/, logs/) go to ./qcal-out. Extra arguments go to
# `qcal run` (e.g. --workers 1, --out DIR). tests/report_browser_test runs the same.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/client/qcal run \
  --model tests/data/models/llama-small-outliers \
  --corpus tests/data/corpus/calib.jsonl.zst --num-samples 128 --seq-len 256 \
  --eval-corpus tests/data/corpus/eval.jsonl.zst --budget-metric ppl --budget 0.04 \
  --out qcal-out "$@"
