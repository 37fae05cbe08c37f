"""Synthetic survival outcomes driven by each patient's true CTC count.

Every synthetic sample stands for 7.5 mL of blood, so a patient's true CTC count ``c`` is its count per 7.5 mL,
the unit of the CellSearch cut-off (>= 5 CTCs per 7.5 mL predicts shorter survival; Cristofanilli et al., NEJM
2004). Survival follows a Weibull proportional-hazards model,

.. math::

    h(t \\mid x) = \\frac{k}{\\lambda} \\left(\\frac{t}{\\lambda}\\right)^{k - 1} e^{\\eta}, \\qquad
    \\eta = \\beta_c \\log(1 + c) + \\beta_5 [c \\ge 5] + \\beta_a \\frac{\\text{age} - 65}{10}
    + \\beta_s [\\text{stage} = 4],

drawn by inversion, ``T = lambda * (E * exp(-eta)) ** (1 / k)`` with ``E ~ Exp(1)``. Stage (3 or 4) is more
often 4 in patients with more CTCs (log-odds ``stage_ctc_log_odds`` per unit of ``log(1 + c)``), so the count's
unadjusted hazard ratio is a little larger than its stage-adjusted one, as in real cohorts. Censoring is
administrative (uniform accrual over ``accrual_months``, analysis ``follow_up_months`` after the last patient
entered) and random (loss to follow-up at a constant rate). The defaults give a dichotomised hazard ratio of about
2.5-3 at 5 CTCs, the size of the published effects (pooled CellSearch data: overall-survival HR 1.97-2.8).

The draws use their own random stream, ``SeedSequence(seed, spawn_key=(4,))``, so adding outcomes to a cohort
changes none of its other files.

Examples
--------
>>> import pandas as pd
>>> patients = pd.DataFrame({"sample_id": ["P1", "P2", "P3"], "n_ctc": [0, 3, 12]})
>>> clinical = sample_outcomes(patients, seed=0)
>>> list(clinical.columns)
['sample_id', 'time_months', 'event', 'age', 'stage', 'blood_volume_ml']
>>> clinical["blood_volume_ml"].tolist()
[7.5, 7.5, 7.5]
"""

from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import CtcidError
from .presets import _PlainFields

__all__ = [
    "CLINICAL_FILE",
    "OUTCOME_SPAWN_KEY",
    "OutcomeModel",
    "linear_predictor",
    "sample_outcomes",
    "write_clinical",
]

#: File the outcomes are written to, beside ``labels.csv``.
CLINICAL_FILE = "clinical.csv"
#: Spawn key of the outcome stream (see the table in :mod:`ctcid.synth.cohort`).
OUTCOME_SPAWN_KEY = (4,)


@dataclass(frozen=True)
class OutcomeModel(_PlainFields):
    """The hazard, covariates and censoring of synthetic survival outcomes.

    Attributes
    ----------
    shape
        Weibull shape ``k`` (above 1: the hazard rises with time).
    scale_months
        Weibull scale ``lambda`` (months) of the reference patient: no CTC, age 65, stage 3. Its median survival
        is ``scale_months * log(2) ** (1 / shape)``.
    beta_log_ctc
        Log hazard ratio per unit of ``log(1 + CTCs per 7.5 mL)``.
    beta_cutoff
        Extra log hazard ratio at and above ``cutoff`` CTCs per 7.5 mL.
    cutoff
        The step's position (CTCs per 7.5 mL).
    beta_age_per_10y
        Log hazard ratio per 10 years of age.
    beta_stage4
        Log hazard ratio of stage 4 against stage 3.
    age_mean, age_sd, age_range
        Age at the blood draw: normal, rounded to whole years and clipped to the range.
    stage4_log_odds
        Log-odds of stage 4 for a patient without CTCs.
    stage_ctc_log_odds
        Increase of the log-odds of stage 4 per unit of ``log(1 + CTCs per 7.5 mL)``.
    accrual_months
        Patients enter uniformly over this period.
    follow_up_months
        Analysis time after the last patient entered; a patient's administrative censoring time is
        ``follow_up_months`` plus a uniform share of ``accrual_months``.
    loss_rate_per_month
        Rate of random censoring (loss to follow-up), constant in time.
    blood_volume_ml
        Blood volume each sample stands for (mL), written to the clinical table.
    """

    shape: float = 1.2
    scale_months: float = 36.0
    beta_log_ctc: float = 0.55
    beta_cutoff: float = 0.3
    cutoff: float = 5.0
    beta_age_per_10y: float = 0.1
    beta_stage4: float = 0.25
    age_mean: float = 62.0
    age_sd: float = 10.0
    age_range: tuple[float, float] = (30.0, 90.0)
    stage4_log_odds: float = 0.0
    stage_ctc_log_odds: float = 0.4
    accrual_months: float = 24.0
    follow_up_months: float = 36.0
    loss_rate_per_month: float = 0.004
    blood_volume_ml: float = 7.5

    def validate(self) -> None:
        """Check the values that would make the draws meaningless; raise :class:`CtcidError`."""
        for name in ("shape", "scale_months", "age_sd", "follow_up_months", "blood_volume_ml"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise CtcidError(f"outcome model: {name} must be a positive number, got {value!r}")
        for name in ("accrual_months", "loss_rate_per_month"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise CtcidError(f"outcome model: {name} must be >= 0, got {value!r}")
        lo, hi = self.age_range
        if not lo < hi:
            raise CtcidError(f"outcome model: age_range must be (low, high), got {self.age_range!r}")


def linear_predictor(
    ctc_per_7_5ml: object, age: object, stage: object, model: OutcomeModel | None = None
) -> np.ndarray:
    """The log hazard ratio ``eta`` of each patient against the reference patient (no CTC, age 65, stage 3).

    Examples
    --------
    >>> m = OutcomeModel()
    >>> eta = linear_predictor([0, 5], [65, 65], [3, 3], m)
    >>> round(float(eta[1] - eta[0]), 4) == round(m.beta_log_ctc * math.log(6) + m.beta_cutoff, 4)
    True
    """
    m = model or OutcomeModel()
    c = np.asarray(ctc_per_7_5ml, dtype=np.float64)
    a = np.asarray(age, dtype=np.float64)
    s = np.asarray(stage, dtype=np.float64)
    return (
        m.beta_log_ctc * np.log1p(c)
        + m.beta_cutoff * (c >= m.cutoff)
        + m.beta_age_per_10y * (a - 65.0) / 10.0
        + m.beta_stage4 * (s == 4)
    )


def sample_outcomes(
    patients: pd.DataFrame, *, seed: int | np.random.SeedSequence, model: OutcomeModel | None = None
) -> pd.DataFrame:
    """Draw a clinical table (survival, covariates) for patients with known true CTC counts.

    Parameters
    ----------
    patients
        One row per patient with ``sample_id`` and ``n_ctc`` (true CTCs in the sample), e.g. the patient table
        of :func:`ctcid.synth.sample_cells`.
    seed
        The cohort's seed (the stream ``SeedSequence(seed, spawn_key=(4,))`` is used), or a ready
        :class:`numpy.random.SeedSequence`.
    model
        Hazard, covariates and censoring; :class:`OutcomeModel` defaults when omitted.

    Returns
    -------
    pandas.DataFrame
        ``sample_id``; ``time_months`` (months from the blood draw to the event or censoring, 2 decimals, at
        least 0.01); ``event`` (1 = death or progression, 0 = censored); ``age`` (years); ``stage`` (3 or 4);
        ``blood_volume_ml``. Rows follow ``patients``.
    """
    m = model or OutcomeModel()
    m.validate()
    if not {"sample_id", "n_ctc"} <= set(patients.columns):
        raise CtcidError("sample_outcomes needs a patient table with sample_id and n_ctc columns")
    ss = (
        seed
        if isinstance(seed, np.random.SeedSequence)
        else np.random.SeedSequence(seed, spawn_key=OUTCOME_SPAWN_KEY)
    )
    rng = np.random.default_rng(ss)
    n = len(patients)
    c = patients["n_ctc"].to_numpy(np.float64) * 7.5 / m.blood_volume_ml
    # every draw below is made for all patients, in a fixed order, so one patient's values never shift another's
    age = np.clip(np.round(rng.normal(m.age_mean, m.age_sd, n)), *m.age_range)
    p4 = 1.0 / (1.0 + np.exp(-(m.stage4_log_odds + m.stage_ctc_log_odds * np.log1p(c))))
    stage = np.where(rng.uniform(0.0, 1.0, n) < p4, 4, 3)
    eta = linear_predictor(c, age, stage, m)
    t_event = m.scale_months * (rng.exponential(1.0, n) * np.exp(-eta)) ** (1.0 / m.shape)
    t_admin = m.follow_up_months + m.accrual_months * rng.uniform(0.0, 1.0, n)
    t_loss = rng.exponential(1.0 / m.loss_rate_per_month, n) if m.loss_rate_per_month > 0 else np.full(n, np.inf)
    t_censor = np.minimum(t_admin, t_loss)
    time = np.maximum(np.round(np.minimum(t_event, t_censor), 2), 0.01)
    return pd.DataFrame(
        {
            "sample_id": patients["sample_id"].astype(str).to_numpy(),
            "time_months": time,
            "event": (t_event <= t_censor).astype(np.int64),
            "age": age.astype(np.int64),
            "stage": stage.astype(np.int64),
            "blood_volume_ml": np.full(n, m.blood_volume_ml),
        }
    )


def write_clinical(
    out: str | os.PathLike[str], patients: pd.DataFrame, *, seed: int, model: OutcomeModel | None = None
) -> pathlib.Path:
    """Draw the outcomes of a cohort's patients and write them to ``out/clinical.csv``; return its path."""
    table = sample_outcomes(patients, seed=seed, model=model)
    path = pathlib.Path(out) / CLINICAL_FILE
    path.write_text(table.to_csv(index=False, float_format="%.2f", lineterminator="\n"), encoding="utf-8")
    return path
