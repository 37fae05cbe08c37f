"""System A's three augmentation families, applied to whole batches on the training device.

Russo et al. (2025) train a ResNet on bright-field crops with geometric, illumination and noise augmentation;
the parameters were not published, so the ones below are ours and are recorded with every run
(:func:`describe`). :class:`BatchAugment` draws every per-sample parameter with one ``torch.rand`` and the
noise field with one ``torch.randn``, then applies the three families in a handful of batched kernels: the
resize to the model's input size (antialiased, exactly as at evaluation), one affine sampling grid +
``grid_sample`` for all geometry, one depthwise convolution for the defocus blur, and broadcast elementwise
operations for the rest of the illumination and for the noise.

Examples
--------
>>> import torch
>>> from ctcid.augment import AugmentConfig, BatchAugment
>>> aug = BatchAugment(AugmentConfig(), out_size=32)
>>> x = torch.rand(8, 1, 40, 40)
>>> y = aug(x, generator=torch.Generator().manual_seed(0))
>>> tuple(y.shape)
(8, 1, 32, 32)
>>> shrunk = torch.nn.functional.interpolate(x, size=32, mode="bilinear", antialias=True)
>>> bool(torch.equal(aug.eval()(x), shrunk))
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..errors import CtcidError
from ._kernels import affine_theta, blur_radius, gaussian_blur, gradient_gain, resize, speck_field, warp
from .config import MAX_SPECKS, AugmentConfig

__all__ = ["AugmentParams", "BatchAugment"]


# Column layout of the single uniform draw: per-sample columns, then MAX_SPECKS blocks of speck columns, then
# per-channel columns. The layout never depends on which families are switched on, so switching one family off
# leaves the draws of the others unchanged.
_SAMPLE_COLUMNS = (
    "hflip",
    "vflip",
    "quarter_turns",
    "angle",
    "shift_x",
    "shift_y",
    "scale",
    "blur_on",
    "blur_sigma",
    "uneven_amplitude",
    "uneven_direction",
    "gaussian_std",
    "poisson_on",
    "poisson_peak",
    "artefact_on",
    "artefact_count",
)
_SPECK_COLUMNS = ("x", "y", "radius", "amplitude", "sign")
_CHANNEL_COLUMNS = ("brightness", "contrast", "gamma")
_COL = {name: i for i, name in enumerate(_SAMPLE_COLUMNS)}


@dataclass(frozen=True)
class AugmentParams:
    """The per-sample parameters of one draw, as tensors on the batch's device (batch axis first).

    Parameters of every family are drawn whatever the switches, so the draws of one family do not depend on
    the others; :meth:`BatchAugment.apply_params` uses only those of the families switched on.

    Attributes
    ----------
    hflip, vflip : Tensor, [B] bool
        Mirror left-right / top-bottom.
    quarter_turns : Tensor, [B] int64
        Quarter turns ``k`` in ``0..3``, in the sense of ``torch.rot90(x, k, dims=(-2, -1))``.
    angle_deg : Tensor, [B]
        Free rotation in degrees; like the quarter turns, positive turns the content counter-clockwise as
        displayed (row 0 at the top).
    shift : Tensor, [B, 2]
        Shift of the content as a fraction of the crop width and height.
    scale : Tensor, [B]
        Magnification.
    blur_sigma : Tensor, [B]
        Blur standard deviation in pixels; 0 for samples that are not blurred.
    uneven, uneven_direction : Tensor, [B]
        Illumination ramp amplitude and direction (radians).
    gamma, contrast, brightness : Tensor, [B, C]
        Gamma, contrast factor and additive offset per channel.
    speck_centre : Tensor, [B, MAX_SPECKS, 2]
        Speck centres (x, y) in output pixels.
    speck_radius, speck_amplitude : Tensor, [B, MAX_SPECKS]
        Speck radii (pixels) and signed heights; height 0 for absent specks.
    gaussian_std : Tensor, [B]
        Read-noise standard deviation.
    poisson_peak : Tensor, [B]
        Photons at intensity 1; ``inf`` for samples without shot noise.
    noise : Tensor or None, [B, C, H_out, W_out]
        The standard normal field, drawn only when the noise family has Gaussian or shot noise to add.
    """

    hflip: torch.Tensor
    vflip: torch.Tensor
    quarter_turns: torch.Tensor
    angle_deg: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    blur_sigma: torch.Tensor
    uneven: torch.Tensor
    uneven_direction: torch.Tensor
    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    speck_centre: torch.Tensor
    speck_radius: torch.Tensor
    speck_amplitude: torch.Tensor
    gaussian_std: torch.Tensor
    poisson_peak: torch.Tensor
    noise: torch.Tensor | None


def _log_uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    lo, hi = bounds
    return lo * torch.exp(u * math.log(hi / lo))  # exactly `lo` when lo == hi


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    lo, hi = bounds
    return lo + u * (hi - lo)


class BatchAugment(torch.nn.Module):
    """Random augmentation of a batch ``[B, C, H, W]`` on its own device, in training mode only.

    Parameters
    ----------
    config
        The families and their parameters (:class:`AugmentConfig`).
    out_size
        Output crop size in pixels (square): the crop is first resized to it exactly as evaluation resizes it
        (bilinear, antialiased when shrinking), and the geometry is then applied at that size. ``None`` keeps
        the input size.

    Notes
    -----
    The input is float, each channel windowed to roughly ``[0, 1]``; the output has the same dtype and device
    and is never written into the input (it may be the input itself when nothing applies). All channels of a
    sample share one geometric transform, blur, illumination ramp, specks and noise level; gamma, contrast and
    brightness are drawn per channel when ``config.channel_independent``. Order: resize, geometry, blur,
    ramp, gamma, contrast, brightness, specks, read + shot noise.

    Randomness comes from ``generator`` (on the batch's device) in a fixed order: one uniform draw of shape
    ``[B, 16 + 5 * MAX_SPECKS + 3 * C]`` for every per-sample parameter, then one standard normal field for
    the noise, so one seed gives one output. Nothing is read back to the host (no synchronisation) and
    nothing loops over the batch.

    In evaluation mode (``module.eval()``) the batch is returned unchanged, or only resized to ``out_size``
    by the same resize as in training.
    """

    def __init__(self, config: AugmentConfig | None = None, *, out_size: int | None = None):
        super().__init__()
        config = AugmentConfig() if config is None else config
        config.validate()
        if out_size is not None and (not isinstance(out_size, int) or isinstance(out_size, bool) or out_size < 1):
            raise CtcidError(f"augment out_size must be a positive number of pixels (got {out_size!r})")
        self.config = config
        self.out_size = out_size
        self._radius = blur_radius(config.blur_sigma[1])

    def extra_repr(self) -> str:
        families = ", ".join(self.config.families()) or "none"
        return f"families=[{families}], out_size={self.out_size}"

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` of the output for an input of the given size."""
        return (height, width) if self.out_size is None else (self.out_size, self.out_size)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x`` ``[B, C, H, W]`` (training mode) or pass it through / resize it (evaluation mode)."""
        _check_batch(x)
        if not self.training:
            return resize(x, self.output_size(x.shape[-2], x.shape[-1]))
        return self.apply_params(x, self.draw_params(x, generator))

    @torch.no_grad()
    def draw_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw the per-sample parameters for batch ``x`` from ``generator`` (see :class:`AugmentParams`)."""
        _check_batch(x)
        cfg = self.config
        b, c = x.shape[0], x.shape[1]
        out_h, out_w = self.output_size(x.shape[-2], x.shape[-1])
        dev, f32 = x.device, torch.float32
        n_sample = len(_SAMPLE_COLUMNS)
        n_speck = MAX_SPECKS * len(_SPECK_COLUMNS)
        u = torch.rand(
            (b, n_sample + n_speck + len(_CHANNEL_COLUMNS) * c), generator=generator, device=dev, dtype=f32
        )
        s = u[:, :n_sample]
        sp = u[:, n_sample : n_sample + n_speck].reshape(b, MAX_SPECKS, len(_SPECK_COLUMNS))
        ch = u[:, n_sample + n_speck :].reshape(b, c, len(_CHANNEL_COLUMNS))
        if not cfg.channel_independent:
            ch = ch[:, :1].expand(b, c, len(_CHANNEL_COLUMNS))

        def col(name: str) -> torch.Tensor:
            return s[:, _COL[name]]

        blur_on = col("blur_on") < cfg.blur_p
        poisson_on = col("poisson_on") < cfg.poisson_p
        count = (col("artefact_count") * MAX_SPECKS).floor().clamp(max=MAX_SPECKS - 1) + 1
        present = (col("artefact_on") < cfg.artefact_p)[:, None] & (
            torch.arange(MAX_SPECKS, device=dev, dtype=f32)[None, :] < count[:, None]
        )
        sign = torch.where(sp[..., 4] < 0.5, -1.0, 1.0)
        params = AugmentParams(
            hflip=col("hflip") < cfg.hflip_p,
            vflip=col("vflip") < cfg.vflip_p,
            quarter_turns=(col("quarter_turns") * 4).long().clamp(max=3) * int(cfg.rot90),
            angle_deg=(2 * col("angle") - 1) * cfg.rotate_deg,
            shift=(2 * torch.stack([col("shift_x"), col("shift_y")], dim=1) - 1) * cfg.shift_frac,
            scale=_log_uniform(col("scale"), cfg.scale_range),
            blur_sigma=torch.where(blur_on, _uniform(col("blur_sigma"), cfg.blur_sigma), 0.0),
            uneven=col("uneven_amplitude") * cfg.uneven,
            uneven_direction=col("uneven_direction") * (2 * math.pi),
            gamma=_log_uniform(ch[..., 2], cfg.gamma_range),
            contrast=1 + (2 * ch[..., 1] - 1) * cfg.contrast,
            brightness=(2 * ch[..., 0] - 1) * cfg.brightness,
            speck_centre=torch.stack([sp[..., 0] * out_w - 0.5, sp[..., 1] * out_h - 0.5], dim=-1),
            speck_radius=_uniform(sp[..., 2], cfg.artefact_radius),
            speck_amplitude=sign * _uniform(sp[..., 3], cfg.artefact_amplitude) * present,
            gaussian_std=col("gaussian_std") * cfg.gaussian_std,
            poisson_peak=torch.where(poisson_on, _log_uniform(col("poisson_peak"), cfg.poisson_peak), math.inf),
            noise=None,
        )
        if cfg.noise and (cfg.gaussian_std > 0 or cfg.poisson_p > 0):
            noise = torch.randn((b, c, out_h, out_w), generator=generator, device=dev, dtype=x.dtype)
            params = dataclasses.replace(params, noise=noise)
        return params

    @torch.no_grad()
    def apply_params(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply the families switched on, with the given parameters, to ``x`` ``[B, C, H, W]``.

        No gradient flows through the augmentation. After the first operation that makes a new tensor, the
        following ones work in place on it; the input itself is never written.
        """
        _check_batch(x)
        cfg = self.config
        out_hw = self.output_size(x.shape[-2], x.shape[-1])
        # Resize first, as evaluation does (antialiased when shrinking), then move the content at the model's
        # size: resampling the full crop straight to a smaller size would alias, and a model trained on aliased
        # crops would be tested on smoother ones.
        y = resize(x, out_hw)
        if cfg.geometric:
            theta = affine_theta(
                hflip=params.hflip,
                vflip=params.vflip,
                quarter_turns=params.quarter_turns,
                angle_rad=params.angle_deg * (math.pi / 180.0),
                shift=params.shift,
                scale=params.scale,
                height=out_hw[0],
                width=out_hw[1],
            )
            y = warp(y, theta, out_hw, cfg.padding)
        if cfg.illumination:
            y = self._illuminate(y, params, owned=y is not x)
        if cfg.noise:
            y = self._add_noise(y, params, owned=y is not x)
        return y

    def _illuminate(self, x: torch.Tensor, p: AugmentParams, *, owned: bool) -> torch.Tensor:
        cfg = self.config
        h, w, dtype = x.shape[-2], x.shape[-1], x.dtype
        if cfg.blur_p > 0:
            x, owned = gaussian_blur(x, p.blur_sigma, self._radius), True
        if cfg.uneven > 0:
            gain = gradient_gain(p.uneven, p.uneven_direction, h, w).to(dtype)
            x, owned = (x.mul_(gain) if owned else x * gain), True
        if cfg.gamma_range != (1.0, 1.0):
            x = x.clamp_min_(0.0) if owned else x.clamp_min(0.0)
            x, owned = x.pow_(p.gamma[..., None, None].to(dtype)), True
        if cfg.contrast > 0 or cfg.brightness > 0:
            factor = p.contrast[..., None, None].to(dtype)
            offset = p.brightness[..., None, None].to(dtype)
            if cfg.contrast > 0:  # mean + c (x - mean) + b  ==  c x + (1 - c) mean + b
                offset = offset + (1 - factor) * x.mean(dim=(-2, -1), keepdim=True)
            x = x.mul_(factor).add_(offset) if owned else torch.addcmul(offset, x, factor)
        return x

    def _add_noise(self, x: torch.Tensor, p: AugmentParams, *, owned: bool) -> torch.Tensor:
        cfg = self.config
        h, w, dtype = x.shape[-2], x.shape[-1], x.dtype
        if cfg.artefact_p > 0:
            specks = speck_field(p.speck_centre, p.speck_radius, p.speck_amplitude, h, w).to(dtype)
            x, owned = (x.add_(specks) if owned else x + specks), True
        if p.noise is not None:
            read = (p.gaussian_std**2)[:, None, None, None].to(dtype)
            shot = (1.0 / p.poisson_peak)[:, None, None, None].to(dtype)
            # one Gaussian with the summed variance of read noise and shot noise
            std = x.clamp_min(0.0).mul_(shot).add_(read).sqrt_().mul_(p.noise)
            x = x.add_(std) if owned else x + std
        return x


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"BatchAugment expects a float tensor [B, C, H, W], got {shape}")
