"""Batched augmentation (System A): exact geometry, each illumination and noise operation, seeding, API."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcid.augment import MAX_SPECKS, AugmentConfig, AugmentParams, BatchAugment, augment_families, describe
from ctcid.augment._kernels import affine_grid, affine_theta
from ctcid.errors import CtcidError

# neutral settings: with all three, every family is switched on but does nothing
GEO_OFF = {
    "hflip_p": 0.0,
    "vflip_p": 0.0,
    "rot90": False,
    "rotate_deg": 0.0,
    "shift_frac": 0.0,
    "scale_range": (1, 1),
}
ILLUM_OFF = {"blur_p": 0.0, "uneven": 0.0, "gamma_range": (1, 1), "contrast": 0.0, "brightness": 0.0}
NOISE_OFF = {"artefact_p": 0.0, "gaussian_std": 0.0, "poisson_p": 0.0}


def only(**kw) -> AugmentConfig:
    """A configuration whose families are all on but neutral, except for the options given."""
    return AugmentConfig(**{**GEO_OFF, **ILLUM_OFF, **NOISE_OFF, **kw})


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(cfg: AugmentConfig, x: torch.Tensor, seed: int = 0, **kw) -> tuple[torch.Tensor, AugmentParams]:
    aug = BatchAugment(cfg, **kw)
    params = aug.draw_params(x, gen(seed))
    return aug.apply_params(x, params), params


def image(b: int = 8, c: int = 1, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, c, h, w), generator=gen(seed))


def coords(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (y, x) from the crop centre."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    return torch.meshgrid(r, r, indexing="ij")


def blob(b: int, size: int, sigma: float, sigma_y: float | None = None) -> torch.Tensor:
    yy, xx = coords(size)
    sy = sigma if sigma_y is None else sigma_y
    return torch.exp(-(xx**2) / (2 * sigma**2) - yy**2 / (2 * sy**2)).expand(b, 1, size, size).clone()


def centroid(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intensity centroid (x, y) in pixel indices, per sample of [B, 1, H, W]."""
    h, w = img.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    m = img.sum(dim=(-2, -1))
    return (img * xs).sum(dim=(-2, -1))[:, 0] / m[:, 0], (img * ys).sum(dim=(-2, -1))[:, 0] / m[:, 0]


def laplacian_var(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k).reshape(x.shape[0], -1).var(dim=1)


# --- API and identity ------------------------------------------------------------------------------------


def test_families_listed_in_order():
    assert augment_families() == ("geometric", "illumination", "noise")
    assert AugmentConfig().families() == ["geometric", "illumination", "noise"]
    assert AugmentConfig(illumination=False).families() == ["geometric", "noise"]
    assert AugmentConfig.none().families() == []


def test_all_families_off_is_exact_identity():
    x = image(c=2)
    aug = BatchAugment(AugmentConfig.none())
    assert torch.equal(aug(x, gen()), x)
    assert torch.equal(BatchAugment(AugmentConfig.none(), out_size=32)(x, gen()), x)


def test_neutral_parameters_are_identity_to_float_precision():
    x = image(c=3)
    y, _ = run(only(), x)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_eval_mode_returns_input_or_resizes_only():
    x = image()
    aug = BatchAugment(AugmentConfig()).eval()
    assert aug(x) is x
    small = BatchAugment(AugmentConfig(), out_size=20).eval()(x)
    assert torch.equal(
        small, F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False, antialias=True)
    )


def test_same_seed_same_output_other_seed_other_output():
    x = image(c=2)
    aug = BatchAugment(AugmentConfig())
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_switching_a_family_off_keeps_the_draws_of_the_others():
    x = image(c=2)
    full = BatchAugment(AugmentConfig()).draw_params(x, gen(3))
    geo = BatchAugment(AugmentConfig(illumination=False, noise=False)).draw_params(x, gen(3))
    for f in ("hflip", "quarter_turns", "angle_deg", "shift", "scale", "gamma", "blur_sigma"):
        assert torch.equal(getattr(full, f), getattr(geo, f)), f
    assert full.noise is not None and geo.noise is None


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(),
        AugmentConfig(geometric=False),
        AugmentConfig(geometric=False, blur_p=0.0),
        AugmentConfig(geometric=False, blur_p=0.0, uneven=0.0),
        AugmentConfig(geometric=False, illumination=False),
        AugmentConfig(geometric=False, illumination=False, artefact_p=0.0),
        only(brightness=0.1),
    ],
)
def test_input_never_modified(cfg: AugmentConfig):
    x = image(c=2)
    before = x.clone()
    y = BatchAugment(cfg)(x, gen())
    assert torch.equal(x, before)
    assert y.data_ptr() != x.data_ptr()


def test_each_family_alone_changes_the_input():
    x = image(b=16)
    for fam in augment_families():
        cfg = AugmentConfig(**{f: f == fam for f in augment_families()})
        assert cfg.families() == [fam]
        y = BatchAugment(cfg)(x, gen())
        assert (y - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3, fam  # every sample changed


@pytest.mark.parametrize("b", [1, 64])
def test_batch_sizes_shape_dtype_device(b: int):
    x = image(b=b, c=2, h=24, w=24)
    y = BatchAugment(AugmentConfig())(x, gen())
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert torch.isfinite(y).all()


def test_samples_are_augmented_independently():
    """Each sample's output depends only on that sample and its own parameters (no mixing across the batch)."""
    x = image(b=6, c=2)
    aug = BatchAugment(AugmentConfig(blur_p=0.5, artefact_p=0.5, poisson_p=0.5), out_size=28)
    params = aug.draw_params(x, gen(4))
    y = aug.apply_params(x, params)
    for i in range(x.shape[0]):
        one = AugmentParams(**{f.name: _row(getattr(params, f.name), i) for f in dataclasses.fields(params)})
        torch.testing.assert_close(aug.apply_params(x[i : i + 1], one), y[i : i + 1], atol=1e-5, rtol=0)


def _row(t: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if t is None else t[i : i + 1]


def test_rejects_tensors_that_are_not_float_batches():
    aug = BatchAugment(AugmentConfig())
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        aug(torch.rand(1, 32, 32))
    with pytest.raises(ValueError):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.int64))


# --- geometric ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "v", "dims"), [(1.0, 0.0, (-1,)), (0.0, 1.0, (-2,)), (1.0, 1.0, (-2, -1))])
def test_forced_flips_are_exact(h: float, v: float, dims: tuple[int, ...]):
    x = image(c=2, h=32, w=24)  # asymmetric content, non-square crop
    y, _ = run(only(hflip_p=h, vflip_p=v), x)
    torch.testing.assert_close(y, x.flip(dims), atol=1e-5, rtol=0)


def test_quarter_turns_match_rot90_exactly():
    x = image(b=32, c=2)
    y, p = run(only(rot90=True), x)
    assert set(p.quarter_turns.tolist()) == {0, 1, 2, 3}
    for i, k in enumerate(p.quarter_turns.tolist()):
        torch.testing.assert_close(y[i], torch.rot90(x[i], k, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_flip_then_quarter_turn_composition():
    x = image(b=16)
    y, p = run(only(rot90=True, hflip_p=0.5), x)
    for i in range(16):
        ref = x[i].flip(-1) if p.hflip[i] else x[i]
        torch.testing.assert_close(
            y[i], torch.rot90(ref, int(p.quarter_turns[i]), dims=(-2, -1)), atol=1e-5, rtol=0
        )


def test_grid_matches_torch_affine_grid():
    theta = torch.randn((5, 2, 3), generator=gen())
    for size in [(7, 7), (12, 9)]:
        ref = F.affine_grid(theta, [5, 1, *size], align_corners=False)
        torch.testing.assert_close(affine_grid(theta, size), ref, atol=1e-6, rtol=0)


def test_rotation_preserves_mass_and_turns_content_counter_clockwise():
    x = blob(16, 32, sigma=4.0, sigma_y=2.0)  # centred, elongated along x
    y, p = run(only(rotate_deg=80.0), x)
    ratio = y.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ((ratio - 1).abs() < 0.03).all()
    yy, xx = coords(32)
    w = y[:, 0]
    sxx, syy, sxy = ((w * xx * xx).sum((1, 2)), (w * yy * yy).sum((1, 2)), (w * xx * yy).sum((1, 2)))
    axis = 0.5 * torch.rad2deg(torch.atan2(2 * sxy, sxx - syy))  # y points down: positive = clockwise on screen
    torch.testing.assert_close(axis, -p.angle_deg, atol=1.5, rtol=0)


def test_rotation_of_a_non_square_crop_has_no_shear():
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(48.0) - 23.5, indexing="ij")
    x = torch.exp(-(xx**2 + yy**2) / (2 * 3.0**2)).expand(8, 1, 32, 48)
    y, p = run(only(rotate_deg=60.0, padding="border"), x)  # border: no mirrored copies of the blob
    assert p.angle_deg.abs().max() > 30
    w = y[:, 0] / y[:, 0].sum((1, 2), keepdim=True)
    sxx, syy, sxy = (w * xx * xx).sum((1, 2)), (w * yy * yy).sum((1, 2)), (w * xx * yy).sum((1, 2))
    torch.testing.assert_close(sxx, torch.full((8,), 9.0), atol=0.2, rtol=0)  # still round, sigma 3 px
    torch.testing.assert_close(syy, sxx, atol=0.1, rtol=0)
    torch.testing.assert_close(sxy, torch.zeros(8), atol=0.1, rtol=0)


def test_constant_background_continues_without_dark_corners():
    x = torch.full((8, 1, 32, 32), 0.7)
    for padding in ("reflection", "border"):
        y, _ = run(
            AugmentConfig(
                illumination=False, noise=False, shift_frac=0.3, scale_range=(0.5, 0.8), padding=padding
            ),
            x,
        )
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_shift_moves_content_by_fraction_of_size():
    x = blob(8, 32, sigma=2.0)
    y, p = run(only(shift_frac=0.1), x)
    cx, cy = centroid(y)
    torch.testing.assert_close(cx - 15.5, p.shift[:, 0] * 32, atol=0.05, rtol=0)
    torch.testing.assert_close(cy - 15.5, p.shift[:, 1] * 32, atol=0.05, rtol=0)


def test_scale_magnifies_content():
    x = blob(4, 48, sigma=3.0)
    y, p = run(only(scale_range=(1.5, 1.5)), x)
    assert torch.allclose(p.scale, torch.tensor(1.5))
    _, xx = coords(48)
    var = (y[:, 0] * xx**2).sum((1, 2)) / y[:, 0].sum((1, 2))
    torch.testing.assert_close(var.sqrt(), torch.full((4,), 4.5), atol=0.1, rtol=0)


@pytest.mark.parametrize("geometric", [True, False])
def test_out_size_shape_and_centred_disc_stays_centred(geometric: bool):
    yy, xx = coords(40)
    disc = ((xx**2 + yy**2) <= 8**2).float().expand(8, 2, 40, 40)
    cfg = AugmentConfig(geometric=geometric, illumination=False, noise=False, shift_frac=0.0)
    y, p = run(cfg, disc, out_size=24)
    assert y.shape == (8, 2, 24, 24)
    cx, cy = centroid(y[:, :1])
    torch.testing.assert_close(cx, torch.full((8,), 11.5), atol=0.05, rtol=0)
    torch.testing.assert_close(cy, torch.full((8,), 11.5), atol=0.05, rtol=0)
    area = (y[:, 0] > 0.5).float().sum((1, 2))
    radius = 8 * 24 / 40 * (p.scale if geometric else 1.0)
    assert ((area / (math.pi * radius**2) - 1).abs() < 0.15).all()


def test_training_resize_matches_evaluation_resize():
    x = image(h=40, w=40)
    y, _ = run(only(), x, out_size=24)
    torch.testing.assert_close(y, BatchAugment(AugmentConfig(), out_size=24).eval()(x), atol=1e-5, rtol=0)


def test_training_crops_are_resized_as_evaluation_resizes_them():
    """A crop shrunk to the model's input size must look the same in training (through the augmentation) as at
    evaluation (prepare_batch without augmentation): both antialiased, so that no augmented model trains on
    sharper, aliased crops than it is tested on. Quarter turns and flips then only permute those pixels."""
    from ctcid.data import Normalizer, prepare_batch

    pixels = (torch.rand((4, 1, 64, 64), generator=gen(3)) * 1000).to(torch.int32).to(torch.uint16)
    norm = Normalizer({"BF": {"mode": "window", "lo": 0.0, "hi": 1000.0, "mean": 0.5, "std": 0.25}}, ["BF"])
    src = torch.zeros(4, 1, dtype=torch.long)
    evaluated = prepare_batch(pixels, src, norm, input_size=40)
    neutral = prepare_batch(pixels, src, norm, input_size=40, augment=BatchAugment(only(), out_size=40))
    torch.testing.assert_close(neutral, evaluated, atol=1e-5, rtol=0)
    aliased = F.interpolate(norm.window(pixels, src), size=(40, 40), mode="bilinear", align_corners=False)
    assert (norm.standardise(aliased, src) - evaluated).abs().mean() > 0.05  # the resize the test guards against
    turned = BatchAugment(only(rot90=True, hflip_p=0.5), out_size=40)
    windowed = norm.window(pixels, src)
    params = turned.draw_params(windowed, gen(1))
    y = turned.apply_params(windowed, params)
    expect = F.interpolate(windowed, size=(40, 40), mode="bilinear", align_corners=False, antialias=True)
    for i in range(4):
        e = expect[i].flip(-1) if params.hflip[i] else expect[i]
        e = torch.rot90(e, int(params.quarter_turns[i]), dims=(-2, -1))
        torch.testing.assert_close(y[i], e, atol=1e-5, rtol=0)


def test_theta_quarter_turn_entries_are_exact():
    one = torch.ones(4)
    theta = affine_theta(
        hflip=torch.zeros(4, dtype=torch.bool),
        vflip=torch.zeros(4, dtype=torch.bool),
        quarter_turns=torch.arange(4),
        angle_rad=torch.zeros(4),
        shift=torch.zeros(4, 2),
        scale=one,
        height=8,
        width=8,
    )
    assert set(theta[:, :, :2].flatten().tolist()) <= {-1.0, 0.0, 1.0}


# --- illumination -------------------------------------------------------------------------------------


def test_brightness_shifts_each_channel_by_its_offset():
    x = image(b=16, c=3)
    y, p = run(only(brightness=0.1), x)
    shift = (y - x).mean(dim=(-2, -1))
    torch.testing.assert_close(shift, p.brightness, atol=1e-6, rtol=0)
    torch.testing.assert_close((y - x).std(dim=(-2, -1)), torch.zeros(16, 3), atol=1e-6, rtol=0)
    assert p.brightness.abs().max() <= 0.1 and p.brightness.std() > 0.02
    assert (p.brightness[:, 0] != p.brightness[:, 1]).all()  # per-channel draws
    _, shared = run(only(brightness=0.1, channel_independent=False), x)
    assert torch.equal(shared.brightness[:, 0], shared.brightness[:, 2])


def test_contrast_scales_spread_around_the_mean():
    x = image(b=16, c=2)
    y, p = run(only(contrast=0.3), x)
    torch.testing.assert_close(y.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=1e-5, rtol=0)
    ratio = y.std(dim=(-2, -1)) / x.std(dim=(-2, -1))
    torch.testing.assert_close(ratio, p.contrast, atol=1e-4, rtol=0)
    assert ((p.contrast >= 0.7) & (p.contrast <= 1.3)).all()


def test_gamma_is_a_monotone_power():
    ramp = torch.linspace(0.0, 1.0, 32).expand(16, 1, 32, 32).clone()
    y, p = run(only(gamma_range=(0.5, 2.0)), ramp)
    assert (y[..., 1:] > y[..., :-1]).all()
    torch.testing.assert_close(y, ramp ** p.gamma[..., None, None], atol=1e-6, rtol=0)
    y2, _ = run(only(gamma_range=(2.0, 2.0)), ramp)
    torch.testing.assert_close(y2, ramp**2, atol=1e-6, rtol=0)


def test_uneven_illumination_is_a_linear_gain_ramp():
    x = torch.full((8, 2, 32, 32), 0.5)
    y, p = run(only(uneven=0.4), x)
    gain = y / x
    torch.testing.assert_close(gain[:, 0], gain[:, 1])  # shared by the channels
    torch.testing.assert_close(gain.amax(dim=(1, 2, 3)), 1 + p.uneven, atol=1e-5, rtol=0)
    torch.testing.assert_close(gain.amin(dim=(1, 2, 3)), 1 - p.uneven, atol=1e-5, rtol=0)
    torch.testing.assert_close(gain.diff(dim=-1).diff(dim=-1), torch.zeros(8, 2, 32, 30), atol=1e-5, rtol=0)


def test_blur_reduces_high_frequencies_only_where_applied():
    x = image(b=16, c=2)
    y, p = run(only(blur_p=0.5, blur_sigma=(0.8, 1.5)), x)
    on = p.blur_sigma > 0
    assert 0 < on.sum() < 16
    assert (laplacian_var(y[on]) < 0.3 * laplacian_var(x[on])).all()
    assert torch.equal(y[~on], x[~on])
    torch.testing.assert_close(y[on].mean(dim=(-2, -1)), x[on].mean(dim=(-2, -1)), atol=0.02, rtol=0)


# --- noise --------------------------------------------------------------------------------------------


def test_gaussian_noise_std_follows_the_setting():
    x = torch.full((16, 1, 32, 32), 0.5)
    stds = []
    for level in (0.01, 0.05, 0.1):
        y, p = run(only(gaussian_std=level), x)
        s = y.std(dim=(1, 2, 3))
        assert ((s / p.gaussian_std - 1).abs() < 0.1).all()
        stds.append(s.mean().item())
    assert stds[0] < stds[1] < stds[2]


def test_shot_noise_is_larger_on_bright_regions():
    x = torch.full((8, 1, 32, 32), 0.05)
    x[..., 16:] = 0.9
    y, p = run(only(poisson_p=1.0, poisson_peak=(50.0, 200.0)), x)
    assert torch.isfinite(p.poisson_peak).all()
    dark, bright = (y - x)[..., :16].std(dim=(1, 2, 3)), (y - x)[..., 16:].std(dim=(1, 2, 3))
    assert (bright > 2.5 * dark).all()
    torch.testing.assert_close(bright, (0.9 / p.poisson_peak).sqrt(), rtol=0.15, atol=0)
    none, q = run(only(poisson_p=0.0, gaussian_std=0.0), x)
    assert torch.isinf(q.poisson_peak).all() and torch.equal(none, x)


def test_artefacts_are_few_small_specks():
    x = torch.full((16, 1, 32, 32), 0.5)
    y, p = run(only(artefact_p=1.0), x)
    diff = (y - x)[:, 0]
    present = p.speck_amplitude != 0
    assert ((present.sum(1) >= 1) & (present.sum(1) <= MAX_SPECKS)).all()
    assert (diff.abs().amax(dim=(1, 2)) > 0.05).all()
    touched = (diff.abs() > 0.01).float().sum(dim=(1, 2))
    assert (touched < MAX_SPECKS * math.pi * 7**2).all()  # a few spots of radius <= 3 px
    single = present.sum(1) == 1
    sign = (p.speck_amplitude.sum(1)).sign()
    peak = torch.where(sign > 0, diff.amax(dim=(1, 2)), diff.amin(dim=(1, 2)))
    assert ((peak.sign() == sign) | ~single).all()
    signs = p.speck_amplitude[present].sign()
    assert (signs > 0).any() and (signs < 0).any()  # bright and dark specks
    clean, _ = run(only(artefact_p=0.0), x)
    assert torch.equal(clean, x)


def test_artefact_probability_selects_samples():
    x = torch.full((32, 1, 16, 16), 0.5)
    y, p = run(only(artefact_p=0.4), x)
    hit = (p.speck_amplitude != 0).any(dim=1)
    assert 4 <= hit.sum() <= 24
    changed = (y != x).flatten(1).any(dim=1)
    assert torch.equal(changed, hit)


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"hflip_p": -0.1}, "hflip_p"),
        ({"blur_p": 1.5}, "blur_p"),
        ({"artefact_p": float("nan")}, "artefact_p"),
        ({"gamma_range": (2.0, 1.0)}, "gamma_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"poisson_peak": (10.0,)}, "poisson_peak"),
        ({"blur_sigma": (0.5, 20.0)}, "blur_sigma"),
        ({"uneven": 1.0}, "uneven"),
        ({"contrast": -0.2}, "contrast"),
        ({"rotate_deg": "45"}, "rotate_deg"),
        ({"geometric": "yes"}, "geometric"),
        ({"padding": "zeros"}, "padding"),
    ],
)
def test_validate_rejects_bad_values(kw: dict, name: str):
    with pytest.raises(CtcidError, match=name):
        AugmentConfig(**kw)


def test_validate_runs_on_existing_configs_and_out_size_is_checked():
    cfg = AugmentConfig()
    cfg.validate()
    object.__setattr__(cfg, "brightness", -1.0)
    with pytest.raises(CtcidError, match="brightness"):
        cfg.validate()
    with pytest.raises(CtcidError, match="out_size"):
        BatchAugment(AugmentConfig(), out_size=0)


def test_ranges_from_yaml_lists_become_tuples():
    cfg = AugmentConfig(scale_range=[0.8, 1.2], gamma_range=[1, 1])
    assert cfg.scale_range == (0.8, 1.2) and cfg.gamma_range == (1, 1)
    assert hash(cfg) == hash(AugmentConfig(scale_range=(0.8, 1.2), gamma_range=(1, 1)))


def test_describe_is_json_and_round_trips():
    cfg = AugmentConfig(noise=False, blur_p=0.3)
    d = json.loads(json.dumps(describe(cfg, out_size=64)))
    assert d["families"] == ["geometric", "illumination"] and d["out_size"] == 64
    assert AugmentConfig(**d["config"]) == cfg


_ranges = st.tuples(st.floats(0.5, 1.0), st.floats(1.0, 2.0))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    p=st.floats(0.0, 1.0),
    scale=_ranges,
    gamma=_ranges,
    blur=st.tuples(st.floats(0.1, 1.0), st.floats(1.0, 3.0)),
    out=st.sampled_from([None, 12, 20]),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_valid_config_gives_finite_output_of_the_right_shape(flags, p, scale, gamma, blur, out, seed):
    cfg = AugmentConfig(
        geometric=flags[0],
        illumination=flags[1],
        noise=flags[2],
        hflip_p=p,
        blur_p=p,
        poisson_p=p,
        artefact_p=p,
        scale_range=scale,
        gamma_range=gamma,
        blur_sigma=blur,
    )
    x = image(b=3, c=2, h=16, w=16, seed=seed % 1000)
    before = x.clone()
    y = BatchAugment(cfg, out_size=out)(x, gen(seed))
    size = out or 16
    assert y.shape == (3, 2, size, size) and torch.isfinite(y).all() and torch.equal(x, before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_the_same_parameters():
    x = image(b=16, c=2)
    aug = BatchAugment(AugmentConfig(blur_p=0.5, artefact_p=0.5), out_size=24)
    params = aug.draw_params(x, gen())
    moved = AugmentParams(
        **{
            f.name: None if (t := getattr(params, f.name)) is None else t.cuda()
            for f in dataclasses.fields(params)
        }
    )
    torch.testing.assert_close(
        aug.apply_params(x.cuda(), moved).cpu(), aug.apply_params(x, params), atol=1e-4, rtol=0
    )
    g = torch.Generator(device="cuda")
    a, b = aug(x.cuda(), g.manual_seed(1)), aug(x.cuda(), g.manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.slow
def test_traces_as_one_graph_without_host_synchronisation():
    """A full-graph trace fails on ``.item()``, host copies or data-dependent Python branches."""
    aug = BatchAugment(AugmentConfig(blur_p=0.5, artefact_p=0.5), out_size=24)
    x = image(c=2)
    params = aug.draw_params(x, gen())
    traced = torch.compile(aug.apply_params, backend="eager", fullgraph=True)
    torch.testing.assert_close(traced(x, params), aug.apply_params(x, params))
    assert torch.compile(aug, backend="eager", fullgraph=True)(x).shape == (8, 2, 24, 24)


def test_grounded_strengths_follow_the_measured_variation():
    from ctcid.augment import grounded_config, measure_variation

    gen = torch.Generator().manual_seed(0)
    quiet = 0.5 + 0.002 * torch.randn((60, 1, 32, 32), generator=gen)
    noisy = 0.5 + 0.02 * torch.randn((60, 1, 32, 32), generator=gen)
    patients = np.repeat(np.arange(12), 10)
    # noise rises from 0.002 (first six patients) to 0.02 (last six): the extra noise to add is about 0.02
    x = torch.cat([quiet, noisy])
    cfg = grounded_config(AugmentConfig(), measure_variation(x, patients))
    assert 0.012 < cfg.gaussian_std < 0.03
    assert cfg.brightness < 0.01  # every background sits at 0.5
    assert cfg.gamma_range == (1.0, 1.0) and cfg.poisson_p == 0.0
    calm = grounded_config(AugmentConfig(), measure_variation(quiet.repeat(2, 1, 1, 1), patients))
    assert calm.gaussian_std < 0.003  # patients that are alike get almost no noise augmentation
    # brighter and darker patients: brightness follows their spread
    shifted = x + torch.from_numpy(np.repeat(np.linspace(-0.1, 0.1, 12), 10)).float()[:, None, None, None]
    assert grounded_config(AugmentConfig(), measure_variation(shifted, patients)).brightness > 0.05
