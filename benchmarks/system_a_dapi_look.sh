#!/usr/bin/env bash
# DAPI in training, shown in its own intensity window or as a stand-in for bright field (`--extra-look own`
# and `stand-in`):
# System A's full recipe (three augmentation families + DAPI in training) on the cohort and folds of
# `ctcid bench system-a` (medium, 12 patients x 120 cells, seed 0), with the same step budget as `ctcid ablate`,
# compared with bright field only on the same held-out patients (paired patient bootstrap).
# Usage: bash benchmarks/system_a_dapi_look.sh WORKDIR
set -euo pipefail
work=${1:?work folder}
mkdir -p "$work"
cd "$work"
[ -d ds ] || {
  ctcid synth export --patients 12 --cells-per-patient 120 --ctc-fraction 0.15 --difficulty medium --size 64 --seed 0
  ctcid ingest export ds
}
python - <<'PY'
from ctcid.io import CellDataset
from ctcid.train import TrainConfig
from ctcid.workflows import run_variants, system_a_variants

base = TrainConfig(model="resnet18", input_size=40, epochs=12, patience=12, n_folds=5, seed=0, batch_size=64,
                   n_boot=1000, progress=False)
v = system_a_variants(base)
full = v["bf+aug+dapi"]
variants = {"bf": v["bf"], "bf+aug+dapi": full.replace(extra_look="own"),
            "bf+aug+dapi_standin": full.replace(extra_look="stand-in")}
run_variants(CellDataset.open("ds"), variants, "standin", base=base, same_steps=True, resume=True, log=print,
             title="System A ablation, DAPI as a bright-field stand-in")
PY
