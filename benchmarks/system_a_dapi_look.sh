#!/usr/bin/env bash
# How DAPI enters System A's training, on the cohort, folds and budget of `ctcid bench system-a` (medium, 12
# patients x 120 cells of 64 px, seed 0; ResNet-18 from scratch at 40 px, 12 epochs' worth of optimiser steps
# for every variant, 5 folds): `ctcid ablate --system A-dapi` (BF only; the three augmentation families; + DAPI as
# extra samples in its own window and as a bright-field stand-in; DAPI alone in training, tested on bright
# field), every row paired with BF only on the same held-out patients. About 36 minutes on 2 CPU cores.
# Usage: bash benchmarks/system_a_dapi_look.sh WORKDIR [JOBS]
set -euo pipefail
work=${1:?work folder}
jobs=${2:-1}
mkdir -p "$work"
cd "$work"
[ -e ds/dataset.json ] || {  # the cohort `ctcid bench system-a` renders (its WORK/ds)
  rm -rf ds
  ${PYTHON:-python3} -c "from ctcid.synth import SynthConfig, synth_dataset; synth_dataset('ds', SynthConfig(
      patients=12, cells_per_patient=120, ctc_fraction=0.15, difficulty='medium', size=64, seed=0))"
}
ctcid ablate ds adapi --system A-dapi --model resnet18 --input-size 40 --batch-size 64 --folds 5 --seed 0 \
  --n-boot 1000 --epochs 12 --patience 12 --jobs "$jobs" --no-progress $([ -d adapi ] && echo --resume)
