"""Difficulty presets and the configuration of a synthetic cohort.

Every knob of realism lives in :class:`Difficulty`; the renderer reads only per-patient and per-cell
parameters drawn from it, so a preset can be tuned (or a new one defined) without touching pixel code.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass

from ..errors import CtcidError

__all__ = ["PRESETS", "Difficulty", "SynthConfig"]


@dataclass(frozen=True)
class Difficulty:
    """How hard the synthetic cohort is: biology, optics, noise and artefacts.

    Sizes are diameters in micrometres (um), intensities in camera counts (ADU) of a 16-bit camera,
    fractions in [0, 1]. "Between-patient" spreads set how far one patient's centroid lies from the
    cohort value; "within-patient" spreads set how far its cells lie from that centroid.

    Attributes
    ----------
    wbc_mix
        Relative weights of lymphocytes, neutrophils and monocytes among the leukocytes left after
        size-based enrichment (the larger ones dominate). Each patient's mix is drawn around it.
    lymphocyte_diameter_um, neutrophil_diameter_um, monocyte_diameter_um
        Mean and standard deviation (um) of the cell diameter of each leukocyte subtype.
    wbc_cd45_dim_fraction
        Fraction of leukocytes whose CD45 staining is weak (0-12% of normal).
    wbc_ck_nonspecific_fraction
        Fraction of leukocytes with faint, diffuse non-specific cytokeratin (CK) staining.
    wbc_mimic_fraction
        Fraction of leukocytes whose stains mimic a CTC: CD45 almost absent and CK (patchy, partly
        filamentous) at about half the median CTC level. Only morphology tells them apart.
    ctc_diameter_um
        Median over patients of the patient's CTC diameter centroid (um).
    ctc_diameter_between_cv
        Between-patient spread of the CTC diameter centroid (sigma of its logarithm).
    ctc_diameter_within_cv
        Within-patient spread of CTC diameter (sigma of its logarithm).
    ctc_irregularity
        Median relative amplitude of the random polar harmonics (orders 2-5) of a CTC's outline; leukocytes
        use 0.015-0.03. The patient centroid varies by a factor of about 1.4 around it.
    ctc_nc_ratio
        Median nucleus/cell diameter ratio of CTCs (leukocytes: lymphocyte 0.78, neutrophil 0.55 equivalent,
        monocyte 0.6).
    ctc_chromatin_scale_um
        Typical grain size (um) of CTC chromatin texture (leukocytes: 0.45 um).
    ctc_wbc_like_fraction
        Share of atypical CTCs that look like leukocytes in bright-field: leukocyte size, round outline,
        moderate N/C ratio, fine chromatin; they keep the CK+/CD45- stain.
    ctc_ck_low_fraction
        Share of CK-low (EMT-like) CTCs, with CK at 0.5-5% of the cohort's median CTC level.
    ctc_apoptotic_fraction
        Share of apoptotic CTCs (fragmented, condensed nucleus; blebbed outline).
    ctc_small_fraction
        Share of small CTCs (8-11.5 um, high N/C ratio).
    ctc_ck_sigma
        Within-patient sigma of log CK level of CTCs.
    ctc_ck_between_sigma
        Between-patient sigma of the log median CK level.
    phenotype_concentration
        Concentration of the Beta distributions that draw each patient's shares of CK-low, apoptotic,
        small and leukocyte-like CTCs around the values above; lower means more between-patient spread.
    zero_ctc_patient_fraction
        Fraction of patients with no CTC at all.
    prevalence_shape
        Gamma shape of per-patient CTC prevalence among the other patients (lower means more spread);
        prevalences are rescaled so that their mean over all patients is ``SynthConfig.ctc_fraction``.
    defocus_um
        Cohort mean of the signed defocus distance z (um) of the bright-field image. Its sign decides
        whether the rim around a cell is dark (z > 0) or a bright halo (z < 0).
    defocus_between_um
        Standard deviation (um) of the patient mean defocus.
    defocus_within_um
        Standard deviation (um) of the defocus of cells around the patient mean.
    blur_um
        Upper bound (um) of the extra Gaussian blur sigma of a patient's optics (drawn uniformly in
        [0, blur_um]); defocus adds 0.12 um of blur per um of |z|.
    bf_counts
        Median bright-field illumination (counts) over patients.
    illumination_cv
        Between-patient coefficient of variation of the bright-field illumination.
    illumination_gradient
        Typical relative illumination change across half a crop (per-cell linear gradient).
    stain_counts
        Peak intensities (counts) of DAPI, CK and CD45 at the median stain level of a cell and patient.
    stain_cv
        Between-patient sigma of the log gains of the DAPI, CK and CD45 stains.
    fluorescence_background
        Median fluorescence background (counts above the camera offset); varies by patient and channel.
    camera_gain
        Camera gain in counts per photo-electron; higher means more shot noise at the same signal.
    read_noise
        Gaussian read noise (counts, standard deviation).
    debris_rate
        Fraction of crops holding debris specks (1-3 specks).
    neighbour_rate
        Fraction of crops holding a neighbour cell cut by the crop edge.
    offcentre_sd_px
        Standard deviation (px) of the centre jitter of the cell in its crop.
    offcentre_large_rate
        Fraction of crops whose cell is far off-centre (up to 18% of the crop size).
    """

    wbc_mix: tuple[float, float, float] = (0.2, 0.5, 0.3)
    lymphocyte_diameter_um: tuple[float, float] = (8.6, 0.7)
    neutrophil_diameter_um: tuple[float, float] = (11.0, 0.7)
    monocyte_diameter_um: tuple[float, float] = (15.0, 1.8)
    wbc_cd45_dim_fraction: float = 0.02
    wbc_ck_nonspecific_fraction: float = 0.02
    wbc_mimic_fraction: float = 0.03
    ctc_diameter_um: float = 19.0
    ctc_diameter_between_cv: float = 0.15
    ctc_diameter_within_cv: float = 0.11
    ctc_irregularity: float = 0.095
    ctc_nc_ratio: float = 0.74
    ctc_chromatin_scale_um: float = 1.25
    ctc_wbc_like_fraction: float = 0.03
    ctc_ck_low_fraction: float = 0.15
    ctc_apoptotic_fraction: float = 0.05
    ctc_small_fraction: float = 0.08
    ctc_ck_sigma: float = 0.5
    ctc_ck_between_sigma: float = 0.4
    phenotype_concentration: float = 20.0
    zero_ctc_patient_fraction: float = 0.25
    prevalence_shape: float = 2.0
    defocus_um: float = 1.0
    defocus_between_um: float = 0.7
    defocus_within_um: float = 0.4
    blur_um: float = 0.25
    bf_counts: float = 21000.0
    illumination_cv: float = 0.15
    illumination_gradient: float = 0.03
    stain_counts: tuple[float, float, float] = (7000.0, 7000.0, 5000.0)
    stain_cv: float = 0.3
    fluorescence_background: float = 300.0
    camera_gain: float = 1.0
    read_noise: float = 8.0
    debris_rate: float = 0.1
    neighbour_rate: float = 0.07
    offcentre_sd_px: float = 1.5
    offcentre_large_rate: float = 0.05

    def to_dict(self) -> dict[str, object]:
        """The field values as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, Difficulty] = {
    "easy": Difficulty(
        ctc_diameter_um=20.0,
        ctc_diameter_between_cv=0.12,
        ctc_diameter_within_cv=0.10,
        ctc_irregularity=0.10,
        ctc_nc_ratio=0.75,
        ctc_chromatin_scale_um=1.3,
        ctc_wbc_like_fraction=0.02,
        ctc_ck_low_fraction=0.05,
        ctc_apoptotic_fraction=0.03,
        ctc_small_fraction=0.03,
        wbc_cd45_dim_fraction=0.005,
        wbc_ck_nonspecific_fraction=0.005,
        wbc_mimic_fraction=0.002,
        defocus_um=1.2,
        defocus_between_um=0.6,
        defocus_within_um=0.3,
        blur_um=0.15,
        illumination_cv=0.08,
        illumination_gradient=0.015,
        stain_cv=0.15,
        camera_gain=0.5,
        read_noise=5.0,
        debris_rate=0.05,
        neighbour_rate=0.03,
        offcentre_sd_px=1.0,
        offcentre_large_rate=0.01,
    ),
    "medium": Difficulty(),
    "hard": Difficulty(
        wbc_mix=(0.1, 0.5, 0.4),
        monocyte_diameter_um=(16.0, 2.0),
        ctc_diameter_um=14.0,
        ctc_diameter_between_cv=0.22,
        ctc_diameter_within_cv=0.15,
        ctc_irregularity=0.045,
        ctc_nc_ratio=0.68,
        ctc_chromatin_scale_um=0.85,
        ctc_wbc_like_fraction=0.3,
        ctc_ck_low_fraction=0.25,
        ctc_apoptotic_fraction=0.08,
        ctc_small_fraction=0.12,
        ctc_ck_sigma=0.7,
        ctc_ck_between_sigma=0.6,
        phenotype_concentration=8.0,
        wbc_cd45_dim_fraction=0.04,
        wbc_ck_nonspecific_fraction=0.04,
        wbc_mimic_fraction=0.04,
        defocus_um=0.5,
        defocus_between_um=2.0,
        defocus_within_um=1.0,
        blur_um=0.6,
        illumination_cv=0.25,
        illumination_gradient=0.08,
        stain_counts=(5000.0, 5000.0, 3500.0),
        stain_cv=0.45,
        fluorescence_background=450.0,
        camera_gain=2.5,
        read_noise=15.0,
        debris_rate=0.3,
        neighbour_rate=0.2,
        offcentre_sd_px=2.5,
        offcentre_large_rate=0.1,
    ),
}


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class SynthConfig:
    """What synthetic cohort to generate.

    Attributes
    ----------
    patients
        Number of patients (samples); sample ids are ``P01``, ``P02``, ... zero-padded to the width needed.
    sample_prefix
        Letters before the patient number in sample ids (``P``), e.g. ``N`` for a second, new cohort.
    cells_per_patient
        Number of cells (crops) per patient.
    ctc_fraction
        Mean CTC prevalence over patients. Prevalence varies between patients and some have none
        (see :attr:`Difficulty.zero_ctc_patient_fraction`).
    difficulty
        Name of a preset in :data:`PRESETS`.
    seed
        Seed of every random draw; the same seed gives byte-identical output.
    size
        Crop size in pixels (square).
    pixel_size_um
        Pixel size in um (DEPArray: about 0.64).
    label_noise
        Fraction of labels flipped in ``labels.csv`` (the true label is kept in ``label_true``).
    masks
        Also write the ground-truth masks ``masks.npy``.
    """

    patients: int = 12
    cells_per_patient: int = 200
    ctc_fraction: float = 0.1
    difficulty: str = "medium"
    seed: int = 0
    size: int = 80
    pixel_size_um: float = 0.64
    label_noise: float = 0.0
    masks: bool = False
    sample_prefix: str = "P"

    @property
    def preset(self) -> Difficulty:
        """The :class:`Difficulty` named by :attr:`difficulty`."""
        self.validate()
        return PRESETS[self.difficulty]

    def to_dict(self) -> dict[str, object]:
        """The configuration as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check every value; raise :class:`ctcid.errors.CtcidError` naming the first bad one."""
        if not _is_int(self.patients) or self.patients < 1:
            raise CtcidError(f"patients must be a whole number >= 1, got {self.patients!r}")
        if not _is_int(self.cells_per_patient) or self.cells_per_patient < 1:
            raise CtcidError(f"cells_per_patient must be a whole number >= 1, got {self.cells_per_patient!r}")
        if self.patients * self.cells_per_patient > 10_000_000:
            raise CtcidError("patients x cells_per_patient must be at most 10,000,000 cells")
        if not _is_real(self.ctc_fraction) or not 0.0 <= self.ctc_fraction <= 1.0:
            raise CtcidError(f"ctc_fraction must be between 0 and 1, got {self.ctc_fraction!r}")
        if self.difficulty not in PRESETS:
            raise CtcidError(f"unknown difficulty {self.difficulty!r}; choose one of {', '.join(PRESETS)}")
        if not _is_int(self.seed) or self.seed < 0:
            raise CtcidError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if not _is_int(self.size) or not 16 <= self.size <= 1024:
            raise CtcidError(f"size must be a whole number of pixels between 16 and 1024, got {self.size!r}")
        if not _is_real(self.pixel_size_um) or not 0.05 <= self.pixel_size_um <= 10.0:
            raise CtcidError(f"pixel_size_um must be between 0.05 and 10 um, got {self.pixel_size_um!r}")
        if not _is_real(self.label_noise) or not 0.0 <= self.label_noise <= 1.0:
            raise CtcidError(f"label_noise must be between 0 and 1, got {self.label_noise!r}")
        if not isinstance(self.sample_prefix, str) or not re.fullmatch(r"[A-Za-z]{1,8}", self.sample_prefix):
            raise CtcidError(f"sample_prefix must be 1-8 letters, got {self.sample_prefix!r}")
        if not isinstance(self.masks, bool):
            raise CtcidError(f"masks must be true or false, got {self.masks!r}")
