#!/usr/bin/env bash
# System B's clinical claim, reproduced on synthetic patients: do a model's per-patient CTC counts predict survival
# as well as the true (manual) counts? And how much prognostic information is lost when the classifier errs?
#
# 1. Training cohorts of 40 patients x 100 cells (15% CTCs), `medium` and `hard`, ingested. Gradient-boosted trees
#    on the hand-crafted features (`features_gbm`): on `medium` with all four channels (`gbm4`) and with bright field
#    only (`gbm-bf`); on `hard` with bright field only (`gbm-hard-bf`), the weakest classifier.
# 2. For each test seed, 200 other patients x 30 cells (8% CTCs, sample ids N001...) with survival outcomes drawn
#    from their true CTC counts (`ctcid synth --outcomes`); the same patients (same seed: same CTC counts, hence the
#    same clinical.csv) are rendered at `medium` and at `hard`. Each export is predicted from its raw files.
# 3. `ctcid survival` compares the true counts (the reference, `manual`) with the counts in each prediction's
#    counts.csv (default column: `ctc_estimate`): `predicted` (gbm4), `predicted_bf` (gbm-bf) and
#    `predicted_hard_bf` (gbm-hard-bf on the hard rendering), Cox models adjusted for age and stage; and once more
#    for `predicted` without rounding the estimates to whole cells before the cut-off (`--no-round-counts`).
#
# Usage: bash benchmarks/survival.sh WORKDIR [TEST_SEEDS...]   (default test seeds: 12 13 14)
# Results: WORKDIR/survival_<seed>/ (survival.json, survival.md, figures) and WORKDIR/summary.tsv.
# About 16 minutes on 2 CPU cores; 6 GB of disk.
set -euo pipefail
work=${1:?work folder}
shift
if [ $# -gt 0 ]; then seeds=("$@"); else seeds=(12 13 14); fi
mkdir -p "$work"

for difficulty in medium hard; do
    ctcid synth "$work/train-$difficulty" --patients 40 --cells-per-patient 100 --ctc-fraction 0.15 --seed 11 \
        --difficulty "$difficulty" --overwrite
    ctcid ingest "$work/train-$difficulty" "$work/train-$difficulty-dataset" --overwrite
done
train=(--model features_gbm --seed 0 --no-progress --overwrite)
ctcid train "$work/train-medium-dataset" "$work/gbm4" --channels BF,DAPI,CK,CD45 "${train[@]}"
ctcid train "$work/train-medium-dataset" "$work/gbm-bf" --channels BF "${train[@]}"
ctcid train "$work/train-hard-dataset" "$work/gbm-hard-bf" --channels BF "${train[@]}"

printf 'synth:\n  sample_prefix: N\n' > "$work/new-patients.yaml"
printf 'seed\tsource\tc_index\tc_lo\tc_hi\thr_dichotomised\thr_lo\thr_hi\tlogrank_p\tc_diff\tc_diff_lo\tc_diff_hi\tkappa\n' \
    > "$work/summary.tsv"
for seed in "${seeds[@]}"; do
    for difficulty in medium hard; do
        ctcid synth "$work/test-$seed-$difficulty" --patients 200 --cells-per-patient 30 --ctc-fraction 0.08 \
            --seed "$seed" --difficulty "$difficulty" --outcomes --config "$work/new-patients.yaml" --overwrite
    done
    cmp "$work/test-$seed-medium/clinical.csv" "$work/test-$seed-hard/clinical.csv"  # same patients, same outcomes
    ctcid predict "$work/gbm4/model" "$work/test-$seed-medium" "$work/predict4-$seed" --overwrite
    ctcid predict "$work/gbm-bf/model" "$work/test-$seed-medium" "$work/predict-bf-$seed" --overwrite
    ctcid predict "$work/gbm-hard-bf/model" "$work/test-$seed-hard" "$work/predict-hard-bf-$seed" --overwrite
    # the reference: each patient's true CTC count, from the generator's ground truth
    python - "$work/test-$seed-medium/labels.csv" "$work/manual-$seed.csv" <<'EOF'
import sys

import pandas as pd

labels = pd.read_csv(sys.argv[1])
true = (labels["label_true"] == "ctc").groupby(labels["sample_id"]).sum().rename("true_ctc")
true.reset_index().to_csv(sys.argv[2], index=False)
EOF
    ctcid survival "$work/test-$seed-medium/clinical.csv" "$work/survival_$seed" \
        --counts "manual=$work/manual-$seed.csv" \
        --counts "predicted=$work/predict4-$seed/counts.csv" \
        --counts "predicted_bf=$work/predict-bf-$seed/counts.csv" \
        --counts "predicted_hard_bf=$work/predict-hard-bf-$seed/counts.csv" \
        --covariates age,stage --n-boot 2000 --seed 0 --overwrite
    # the same without rounding the estimates to whole cells before the cut-off (a pitfall, shown for comparison)
    ctcid survival "$work/test-$seed-medium/clinical.csv" "$work/survival_${seed}_unrounded" \
        --counts "manual=$work/manual-$seed.csv" \
        --counts "predicted=$work/predict4-$seed/counts.csv" \
        --covariates age,stage --n-boot 2000 --seed 0 --no-round-counts --overwrite
    python - "$work/survival_$seed/survival.json" "$seed" >> "$work/summary.tsv" <<'EOF'
import json
import sys

r = json.load(open(sys.argv[1]))
for name, s in r["sources"].items():
    c = r["comparisons"].get(name, {})
    row = [sys.argv[2], name, s["c_index"], s["c_index_lo"], s["c_index_hi"], s["hr_dichotomised"],
           s["hr_dichotomised_lo"], s["hr_dichotomised_hi"], s["logrank_p"],
           c.get("c_diff"), c.get("c_diff_lo"), c.get("c_diff_hi"), c.get("kappa")]
    print("\t".join("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
EOF
done
column -t -s $'\t' "$work/summary.tsv"
