#!/usr/bin/env bash
# Calibration of the synthetic cohort's `medium` preset against the published figures:
# a bright-field-only ResNet should land near System A's F1 (~0.8 for the CTC class) and a model on all four
# channels near System B's accuracy (~0.97), both with patient-grouped cross-validation.
# Usage: bash benchmarks/calibrate_medium.sh WORKDIR [BF_EPOCHS] [ALL_CHANNEL_EPOCHS]
set -euo pipefail
work=${1:?work folder}
bf_epochs=${2:-30}
all_epochs=${3:-10}
mkdir -p "$work"
ctcid synth "$work/export" --patients 12 --cells-per-patient 200 --ctc-fraction 0.15 --difficulty medium --seed 7 --overwrite
ctcid ingest "$work/export" "$work/dataset" --overwrite
common=(--models resnet18 --input-size 64 --batch-size 64 --folds 3 --n-boot 500 --no-progress --overwrite)
ctcid cv "$work/dataset" "$work/bf" --channels BF --epochs "$bf_epochs" --patience "$bf_epochs" "${common[@]}"
ctcid cv "$work/dataset" "$work/all4" --channels BF,DAPI,CK,CD45 --epochs "$all_epochs" --patience "$all_epochs" "${common[@]}"
