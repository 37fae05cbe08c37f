#!/usr/bin/env bash
# System A's ablation at the budget of the `medium` calibration (benchmarks/calibrate_medium.sh): ResNet-18 from
# scratch at 64 px, 30 epochs' worth of optimiser steps for every variant, 12 patients x 200 cells, 5 folds, one
# cohort per seed. Sized for one GPU: `--jobs` trains that many runs at once, each in its own process.
# Usage: bash benchmarks/system_a_gpu.sh WORKDIR OUTDIR [SEEDS] [JOBS]
#   CTCID overrides the command (e.g. CTCID="python3 -m ctcid" from a source tree).
set -euo pipefail
work=${1:?work folder}
out=${2:?folder for the results}
seeds=${3:-0}
jobs=${4:-8}
ctcid=${CTCID:-ctcid}
mkdir -p "$work" "$out"
for seed in ${seeds//,/ }; do
    $ctcid bench system-a "$work/seed$seed" --patients 12 --cells-per-patient 200 --input-size 64 --epochs 30 \
        --folds 5 --architectures '' --seed "$seed" --jobs "$jobs" \
        --out "$out/system_a_64px_seed$seed.json" --markdown "$out/system_a_64px_seed$seed.md"
done
