"""Batched building blocks of :class:`ctcid.augment.BatchAugment`.

Every function works on a whole batch at once with per-sample parameters given as tensors on the batch's
device; none of them loops over samples or pixels in Python, reads a tensor value back to the host or modifies
its input in place.

Coordinates follow :func:`torch.nn.functional.affine_grid` with ``align_corners=False``: ``x`` points right,
``y`` points down, and the normalised range ``[-1, 1]`` spans the outer edges of the border pixels, so pixel
centres sit symmetrically about the crop centre. Flips and quarter turns of a square crop therefore map pixel
centres exactly onto pixel centres.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "affine_grid",
    "affine_theta",
    "blur_radius",
    "gaussian_blur",
    "gradient_gain",
    "resize",
    "speck_field",
    "warp",
]


def affine_theta(
    *,
    hflip: torch.Tensor,
    vflip: torch.Tensor,
    quarter_turns: torch.Tensor,
    angle_rad: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Sampling matrices ``[B, 2, 3]`` for :func:`torch.nn.functional.affine_grid`, one per sample.

    The transform of sample ``b`` maps an output position ``p`` (pixel units, from the crop centre) to the input
    position ``F R p / s - t``: ``F`` the flips, ``R`` the rotation by ``quarter_turns * 90 deg + angle``,
    ``s`` the magnification and ``t`` the shift (without rotation or scaling, the content moves by ``t``).
    The equivalent image operation is ``rot(flip(x))``: a quarter turn ``k`` with no flip equals
    ``torch.rot90(x, k, dims=(-2, -1))``. Rotation is done in pixel units, so a non-square crop is rotated
    without shear; the output covers the same field of view as the input whatever its size.

    Parameters
    ----------
    hflip, vflip
        ``[B]`` bool: mirror left-right / top-bottom.
    quarter_turns
        ``[B]`` integer in ``0..3``.
    angle_rad
        ``[B]`` float: free rotation on top of the quarter turns, radians.
    shift
        ``[B, 2]`` float: shift of the content as a fraction of the crop width (x) and height (y).
    scale
        ``[B]`` float: magnification, > 1 enlarges the content.
    height, width
        Input size in pixels.
    """
    dtype = angle_rad.dtype
    k = quarter_turns.long() % 4
    # cos and sin of k quarter turns as exact 0 / +-1 (no 6e-17 residues), without a host-to-device copy
    c90 = (k == 0).to(dtype) - (k == 2).to(dtype)
    s90 = (k == 1).to(dtype) - (k == 3).to(dtype)
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    cos = c90 * c - s90 * s  # cos(a + b), exact when the free angle is 0
    sin = s90 * c + c90 * s
    fx = 1.0 - 2.0 * hflip.to(dtype)
    fy = 1.0 - 2.0 * vflip.to(dtype)
    inv = 1.0 / scale
    aspect = height / width
    # A = F R / s in pixel units, conjugated by D = diag(W/2, H/2) into normalised units: theta = D^-1 A D.
    row0 = torch.stack([fx * cos * inv, -fx * sin * inv * aspect, -2.0 * shift[:, 0]], dim=-1)
    row1 = torch.stack([fy * sin * inv / aspect, fy * cos * inv, -2.0 * shift[:, 1]], dim=-1)
    return torch.stack([row0, row1], dim=1)


def affine_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grid ``[B, H, W, 2]`` of the matrices ``theta`` ``[B, 2, 3]`` for an output of ``size``.

    The same grid as ``torch.nn.functional.affine_grid(theta, [B, C, *size], align_corners=False)``, computed
    as one broadcast matrix product with a single ``[H * W, 3]`` table of pixel-centre coordinates instead of
    one copy per sample.
    """
    h, w = size
    dtype, device = theta.dtype, theta.device
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    base = torch.stack(
        [xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=device, dtype=dtype)], -1
    )
    return torch.matmul(base.reshape(h * w, 3), theta.transpose(1, 2)).reshape(theta.shape[0], h, w, 2)


def warp(
    x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], padding_mode: str = "reflection"
) -> torch.Tensor:
    """Resample ``x`` ``[B, C, H, W]`` with per-sample matrices ``theta`` into ``[B, C, *size]`` (one pass).

    Bilinear interpolation, ``align_corners=False``; positions outside the crop take the mirrored content
    (``padding_mode="reflection"``), so rotated or shifted crops have no constant-valued corners.
    """
    grid = affine_grid(theta.to(x.dtype), size)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size``, antialiased when shrinking: the resize that evaluation applies
    (:func:`ctcid.data.prepare_batch` without augmentation), so that training crops are not sharper or more
    aliased than the crops a model is tested on."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def blur_radius(sigma_max: float) -> int:
    """Half-width in pixels of a Gaussian kernel wide enough for ``sigma_max`` (3 sigma, at least 1)."""
    return max(1, math.ceil(3.0 * sigma_max))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each sample of ``x`` ``[B, C, H, W]`` with its own isotropic Gaussian, in one depthwise convolution.

    Parameters
    ----------
    x
        The batch.
    sigma
        ``[B]`` standard deviation in pixels; ``0`` selects a unit impulse, so that sample passes through
        exactly unchanged. Every channel of a sample gets the same kernel.
    radius
        Kernel half-width in pixels (a ``2 * radius + 1`` square), the same for the whole batch.

    Notes
    -----
    The batch is folded into the channel axis and convolved with ``groups = B * C``, one kernel per plane.
    Borders are mirrored (``reflect``; ``replicate`` when the crop is not larger than the radius).
    """
    b, c, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    sig = sigma.to(x.dtype)[:, None].clamp_min(1e-3)  # sigma 0 -> weights exactly (0, ..., 0, 1, 0, ..., 0)
    g = torch.exp(-0.5 * (offsets[None, :] / sig) ** 2)
    g = g / g.sum(dim=1, keepdim=True)  # [B, K]
    kernel = (g[:, :, None] * g[:, None, :])[:, None].expand(b, c, 2 * radius + 1, 2 * radius + 1)
    kernel = kernel.reshape(b * c, 1, 2 * radius + 1, 2 * radius + 1)
    mode = "reflect" if radius < min(h, w) else "replicate"
    padded = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode=mode)
    return F.conv2d(padded, kernel, groups=b * c).reshape(b, c, h, w)


def gradient_gain(amplitude: torch.Tensor, direction_rad: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Multiplicative illumination planes ``[B, 1, H, W]``: a linear ramp through 1 at the crop centre.

    The gain of sample ``b`` rises along ``direction_rad[b]`` and spans exactly ``1 +/- amplitude[b]`` over
    the crop (reached at the corner, or edge, furthest along the direction).
    """
    dtype, device = amplitude.dtype, amplitude.device
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2.0 / width) - 1.0
    cx, cy = torch.cos(direction_rad), torch.sin(direction_rad)
    # normalise by the largest |cx X + cy Y| over the pixel centres so the ramp spans exactly +/- amplitude
    extent = cx.abs() * xs[-1] + cy.abs() * ys[-1]
    ax = (amplitude * cx / extent)[:, None, None, None]
    ay = (amplitude * cy / extent)[:, None, None, None]
    return 1.0 + ax * xs[None, None, None, :] + ay * ys[None, None, :, None]


def speck_field(centres: torch.Tensor, radii: torch.Tensor, amplitudes: torch.Tensor, height: int, width: int):
    """Sum of small round spots ``[B, 1, H, W]``, one batched matrix product for the whole batch.

    Parameters
    ----------
    centres
        ``[B, S, 2]`` spot centres (x, y) in pixels, pixel ``(0, 0)`` centred at ``(0, 0)``.
    radii
        ``[B, S]`` spot radii in pixels, at half maximum.
    amplitudes
        ``[B, S]`` signed peak heights (0 for a spot that is absent).

    Notes
    -----
    Each spot is an isotropic Gaussian profile (an out-of-focus dust disc), which is the one round profile that
    factorises into a row and a column profile: the field is ``sum_s a_s gy_s[h] gx_s[w]``, an ``[H, S] x [S, W]``
    product per sample, so no ``[B, S, H, W]`` intermediate is built.
    """
    dtype, device = centres.dtype, centres.device
    sigma = (radii / math.sqrt(2.0 * math.log(2.0)))[..., None]  # half maximum at distance r
    gx = torch.exp(-0.5 * ((torch.arange(width, device=device, dtype=dtype) - centres[..., 0, None]) / sigma) ** 2)
    gy = torch.exp(
        -0.5 * ((torch.arange(height, device=device, dtype=dtype) - centres[..., 1, None]) / sigma) ** 2
    )
    return torch.bmm((gy * amplitudes[..., None]).transpose(1, 2), gx)[:, None]
