"""The parameters of System A's three augmentation families (:class:`AugmentConfig`) and the record of a setup
(:func:`describe`): plain options, importable without torch, so that command-line options and run configs can
be built before anything heavy loads. :mod:`ctcid.augment.batch` applies them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Options, option

__all__ = ["MAX_SPECKS", "AugmentConfig", "augment_families", "describe"]

_FAMILIES = ("geometric", "illumination", "noise")
_PADDING_MODES = ("reflection", "border")

#: Most artefact specks added to one sample.
MAX_SPECKS = 3


def augment_families() -> tuple[str, ...]:
    """Names of the augmentation families, in the order they are applied."""
    return _FAMILIES


#: Allowed extent of each (low, high) range option.
_RANGE_LIMITS = {
    "scale_range": (0.25, 4.0),
    "gamma_range": (0.1, 10.0),
    "blur_sigma": (0.1, 5.0),
    "artefact_radius": (0.25, 10.0),
    "artefact_amplitude": (0.0, 1.0),
    "poisson_peak": (1.0, 1e9),
}


@dataclass(frozen=True)
class AugmentConfig(Options):
    """Parameters of the three augmentation families (System A), with the defaults used for training.

    Intensities are in units of the windowed input, where 0 is the dark background end and 1 the bright end of
    a channel's percentile window; lengths are in pixels of the output crop. Ranges are ``(low, high)`` pairs;
    "uniform" and "log-uniform" draws are independent per sample. The families apply in the order geometric,
    illumination, noise, and the operations within a family in the order listed here. The output is not
    clipped: the caller normalises it (mean/std) for the model. The geometric operations of a sample are
    composed into one affine transform, shared by all its channels, and applied by one bilinear resample.
    """

    geometric: bool = option(True, help="Switch the geometric family on or off.")
    illumination: bool = option(True, help="Switch the illumination family on or off.")
    noise: bool = option(True, help="Switch the noise family on or off.")
    hflip_p: float = option(0.5, help="Geometric: probability of a left-right mirror.", ge=0, le=1)
    vflip_p: float = option(0.5, help="Geometric: probability of a top-bottom mirror.", ge=0, le=1)
    rot90: bool = option(True, help="Geometric: rotate by a uniform number of quarter turns.")
    rotate_deg: float = option(
        45.0,
        help="Geometric: free rotation in degrees, uniform in +/- rotate_deg, on top of the quarter turns (with "
        "rot90 the defaults give a uniform orientation: cells have no preferred direction).",
        ge=0,
        le=180,
    )
    shift_frac: float = option(
        0.1, help="Geometric: shift, uniform in +/- this fraction of the crop, per axis.", ge=0, le=0.5
    )
    scale_range: tuple[float, float] = option(
        (0.9, 1.1),
        help="Geometric: magnification, log-uniform in the range; narrow because cell size is a genuine cue.",
    )
    padding: str = option(
        "reflection",
        help="Geometric: how positions brought in from outside the crop are filled (reflection mirrors the crop; "
        "border repeats the edge pixels).",
        choices=_PADDING_MODES,
    )
    blur_p: float = option(0.2, help="Illumination: probability of a defocus blur.", ge=0, le=1)
    blur_sigma: tuple[float, float] = option(
        (0.5, 1.5), help="Illumination: blur sigma in px, uniform in the range, the same for all channels."
    )
    uneven: float = option(
        0.15,
        help="Illumination: uneven illumination, a linear ramp whose gain spans 1 +/- a over the crop, a uniform "
        "in [0, uneven].",
        ge=0,
        lt=1,
    )
    gamma_range: tuple[float, float] = option(
        (0.8, 1.25), help="Illumination: gamma, log-uniform in the range, as clamp(x, 0) ** gamma."
    )
    contrast: float = option(
        0.2, help="Illumination: contrast factor uniform in 1 +/- contrast, around the sample's mean.", ge=0, le=1
    )
    brightness: float = option(0.1, help="Illumination: additive offset, uniform in +/- brightness.", ge=0, le=1)
    channel_independent: bool = option(
        True, help="Illumination: draw gamma, contrast and brightness independently per channel."
    )
    artefact_p: float = option(
        0.1, help="Noise: probability of 1 to MAX_SPECKS dust specks (Gaussian spots) in all channels.", ge=0, le=1
    )
    artefact_radius: tuple[float, float] = option((1.0, 3.0), help="Noise: speck radius at half maximum (px).")
    artefact_amplitude: tuple[float, float] = option(
        (0.1, 0.4), help="Noise: speck peak height, bright or dark with probability 0.5 each."
    )
    gaussian_std: float = option(
        0.03, help="Noise: additive read noise, standard deviation uniform in [0, gaussian_std].", ge=0, le=1
    )
    poisson_p: float = option(
        0.5, help="Noise: probability of shot noise (variance clamp(x, 0) / peak).", ge=0, le=1
    )
    poisson_peak: tuple[float, float] = option(
        (100.0, 1000.0), help="Noise: photons collected at intensity 1, log-uniform in the range."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # ranges read from YAML arrive as lists; keep them as (low, high) tuples so the config stays hashable
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def __check__(self) -> None:
        for name, (low, high) in _RANGE_LIMITS.items():
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(name, f"must have low <= high, got {(lo, hi)!r}")
            if lo < low or hi > high:
                raise ConfigError(name, f"must lie within [{low:g}, {high:g}], got {(lo, hi)!r}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """A configuration with every family switched off (the identity)."""
        return cls(geometric=False, illumination=False, noise=False)

    def families(self) -> list[str]:
        """Names of the families switched on, in the order geometric, illumination, noise."""
        return [name for name in _FAMILIES if getattr(self, name)]


def describe(config: AugmentConfig, *, out_size: int | None = None) -> dict[str, Any]:
    """A JSON-serialisable record of an augmentation setup, for the run folder.

    Examples
    --------
    >>> from ctcid.augment import AugmentConfig, describe
    >>> d = describe(AugmentConfig(noise=False))
    >>> d["families"], d["config"]["scale_range"]
    (['geometric', 'illumination'], [0.9, 1.1])
    """
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    return {
        "method": "ctcid.augment.BatchAugment",
        "families": config.families(),
        "order": {
            "geometric": ["resize", "flip", "quarter_turn", "rotate", "scale", "shift"],
            "illumination": ["blur", "uneven", "gamma", "contrast", "brightness"],
            "noise": ["artefact", "gaussian+poisson"],
        },
        "out_size": out_size,
        "config": values,
    }
