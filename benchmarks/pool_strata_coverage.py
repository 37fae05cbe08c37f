"""Coverage of `ctcid pool`'s paired F1-difference interval by simulation: patients resampled within their
cohort (the default) or all together (`--no-stratify`).

Each simulated study pools two cohorts of patients (120 cells each, CTC share 5-25% per patient). A reference
model finds each CTC with a probability set by its cohort's base rate and a patient effect (normal on the logit
scale, sd 0.8), a second model with the same plus the cohort's gain on the logit scale; both share each cell's
draw, so their calls are paired as two models' calls on the same cells are. False positives: 2% of leukocytes
times a patient effect (log-normal, sd 0.5). The true difference is that of the same design with 800 times as
many patients. Each study gets a 95% interval from :func:`ctcid.evaluate.paired_difference` (1000 resamples)
both ways; coverage is the share of studies whose interval holds the truth.

    python benchmarks/pool_strata_coverage.py --reps 1000 --scenarios equal
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ctcid.evaluate import paired_difference

#: (patients per cohort, reference detection rate per cohort, gain of the second model on the logit scale)
SCENARIOS = {
    "equal": ((24, 24), (0.8, 0.45), (0.3, 0.3)),
    "unequal": ((12, 36), (0.8, 0.45), (0.0, 0.7)),
}


def cohort(rng: np.random.Generator, n_pat: int, base: float, gain: float, prefix: str, cells: int = 120):
    """Cells of one cohort: patient ids, truth, and the two models' calls."""
    prev = rng.uniform(0.05, 0.25, n_pat)
    u = rng.normal(0, 0.8, n_pat)
    v = rng.normal(0, 0.5, n_pat)
    ids = np.repeat([f"{prefix}:{i}" for i in range(n_pat)], cells)
    pi = np.repeat(np.arange(n_pat), cells)
    y = (rng.random(ids.size) < prev[pi]).astype(int)
    lg = np.log(base / (1 - base)) + u[pi]
    p_ref, p_var = 1 / (1 + np.exp(-lg)), 1 / (1 + np.exp(-(lg + gain)))
    fp = 0.02 * np.exp(v[pi])
    shared = rng.random(ids.size)
    ref = np.where(y == 1, shared < p_ref, shared < fp).astype(int)
    var = np.where(y == 1, shared < p_var, rng.random(ids.size) < fp).astype(int)
    return ids, y, ref, var


def study(rng: np.random.Generator, sizes, bases, gains):
    """One pooled study: every cohort's cells concatenated."""
    parts = [cohort(rng, n, b, g, f"c{k}") for k, (n, b, g) in enumerate(zip(sizes, bases, gains, strict=True))]
    return [np.concatenate(x) for x in zip(*parts, strict=True)]


def f1(y: np.ndarray, call: np.ndarray) -> float:
    tp, fp, fn = ((y == 1) & (call == 1)).sum(), ((y == 0) & (call == 1)).sum(), ((y == 1) & (call == 0)).sum()
    return 2 * tp / (2 * tp + fp + fn)


def coverage(sizes, bases, gains, reps: int, n_boot: int = 1000, seed: int = 123) -> dict:
    """Coverage and mean width of the stratified and the unstratified interval over ``reps`` studies."""
    rng = np.random.default_rng(seed)
    _, y, ref, var = study(rng, tuple(n * 800 for n in sizes), bases, gains)
    truth = f1(y, var) - f1(y, ref)
    hit = {"strat": 0, "free": 0}
    width: dict[str, list[float]] = {"strat": [], "free": []}
    t = time.time()
    for r in range(reps):
        ids, y, ref, var = study(rng, sizes, bases, gains)
        strata = {s: s.split(":")[0] for s in np.unique(ids)}
        for name, st in (("strat", strata), ("free", None)):
            d = paired_difference(
                (y, var * 0.8 + 0.1, var, ids),
                (y, ref * 0.8 + 0.1, ref, ids),
                metrics=("f1",),
                n_boot=n_boot,
                seed=r,
                strata=st,
            )
            hit[name] += bool(d["f1_diff_lo"] <= truth <= d["f1_diff_hi"])
            width[name].append(d["f1_diff_hi"] - d["f1_diff_lo"])
    out = {"sizes": list(sizes), "bases": list(bases), "gains": list(gains), "reps": reps, "truth": float(truth)}
    out["seconds"] = round(time.time() - t)
    for k in hit:
        out[k] = {"coverage": hit[k] / reps, "mean_width": float(np.mean(width[k]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1000, help="Simulated studies per scenario.")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="Comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--out", help="Write the results as JSON here.")
    args = ap.parse_args()
    res = {name: coverage(*SCENARIOS[name], reps=args.reps) for name in args.scenarios.split(",")}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
