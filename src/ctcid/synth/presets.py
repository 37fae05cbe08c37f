"""Difficulty presets and the configuration of a synthetic cohort.

Every knob of realism lives in :class:`Difficulty`; the renderer reads only per-patient and per-cell
parameters drawn from it, so a preset can be tuned (or a new one defined) without touching pixel code.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..config import ConfigError, Options, option

__all__ = ["FRAME_DENSITIES", "FRAME_LAYOUTS", "PRESETS", "Difficulty", "SynthConfig", "parse_frame_size"]


class _PlainFields:
    """``to_dict`` for a dataclass of plain values: its fields as a JSON-ready dict (tuples become lists)."""

    def to_dict(self) -> dict[str, object]:
        """The field values as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Difficulty(_PlainFields):
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


#: Cell densities of a synthetic slide (``SynthConfig.density``); see :mod:`ctcid.synth.frames`.
FRAME_DENSITIES = ("sparse", "medium", "crowded")
#: How a synthetic slide's frames are written (``SynthConfig.frame_layout``).
FRAME_LAYOUTS = ("tiles", "multipage")


def parse_frame_size(text: str | None) -> tuple[int, int] | None:
    """Parse ``HEIGHTxWIDTH`` (``1000x1400``) into ``(1000, 1400)``.

    >>> parse_frame_size("1000x1400")
    (1000, 1400)
    """
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError("frame_size", f"expects HEIGHTxWIDTH in pixels, e.g. 1000x1400, got {text!r}")
    return int(parts[0]), int(parts[1])


@dataclass
class SynthConfig(Options):
    """What synthetic cohort to generate."""

    patients: int = option(
        12, help="Number of patients (samples); ids P01, P02, ... zero-padded to the width needed.", ge=1
    )
    cells_per_patient: int = option(200, help="Number of cells (crops) per patient.", ge=1)
    ctc_fraction: float = option(
        0.1, help="Mean CTC prevalence over patients (it varies between patients and some have none).", ge=0, le=1
    )
    difficulty: str = option("medium", help="Preset: easy, medium or hard.", choices=tuple(PRESETS))
    seed: int = option(0, help="Seed of every random draw; the same seed gives byte-identical output.", ge=0)
    size: int = option(80, help="Crop size in px (square).", ge=16, le=1024)
    pixel_size_um: float = option(0.64, help="Pixel size in um (DEPArray: about 0.64).", ge=0.05, le=10, cli=False)
    label_noise: float = option(
        0.0, help="Fraction of labels flipped in labels.csv (the true label is kept in label_true).", ge=0, le=1
    )
    masks: bool = option(False, help="Also write the ground-truth cell and nucleus masks (masks.npy).")
    sample_prefix: str = option(
        "P", help="Letters before the patient number in sample ids, e.g. N for a second, new cohort.", cli=False
    )
    outcomes: bool = option(
        False,
        help="Also write clinical.csv: survival times, events and covariates drawn from each patient's true CTC "
        "count (the other files are the same with or without it).",
    )
    frames: bool = option(
        False, help="Render each patient as a slide scan (whole frames holding many cells) instead of crops."
    )
    frame_layout: str = option(
        "tiles",
        help="With --frames: tiles (one single-channel image per frame and channel, channels in blocks) or "
        "multipage (one multipage TIFF per frame).",
        choices=FRAME_LAYOUTS,
    )
    density: str = option("medium", help="With --frames: sparse, medium or crowded.", choices=FRAME_DENSITIES)
    frame_size: tuple[int, int] = option(
        (1000, 1400), help="With --frames: frame height and width in px, HEIGHTxWIDTH.", parse=parse_frame_size
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.frame_size, list):  # from YAML
            self.frame_size = tuple(self.frame_size)

    @property
    def preset(self) -> Difficulty:
        """The :class:`Difficulty` named by :attr:`difficulty`."""
        self.validate()
        return PRESETS[self.difficulty]

    def to_dict(self) -> dict[str, object]:
        """The configuration as a JSON-ready dict, without ``outcomes`` (``clinical.csv`` records it), so that
        the other files of a cohort do not depend on it."""
        d = super().to_dict()
        del d["outcomes"]
        return d

    def __check__(self) -> None:
        if self.patients * self.cells_per_patient > 10_000_000:
            raise ConfigError("cells_per_patient", "x patients must be at most 10,000,000 cells")
        if not re.fullmatch(r"[A-Za-z]{1,8}", self.sample_prefix):
            raise ConfigError("sample_prefix", f"must be 1-8 letters, got {self.sample_prefix!r}")
        if not all(64 <= v <= 4096 for v in self.frame_size):
            raise ConfigError("frame_size", f"must be two sizes between 64 and 4096 px, got {self.frame_size!r}")
        if self.frames and self.masks:
            raise ConfigError("masks", "are written for crops only; with --frames the ground truth is truth.csv")
