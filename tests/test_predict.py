"""Prediction on new samples, ONNX export, explanations and the operator report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcid.errors import CtcidError
from ctcid.evaluate import ErrorRates, default_count_method, train_val_split
from ctcid.io import CellDataset
from ctcid.models import read_meta
from ctcid.predict import predict
from ctcid.train import TrainConfig, fit

FOUR = ["BF", "DAPI", "CK", "CD45"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An easy cohort written as a raw export, its ingested dataset, and a small CNN trained on it."""
    from ctcid.io import IngestOptions, ingest
    from ctcid.synth import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("pred")
    cfg = SynthConfig(patients=5, cells_per_patient=36, ctc_fraction=0.3, size=48, seed=3, difficulty="easy")
    (root / "export").mkdir()
    generate_cohort(root / "export", cfg, workers=1)
    ingest(root / "export", root / "ds", IngestOptions(workers=0))
    ds = CellDataset.open(root / "ds")
    split = train_val_split(ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=0.25, seed=0)
    tcfg = TrainConfig(
        model="resnet18", channels=FOUR, epochs=4, batch_size=32, input_size=32, n_boot=20, progress=False
    )
    fit(ds, split, tcfg, root / "run")
    return {
        "root": root,
        "export": root / "export",
        "ds": root / "ds",
        "run": root / "run",
        "model": root / "run" / "model",
    }


def test_predict_from_a_dataset_and_from_a_raw_export_agree(trained: dict[str, Path], tmp_path: Path) -> None:
    a = predict(trained["model"], trained["ds"], tmp_path / "a")
    b = predict(trained["model"], trained["export"], tmp_path / "b")
    assert (tmp_path / "b" / "dataset" / "dataset.json").is_file()
    np.testing.assert_allclose(a.predictions["logit"], b.predictions["logit"], atol=1e-5)
    for name in ("predictions.parquet", "predictions.csv", "counts.csv", "predict.json"):
        assert (tmp_path / "a" / name).is_file()
    cols = {"cell_id", "sample_id", "p_ctc", "call", "uncertainty", "qc_flags", "model_id"}
    assert cols <= set(pd.read_parquet(tmp_path / "a" / "predictions.parquet").columns)
    counts = pd.read_csv(tmp_path / "a" / "counts.csv")
    assert counts["cells"].sum() == len(a.predictions) == len(CellDataset.open(trained["ds"]))
    for m in ("expected", "adjusted", "ctc_estimate"):
        col = m if m == "ctc_estimate" else f"{m}_ctc"
        assert (counts[f"{col}_lo"] <= counts[col]).all() and (counts[col] <= counts[f"{col}_hi"]).all()
    method = default_count_method(ErrorRates.from_metrics(read_meta(trained["model"]).metrics))
    assert (counts["count_method"] == method).all()
    assert (counts["ctc_estimate"] == counts[f"{method}_ctc"]).all()
    # a few epochs on four patients: counts right for most patients of this easy cohort; the expected count rests
    # on a calibration fitted on one validation patient, hence its looser bound (`ctcid bench counts` measures it)
    assert (counts["called_ctc"] - counts["true_ctc"]).abs().median() <= 2
    assert (counts["expected_ctc"] - counts["true_ctc"]).abs().median() <= 3
    info = json.loads((tmp_path / "a" / "predict.json").read_text())
    assert info["count_method"] == method and info["calibration"]["method"] == "platt"
    # the queue's uncertainty peaks where calls flip: at the bundle's threshold, not at p = 0.5
    pred = a.predictions
    nearest = pred.loc[pred["uncertainty"].idxmax(), "p_ctc"]
    threshold = read_meta(trained["model"]).threshold
    assert abs(nearest - threshold) <= abs(pred["p_ctc"] - threshold).min() + 1e-9
    with pytest.raises(CtcidError, match="already exists"):
        predict(trained["model"], trained["ds"], tmp_path / "a")


def test_predict_refuses_a_dataset_without_the_models_channels(trained: dict[str, Path], tmp_path: Path) -> None:
    from conftest import make_store
    from ctcid.io import DatasetWriter

    ds = CellDataset.open(trained["ds"])
    two = tmp_path / "two"
    two.mkdir()
    w = DatasetWriter(two, ["BF", "DAPI"], 48, ds.pixel_size_um)
    w.append(
        ds.images(slice(0, 4), ["BF", "DAPI"]), ds.table.iloc[:4].drop(columns=["index"]).reset_index(drop=True)
    )
    w.finish({"source": {"root": "x", "layout": "test", "detected": False}, "rejected": 0})
    with pytest.raises(CtcidError, match="needs channel"):
        predict(trained["model"], two, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    other = make_store(tmp_path / "other", size=32)
    with pytest.raises(CtcidError, match="crops"):
        predict(trained["model"], other, tmp_path / "out")


def test_onnx_export_matches_pytorch_and_runs_in_predict(trained: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    from ctcid.export import export_onnx

    bundle = tmp_path / "model"
    shutil.copytree(trained["model"], bundle)
    try:
        report = export_onnx(bundle, dataset=trained["ds"], int8=True, calibration_cells=128)
    except CtcidError as exc:
        assert "INT8 model changes validation F1" in str(exc)
        report = json.loads((bundle / "export.json").read_text())
    assert report["parity_max_abs_logit_diff"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(bundle / "model.onnx")).metadata_props}
    assert json.loads(meta["ctcid_model_json"])["model_id"] == meta["ctcid_model_id"]
    r8 = report["int8"]
    assert r8["accepted"] == (r8["f1_difference"] <= 0.005) == (bundle / "model.int8.onnx").is_file()
    torch_pred = predict(bundle, trained["ds"], tmp_path / "t")
    onnx_pred = predict(bundle, trained["ds"], tmp_path / "o", engine="onnx")
    assert np.abs(torch_pred.predictions["logit"] - onnx_pred.predictions["logit"]).max() <= 1e-4
    assert json.loads((tmp_path / "o" / "predict.json").read_text())["engine"] == "onnx"


def test_onnx_engine_without_export_is_a_clear_error(trained: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "model"
    shutil.copytree(trained["model"], bundle)
    for f in bundle.glob("*.onnx"):
        f.unlink()
    with pytest.raises(CtcidError, match="ctcid export"):
        predict(bundle, trained["ds"], tmp_path / "o", engine="onnx")


def test_overwrite_never_deletes_review_decisions(trained: dict[str, Path], tmp_path: Path) -> None:
    predict(trained["model"], trained["ds"], tmp_path / "p")
    (tmp_path / "p" / "review.sqlite").write_bytes(b"decisions")
    with pytest.raises(CtcidError, match="review decisions"):
        predict(trained["model"], trained["ds"], tmp_path / "p", overwrite=True)
    assert (tmp_path / "p" / "review.sqlite").read_bytes() == b"decisions"
    assert (tmp_path / "p" / "predictions.csv").is_file()


def test_explain_writes_overlays(trained: dict[str, Path], tmp_path: Path) -> None:
    from ctcid.cli.main import run

    with pytest.raises(SystemExit) as exc:
        run(["explain", str(trained["model"]), str(trained["ds"]), str(tmp_path / "ex"), "--top", "3"])
    assert exc.value.code in (0, None)
    assert len(list((tmp_path / "ex").glob("*.png"))) == 3
    sal = np.load(tmp_path / "ex" / "saliency.npy")
    assert sal.shape == (3, 48, 48) and sal.max() == pytest.approx(1.0) and sal.min() >= 0
    from ctcid.explain import DEFAULT_METHOD

    summary = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert summary["method"] == DEFAULT_METHOD and summary["masks"] is None  # no true masks, no segmentation
    assert -1 <= summary["randomisation_similarity"] <= 1


def _check_self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "@import" not in text and "url(" not in text
    for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
        assert src.startswith("data:image/png;base64,")


def test_report_of_a_prediction_is_self_contained(trained: dict[str, Path], tmp_path: Path) -> None:
    from ctcid.report import write_report

    predict(trained["model"], trained["ds"], tmp_path / "p")
    out = write_report(tmp_path / "p", tmp_path / "r.html", top=8, queue=4, n_boot=20)
    text = out.read_text()
    _check_self_contained(text)
    assert text.count('<figure class="cell"') >= 12  # candidates, queue, errors
    for section in (
        "CTC counts per sample",
        "Review queue",
        "Quality control",
        "Performance against the labels",
        "Model card",
        "False positives",
        "False negatives",
    ):
        assert section in text, section
    assert "(max-f1 on the validation patients)" in text  # the model card names the threshold's rule
    with pytest.raises(CtcidError, match="HTML"):
        write_report(tmp_path / "p", tmp_path / "r.txt")


def test_report_renders_in_headless_chromium(trained: dict[str, Path], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); the HTML checks above still run"
        )
    from PIL import Image

    from ctcid.report import write_report

    html = write_report(trained["run"], tmp_path / "run.html", top=6, queue=3, n_boot=20)
    shot = tmp_path / "shot.png"
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1200,1400",
    ]
    subprocess.run([*args, f"--screenshot={shot}", html.as_uri()], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.std() > 20  # not a blank page
    dom = subprocess.run(
        [*args, "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120
    )
    assert dom.stdout.count('class="cell"') >= 6 and "CTC counts per sample" in dom.stdout
    assert 'alt="pr_roc"' in dom.stdout and 'alt="calibration"' in dom.stdout


def test_two_process_prediction_predicts_every_cell_once(trained: dict[str, Path], tmp_path: Path) -> None:
    import os
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "ctcid", "predict", str(trained["model"]), str(trained["ds"])]
    subprocess.run([*base, str(tmp_path / "one"), "--device", "cpu"], check=True, capture_output=True, env=env)
    proc = subprocess.run(
        [*base, str(tmp_path / "two"), "--device", "cpu", "--devices", "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = pd.read_parquet(tmp_path / "one" / "predictions.parquet")
    two = pd.read_parquet(tmp_path / "two" / "predictions.parquet")
    assert two["cell_id"].is_unique and len(two) == len(CellDataset.open(trained["ds"]))
    np.testing.assert_allclose(two["logit"], one["logit"], atol=1e-5)
    assert json.loads((tmp_path / "two" / "predict.json").read_text())["devices"] == 2
    with pytest.raises(CtcidError, match="ingested dataset"):
        predict(trained["model"], trained["export"], tmp_path / "x", devices=2)


def test_report_survival_section_from_counts_and_a_clinical_table(tmp_path: Path) -> None:
    from ctcid.report.html import _survival_section
    from ctcid.synth import sample_outcomes

    rng = np.random.default_rng(0)
    true = rng.poisson(rng.choice([0.5, 8.0], 60))
    patients = pd.DataFrame({"sample_id": [f"P{i:02d}" for i in range(60)], "n_ctc": true})
    clinical = tmp_path / "clinical.csv"
    sample_outcomes(patients, seed=0).to_csv(clinical, index=False)
    counts = pd.DataFrame(
        {"sample_id": patients["sample_id"], "ctc_estimate": true + rng.uniform(0, 0.5, 60), "true_ctc": true}
    )
    parts = _survival_section(counts, clinical, n_boot=100)
    assert parts[0] == "<h2>Survival</h2>" and parts[1].startswith('<section class="survival">')
    assert "manual" in parts[1] and "predicted" in parts[1] and "data:image/png;base64," in parts[1]
