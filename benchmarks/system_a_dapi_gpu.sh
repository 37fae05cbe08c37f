#!/usr/bin/env bash
# How DAPI enters System A's training, on the cohorts and at the budget of benchmarks/system_a_gpu.sh (12 patients x
# 200 cells, ResNet-18 from scratch at 64 px, 5 folds, one cohort per seed: the same cells and folds):
#  1. `ctcid ablate --system A-dapi`, 30 epochs' worth of optimiser steps for every variant: BF only, the three
#     augmentation families, DAPI added as extra samples in its own window (System A's full recipe) or as a
#     bright-field stand-in, and DAPI alone in training (tested on bright field);
#  2. System A's headline rows (BF only, the three families, the full recipe) at twice that budget, 60 epochs'
#     worth of steps, so that the full recipe shows bright field as many times as the 30-epoch runs without DAPI.
# Usage: bash benchmarks/system_a_dapi_gpu.sh WORKDIR OUTDIR [SEEDS] [JOBS] [LONG_SEEDS]
#   SEEDS: cohorts of step 1 (default 0); LONG_SEEDS: cohorts of step 2 (default: SEEDS; '' skips it).
#   CTCID overrides the command (e.g. CTCID="python3 -m ctcid" from a source tree).
set -euo pipefail
work=${1:?work folder}
out=${2:?folder for the results}
seeds=${3:-0}
jobs=${4:-8}
long=${5-$seeds}
ctcid=${CTCID:-ctcid}
python=${PYTHON:-python3}
common="--model resnet18 --input-size 64 --batch-size 64 --folds 5 --n-boot 1000 --jobs $jobs --no-progress"
mkdir -p "$work" "$out"

cohort() {  # the cohort of `ctcid bench system-a --patients 12 --cells-per-patient 200 --seed SEED`
    local ds=$work/seed$1/ds
    if [ ! -e "$ds/dataset.json" ]; then
        rm -rf "$ds"
        mkdir -p "$work/seed$1"
        $python -c "from ctcid.synth import SynthConfig, synth_dataset; synth_dataset('$ds', SynthConfig(
            patients=12, cells_per_patient=200, ctc_fraction=0.15, difficulty='medium', size=64, seed=$1))"
    fi
}

keep() {  # OUTDIR/NAME_table.md, and the comparison's tables and out-of-fold predictions in OUTDIR/NAME.tar.gz
    local from=$1 name=$2
    cp "$from/table.md" "$out/${name}_table.md"
    tar czf "$out/$name.tar.gz" -C "$from" table.md table.csv per_fold.csv folds.csv \
        $(cd "$from" && ls -d */oof_predictions.csv */fold*/history.csv)
}

for seed in ${seeds//,/ }; do
    cohort "$seed"
    $ctcid ablate "$work/seed$seed/ds" "$work/seed$seed/dapi" --system A-dapi --epochs 30 --patience 30 \
        --seed "$seed" $common
    keep "$work/seed$seed/dapi" "dapi_seed$seed"
done
for seed in ${long//,/ }; do
    cohort "$seed"
    $ctcid ablate "$work/seed$seed/ds" "$work/seed$seed/long" --system A --variants bf,bf+aug,bf+aug+dapi \
        --epochs 60 --patience 60 --seed "$seed" $common
    keep "$work/seed$seed/long" "long_seed$seed"
done
