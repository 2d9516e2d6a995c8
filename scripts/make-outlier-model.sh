#!/usr/bin/env bash
# Makes tests/data/models/llama-small-outliers: llama-small with activation outliers
# planted in the MLP of layers 1 and 4 (bench/plant_outliers.cc: the two spikiest
# down_proj input channels of each, up_proj rows x2^6 and down_proj columns x2^-6, so
# the model computes exactly the same function). It is the default model of
# scripts/run.sh, whose evaluation finds exactly {1, 4} as shadow layers.
# Deterministic: rerunning it rewrites the same bytes. Needs a build (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/data/models/llama-small-outliers
rm -rf "$out"
build/bench/qcal-plant-outliers --model tests/data/models/llama-small \
  --corpus tests/data/corpus/calib.jsonl.zst --num-samples 64 --seq-len 256 \
  --layers 1,4 --channels 2 --log2-scale 6 --out "$out"
