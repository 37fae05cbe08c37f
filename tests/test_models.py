from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ctcid.errors import CtcidError
from ctcid.models import (
    SYSTEM_A_BACKBONES,
    BundleMeta,
    Calibration,
    check_compatible,
    create_model,
    load_bundle,
    load_weights,
    read_meta,
    save_bundle,
)


@pytest.mark.parametrize("name", SYSTEM_A_BACKBONES)
@pytest.mark.parametrize("in_chans", [1, 4])
def test_system_a_backbones_adapt_to_channels(name: str, in_chans: int):
    model = create_model(name, in_chans=in_chans).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, in_chans, 32, 32))
    assert out.shape == (2, 1)


@pytest.mark.parametrize("name", SYSTEM_A_BACKBONES)
def test_one_logit_head_starts_near_zero(name: str):
    # timm initialises EfficientNet's classifier by its fan-out: with one logit, weights in U(-1, 1) and
    # initial logits of standard deviation ~15 (a first training loss near 10)
    torch.manual_seed(0)
    model = create_model(name, in_chans=1).train()
    with torch.no_grad():
        logits = model(torch.rand(32, 1, 32, 32))
    assert float(logits.std()) < 1.0 and float(logits.abs().mean()) < 2.0


def test_fan_in_head_leaves_default_heads_untouched():
    import timm

    from ctcid.models.registry import _fan_in_head

    torch.manual_seed(0)
    resnet = timm.create_model("resnet18", num_classes=1)
    before = resnet.get_classifier().weight.clone()
    _fan_in_head(resnet)
    assert torch.equal(resnet.get_classifier().weight, before)
    eff = timm.create_model("efficientnet_b0", num_classes=1)
    assert float(eff.get_classifier().weight.detach().std()) > 0.3  # timm's fan-out init
    _fan_in_head(eff)
    assert float(eff.get_classifier().weight.detach().std()) < 1 / 1280**0.5


def test_unknown_model_is_a_clear_error():
    with pytest.raises(CtcidError, match="unknown model 'resnet35'.*similar: resnet"):
        create_model("resnet35")


def test_pretrained_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CtcidError, match="pretrained needs the network.*weights='FILE.safetensors'"):
        create_model("resnet18", pretrained=True)


def test_local_weights_adapt_first_conv_and_skip_head(tmp_path: Path):
    rgb = create_model("resnet18", in_chans=3, num_classes=1000)
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(tmp_path / "w.safetensors"))
    gray = create_model("resnet18", in_chans=1, weights=tmp_path / "w.safetensors")
    # timm adapts RGB to one channel by summing over the input channels
    torch.testing.assert_close(gray.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(gray.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)
    assert gray.fc.weight.shape == (1, 512)
    with pytest.raises(CtcidError, match="another architecture|do not fit"):
        load_weights(create_model("resnet34", in_chans=1), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CtcidError, match="not a readable safetensors"):
        load_weights(gray, tmp_path / "bad.safetensors")


def _meta() -> BundleMeta:
    return BundleMeta(
        architecture="resnet18",
        channels=["BF"],
        normalisation={"BF": {"lo": 1.0, "hi": 2.0, "mean": 0.5, "std": 0.2}},
        crop_size=[32, 32],
        input_size=32,
        pixel_size_um=0.64,
        threshold=0.3,
        calibration=Calibration(prior_shift=0.5, slope=0.8, intercept=-0.2),
    )


def test_bundle_round_trip(tmp_path: Path):
    model = create_model("resnet18", in_chans=1).eval()
    save_bundle(tmp_path / "b", model, _meta())
    bundle = load_bundle(tmp_path / "b")
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), model(x))
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["threshold"] == 0.3 and len(meta["weights_sha256"]) == 64
    assert meta["calibration"]["slope"] == 0.8 and meta["format_version"] == 2
    assert bundle.meta.probabilities([0.5])[0] == pytest.approx(1 / (1 + np.exp(0.2)))
    assert bundle.model_id == meta["model_id"] and meta["model_id"].startswith("resnet18-")
    assert "torch" in meta["versions"] and meta["created"]


def test_bundle_of_format_1_reads_its_temperature(tmp_path: Path):
    save_bundle(tmp_path / "b", create_model("resnet18", in_chans=1), _meta())
    path = tmp_path / "b" / "model.json"
    old = json.loads(path.read_text())
    old.pop("calibration")
    old.update(format_version=1, temperature=2.0)
    path.write_text(json.dumps(old))
    meta = read_meta(tmp_path / "b")
    assert meta.calibration_map().method == "temperature"
    assert meta.probabilities([2.0])[0] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_bundle_tampering_is_refused(tmp_path: Path):
    save_bundle(tmp_path / "b", create_model("resnet18", in_chans=1), _meta())
    w = tmp_path / "b" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CtcidError, match="sha256"):
        load_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.json").write_text("{oops")
    with pytest.raises(CtcidError, match="malformed bundle metadata"):
        read_meta(tmp_path / "b")
    with pytest.raises(CtcidError, match="not a model bundle"):
        read_meta(tmp_path)


class _FakeDataset:
    def __init__(self, channels, crop, px):
        self.channels, self.crop_size, self.pixel_size_um, self.path = channels, crop, px, Path("ds")


def test_bundle_dataset_mismatch_refused():
    meta = _meta()
    check_compatible(meta, _FakeDataset(["BF", "DAPI"], (32, 32), 0.64))
    with pytest.raises(CtcidError, match="needs channel\\(s\\) BF"):
        check_compatible(meta, _FakeDataset(["DAPI"], (32, 32), 0.64))
    with pytest.raises(CtcidError, match="32x32 px crops but the dataset has 80x80.*size=32"):
        check_compatible(meta, _FakeDataset(["BF"], (80, 80), 0.64))
    with pytest.raises(CtcidError, match="0.64 um/px but the dataset is at 1.0"):
        check_compatible(meta, _FakeDataset(["BF"], (32, 32), 1.0))
