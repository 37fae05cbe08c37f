"""``ctcid report``: one self-contained HTML file an operator reviews before cells are recovered.

Everything is embedded (PNG as data URIs, CSS inline): it opens offline, with no script, font or image
fetched from anywhere. Sections: per-sample CTC counts; candidates ranked by ``p_ctc`` with every channel
side by side and the saliency overlay; an uncertain-first review queue; QC (rejected files, failed
segmentation, out-of-focus cells, ingest flags); when labels exist, metrics with intervals, PR/ROC,
confusion and calibration plots, and galleries of false positives and false negatives; the model card.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import CtcidError
from ..io import CellDataset
from ..io.store import is_dataset

if TYPE_CHECKING:
    from ..models import BundleMeta

__all__ = ["ReportInputs", "focus_scores", "load_inputs", "render_report", "write_report"]

#: A cell whose bright-field sharpness is below this fraction of the dataset's median is out of focus.
FOCUS_FRACTION = 0.35


@dataclass
class ReportInputs:
    """What a report is made of: per-cell predictions, the dataset they came from, the model bundle."""

    predictions: pd.DataFrame
    dataset: CellDataset
    model_dir: Path | None
    source: Path
    kind: str  # "predict" or "run"
    counts: pd.DataFrame


#: What each count estimator is, in a few words for the report.
COUNT_NOTES = {
    "expected": "the sum of the calibrated probabilities",
    "adjusted": "the called count corrected by the sensitivity and false-positive rate on validation patients",
}


def _count_view(counts: pd.DataFrame) -> pd.DataFrame:
    """The count table as shown: the estimate with its interval, the called count, the truth when known."""
    if counts.empty:
        return counts
    view = pd.DataFrame({"sample_id": counts["sample_id"], "cells": counts["cells"]})
    view["CTC estimate"] = counts["ctc_estimate"].round(1)
    view["95% interval"] = [
        f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(counts["ctc_estimate_lo"], counts["ctc_estimate_hi"], strict=True)
    ]
    view["called CTC"] = counts["called_ctc"]
    if "ctc_per_7_5ml" in counts:
        view["per 7.5 mL"] = counts["ctc_per_7_5ml"].round(1)
    if "true_ctc" in counts:
        view["true CTC"] = counts["true_ctc"]
    return view


def _threshold_text(meta: BundleMeta) -> str:
    """The threshold and the rule that chose it (bundles trained before the rule was recorded used max-f1)."""
    config = meta.training.config
    rule = config.get("threshold_rule", "max-f1") if config else None
    return f"{meta.threshold:.4f}" + (f" ({rule} on the validation patients)" if rule else "")


def _calibration_text(cal: Any) -> str:
    if cal.method == "platt":
        return (
            f"Platt on validation patients ({cal.n_cells} cells, {cal.n_ctc} CTC): slope {cal.slope:.3f}, "
            f"intercept {cal.intercept:.3f}, after removing a class-weight logit shift of {cal.prior_shift:.3f}"
        )
    if cal.method == "temperature":
        return f"temperature {cal.temperature:.4f} (a bundle of format 1)"
    return f"{cal.method} on validation patients ({cal.n_cells} cells, {cal.n_ctc} CTC)"


def _read_predictions(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, na_values={"logit": [""], "p_ctc": [""]})


def load_inputs(path: str | os.PathLike[str]) -> ReportInputs:
    """Resolve a ``ctcid predict`` output folder or a training run folder."""
    from ..evaluate import ErrorRates, count_table
    from ..models import read_meta

    path = Path(path)
    counts_file = None
    if (path / "predict.json").is_file():
        info = json.loads((path / "predict.json").read_text())
        ds_path = path / "dataset" if is_dataset(path / "dataset") else Path(info["dataset"])
        frame = _read_predictions(path / "predictions.parquet")
        model = Path(info["model"])
        kind = "predict"
        counts_file = path / "counts.csv"
    elif (path / "run.json").is_file():
        info = json.loads((path / "run.json").read_text())
        ds_path = Path(info["dataset"])
        name = "test_predictions.csv" if (path / "test_predictions.csv").is_file() else "val_predictions.csv"
        if not (path / name).is_file():
            raise CtcidError("the run has no predictions yet (is it complete?)", path)
        frame = _read_predictions(path / name)
        model = path / "model"
        kind = "run"
        counts_file = path / "test_counts.csv" if name.startswith("test_") else None
    else:
        raise CtcidError("not a `ctcid predict` output nor a training run folder", path)
    if not is_dataset(ds_path):
        raise CtcidError("the dataset these predictions come from is missing", ds_path)
    model_dir = model if (model / "model.json").is_file() else None
    if counts_file is not None and counts_file.is_file():
        counts = pd.read_csv(counts_file, dtype={"sample_id": str})
    elif model_dir is not None:
        meta = read_meta(model_dir)
        counts = count_table(frame, meta.calibration_map(), ErrorRates.from_metrics(meta.metrics))
    else:
        raise CtcidError("neither the counts nor the model bundle these predictions come from can be found", path)
    return ReportInputs(frame, CellDataset.open(ds_path), model_dir, path, kind, counts)


def focus_scores(ds: CellDataset, cells: np.ndarray, channel: str = "BF") -> np.ndarray:
    """Sharpness of each crop: variance of the Laplacian of the bright-field image, relative to its mean."""
    from scipy import ndimage as ndi

    if channel not in ds.channels:
        return np.full(len(cells), np.nan)
    out = np.empty(len(cells))
    for lo in range(0, len(cells), 1024):
        block = ds.images(cells[lo : lo + 1024], [channel])[:, 0].astype(np.float32)
        lap = ndi.convolve(block, np.array([[[0, 1, 0], [1, -4, 1], [0, 1, 0]]], np.float32), mode="nearest")
        out[lo : lo + 1024] = lap.reshape(len(block), -1).var(axis=1) / np.maximum(
            block.reshape(len(block), -1).mean(axis=1), 1.0
        )
    return out


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(frame: pd.DataFrame, cls: str = "") -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else f"{v:.3f}"
    return v


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#555;margin-bottom:12px}table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
.cell{border:1px solid #ccc;padding:6px;margin:0;background:#fafafa}
.cell img{display:block;width:100%;height:auto;image-rendering:pixelated}
.cell figcaption{font-size:12px;margin-top:4px}.ctc{color:#b00020;font-weight:600}.wbc{color:#1a5fb4}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
.plots img{width:100%;height:auto}
.note{font-size:12px;color:#666}
.warn{border:1px solid #b00020;background:#fff4f4;color:#b00020;padding:6px 10px;font-weight:600}
"""


def _patients_unknown(meta: BundleMeta | None) -> list[str]:
    """The warning of a model trained without patient ids (``--samples-unknown``); nothing otherwise."""
    from ..evaluate import PATIENTS_UNKNOWN

    if meta is None or not meta.training.config.get("samples_unknown"):
        return []
    return [
        f'<p class="warn">{_esc(PATIENTS_UNKNOWN[:1].upper() + PATIENTS_UNKNOWN[1:])}: the model was trained on '
        "cells without patient ids (--samples-unknown), each cell its own group, so its validation cells share "
        "patients with its training cells; the threshold, calibration and metrics shown may be optimistic.</p>"
    ]


def _where(table: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """Where each cell lies on its slide (frame, position in it, slide coordinates), for datasets from
    ``ctcid detect``; empty strings otherwise."""
    if not {"frame", "x_px", "y_px"} <= set(table.columns):
        return [""] * len(rows)
    t = table.iloc[rows]
    slide = t[["slide_x_um", "slide_y_um"]].to_numpy() if "slide_x_um" in t else np.full((len(t), 2), np.nan)
    return [
        f"frame {int(f)}, x {x:.0f} y {y:.0f} px" + (f"; slide {sx:.0f}, {sy:.0f} um" if sx == sx else "")
        for f, x, y, (sx, sy) in zip(t["frame"], t["x_px"], t["y_px"], slide, strict=True)
    ]


def _gallery(rows: pd.DataFrame, images: dict[int, bytes], title_note: str) -> str:
    if rows.empty:
        return f'<p class="note">No cells {title_note}.</p>'
    items = []
    for r in rows.itertuples():
        label = (
            f" · truth <b>{_esc(r.label)}</b>" if isinstance(r.label, str) and r.label in ("ctc", "wbc") else ""
        )
        flags = f"<br><span class='note'>{_esc(r.qc_flags)}</span>" if getattr(r, "qc_flags", "") else ""
        flags += f"<br><span class='note'>{_esc(r.where)}</span>" if getattr(r, "where", "") else ""
        items.append(
            f'<figure class="cell" data-cell-id="{_esc(r.cell_id)}"><img alt="cell {_esc(r.cell_id)}" '
            f'src="{_uri(images[int(r.row)])}"><figcaption>{_esc(r.sample_id)} / {_esc(r.cell_id)} · '
            f'p<sub>CTC</sub> {r.p_ctc:.3f} · <span class="{_esc(r.call)}">{_esc(r.call)}</span>{label}'
            f"{flags}</figcaption></figure>"
        )
    return '<div class="gallery">' + "".join(items) + "</div>"


def render_report(
    inputs: ReportInputs,
    *,
    top: int = 48,
    queue: int = 24,
    n_boot: int = 500,
    clinical: str | os.PathLike[str] | None = None,
) -> str:
    """The report as one HTML string.

    ``top`` candidates (and at most ``top`` false positives and negatives) are shown, ``queue`` cells in the
    review queue; ``n_boot`` bootstrap resamples give the metrics' intervals. With ``clinical`` (a clinical
    table, see ``ctcid survival``) a survival section analyses the samples' counts.
    """
    from ..models import read_meta

    ds = inputs.dataset
    frame = _cells_shown(inputs)
    meta = read_meta(inputs.model_dir) if inputs.model_dir else None
    threshold = meta.threshold if meta else 0.5

    candidates = frame.sort_values("p_ctc", ascending=False).head(top)
    uncertain = frame.sort_values("uncertainty", ascending=False).head(queue)
    labelled = frame[frame["label"].isin(["ctc", "wbc"])]
    fp = labelled[(labelled["call"] == "ctc") & (labelled["label"] == "wbc")].sort_values("p_ctc", ascending=False)
    fn = labelled[(labelled["call"] == "wbc") & (labelled["label"] == "ctc")].sort_values("p_ctc")
    shown = pd.concat([candidates, uncertain, fp.head(top), fn.head(top)])["row"].drop_duplicates().to_numpy()
    images, saliency = _cell_images(inputs, shown, with_saliency=meta is not None)

    counts = inputs.counts
    methods = sorted(set(counts["count_method"].astype(str))) if "count_method" in counts else ["expected"]
    method, method_note = "/".join(methods), "; ".join(COUNT_NOTES.get(m, m) for m in methods)
    parts = [
        f"<h1>CTC review: {_esc(inputs.source.name)}</h1>",
        f'<div class="sub">{len(frame)} cells from {frame["sample_id"].nunique()} samples · '
        f"{int((frame['call'] == 'ctc').sum())} called CTC: a cell is called a CTC when its calibrated "
        f"probability p<sub>CTC</sub> ≥ {threshold:.3f} (the threshold chosen on the validation patients) · "
        f"dataset <code>{_esc(ds.fingerprint[:23])}…</code> · "
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</div>",
        *_patients_unknown(meta),
        "<h2>CTC counts per sample</h2>",
        _table(_count_view(counts), "counts"),
        f'<p class="note">Estimate: the {_esc(method)} count ({_esc(method_note)}), with a 95% '
        "interval that includes the uncertainty of the calibration and error rates measured on the validation "
        "patients. Called: cells at or above the threshold, which counts every false positive.</p>",
        f"<h2>Candidates, most CTC-like first (top {len(candidates)})</h2>",
        f'<p class="note">Channels left to right: {_esc(", ".join(ds.channels))}'
        + (", then the saliency (the evidence for CTC) over bright field." if saliency else ".")
        + " Every cell is drawn with the same window per channel (fluorescence from the dataset's median, "
        "black, to its 99.9th percentile, white; bright field around each crop's own background), so a dim "
        "stain looks dim on every cell.</p>",
        _gallery(candidates, images, "predicted"),
        f"<h2>Review queue: nearest the decision threshold first ({len(uncertain)})</h2>",
        f'<p class="note">Cells whose calibrated probability lies closest to the threshold p = {threshold:.3f} '
        "(in logit units): the calls most likely to flip.</p>",
        _gallery(uncertain, images, "to review"),
    ]
    parts += _qc_section(ds, frame)
    if len(labelled) and labelled["label"].nunique() == 2 and meta is not None:
        parts += _metrics_section(labelled, meta.threshold, n_boot)
        parts += [
            f"<h2>False positives ({len(fp)})</h2>",
            _gallery(fp.head(top), images, "falsely called CTC"),
            f"<h2>False negatives ({len(fn)})</h2>",
            _gallery(fn.head(top), images, "missed"),
        ]
    if clinical is not None:
        parts += _survival_section(inputs.counts, clinical, n_boot)
    if meta is not None:
        parts += ["<h2>Model card</h2>", _table(_model_card(meta), "card")]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ctcid report: {_esc(inputs.source.name)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _survival_section(counts: pd.DataFrame, clinical: str | os.PathLike[str], n_boot: int) -> list[str]:
    """Do the samples' counts predict survival? The estimated counts (and the true counts, as the reference,
    when the labels give them) analysed against ``clinical`` as ``ctcid survival`` does."""
    from ..survival import survival_analysis, survival_section_html

    sources: dict[str, pd.DataFrame] = {}
    if "true_ctc" in counts and counts["true_ctc"].notna().all():
        sources["manual"] = counts[["sample_id", "true_ctc"]].rename(columns={"true_ctc": "count"})
    sources["predicted"] = counts[["sample_id", "ctc_estimate"]].rename(columns={"ctc_estimate": "count"})
    res = survival_analysis(clinical, sources, count_column="count", n_boot=n_boot)
    return ["<h2>Survival</h2>", survival_section_html(res.result, res.images)]


def _cells_shown(inputs: ReportInputs) -> pd.DataFrame:
    """The predictions with each cell's ``row`` in the dataset, its ``label`` and ``qc_flags`` ("" when absent)
    and ``where`` it lies on its slide."""
    key = inputs.dataset.table.reset_index(drop=True)
    frame = inputs.predictions.copy()
    index = pd.Series(np.arange(len(key)), index=pd.MultiIndex.from_arrays([key["sample_id"], key["cell_id"]]))
    try:
        frame["row"] = index.loc[list(zip(frame["sample_id"], frame["cell_id"], strict=True))].to_numpy()
    except KeyError:
        raise CtcidError("the predictions name cells that are not in the dataset", inputs.source) from None
    frame["label"] = frame["label"].fillna("") if "label" in frame else ""
    frame["qc_flags"] = frame["qc_flags"].fillna("") if "qc_flags" in frame else ""
    frame["where"] = _where(key, frame["row"].to_numpy())
    return frame


def _cell_images(inputs: ReportInputs, shown: np.ndarray, *, with_saliency: bool) -> tuple[dict[int, bytes], bool]:
    """The PNG panel (every channel side by side, then the saliency overlay ``with_saliency``) of each dataset row
    in ``shown``, and whether the panels hold the saliency."""
    from ..explain import saliency_maps
    from ..models import load_bundle
    from .display import fixed_window, panel_png

    ds = inputs.dataset
    saliency = None
    if with_saliency and len(shown):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saliency = saliency_maps(load_bundle(inputs.model_dir), ds, shown)
    pixels = ds.images(shown) if len(shown) else np.zeros((0, len(ds.channels), *ds.crop_size), np.uint16)
    windows = fixed_window(ds.header.get("channel_stats", {}), ds.channels)
    images = {
        int(r): panel_png(pixels[i], windows, None if saliency is None else saliency[i], compress_level=6)
        for i, r in enumerate(shown)
    }
    return images, saliency is not None


def _qc_section(ds: CellDataset, frame: pd.DataFrame) -> list[str]:
    """Quality control: files rejected at ingest, failed segmentation, out-of-focus cells, ingest flags."""
    qc_rows = []
    rejected = ds.rejected()
    qc_rows.append(("files rejected at ingest", len(rejected)))
    if (ds.path / "segmentation" / "segmentation.json").is_file():
        from ..features import load_segmentation

        flags = load_segmentation(ds).flags
        qc_rows.append(("segmentation failed (no cell found)", int(flags.str.contains("seg_no_cell").sum())))
        qc_rows.append(("no nucleus found", int(flags.str.contains("seg_no_nucleus").sum())))
    focus = focus_scores(ds, frame["row"].to_numpy())
    if np.isfinite(focus).any():
        out_of_focus = focus < FOCUS_FRACTION * np.nanmedian(focus)
        qc_rows.append((f"out of focus (sharpness < {FOCUS_FRACTION:g} x median)", int(out_of_focus.sum())))
    flag_counts = frame["qc_flags"].str.split(";").explode()
    flag_counts = flag_counts[flag_counts != ""].value_counts()
    qc_rows += [(f"ingest flag: {k}", int(v)) for k, v in flag_counts.items()]
    parts = ["<h2>Quality control</h2>", _table(pd.DataFrame(qc_rows, columns=["check", "cells"]), "qc")]
    if len(rejected):
        parts.append(_table(rejected.head(50), "rejected"))
    return parts


def _metrics_section(labelled: pd.DataFrame, threshold: float, n_boot: int) -> list[str]:
    """Performance against the labels: metrics with patient-bootstrap intervals, confusion counts, PR/ROC,
    confusion and calibration plots."""
    from ..evaluate import COUNT_METRICS, evaluate_predictions, plot_calibration, plot_confusion, plot_pr_roc

    y = (labelled["label"] == "ctc").to_numpy().astype(int)
    p = labelled["p_ctc"].to_numpy()
    calls = labelled["call"].to_numpy() == "ctc"
    res = evaluate_predictions(y, p, labelled["sample_id"].to_numpy(), calls=calls, n_boot=n_boot, seed=0)
    m = res["metrics"]
    shown_metrics = m[~m["metric"].isin(COUNT_METRICS)][["metric", "value", "lo", "hi"]]
    confusion = m[m["metric"].isin(COUNT_METRICS)][["metric", "value"]].rename(columns={"value": "cells"})
    plots = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn_ in (
            ("pr_roc", lambda f: plot_pr_roc(y, p, f, threshold=threshold)),
            ("confusion", lambda f: plot_confusion(y, calls.astype(int), f)),
            ("calibration", lambda f: plot_calibration(y, p, f)),
        ):
            f = Path(tmp) / f"{name}.png"
            fn_(f)
            plots.append(f'<img alt="{name}" src="{_uri(f.read_bytes())}">')
    return [
        "<h2>Performance against the labels</h2>",
        f'<p class="note">{len(labelled)} labelled cells. {_esc(res["note"])} ECE: expected calibration '
        "error (15 equal-width bins).</p>",
        _table(shown_metrics, "metrics"),
        '<p class="note">Confusion counts (cells; counts, not estimates, so without intervals):</p>',
        _table(confusion, "confusion"),
        '<div class="plots">' + "".join(plots) + "</div>",
    ]


def _model_card(meta: BundleMeta) -> pd.DataFrame:
    """The model bundle's identity, inputs, threshold, calibration and training data, one field a row."""
    return pd.DataFrame(
        [
            ("model id", meta.model_id),
            ("architecture", meta.architecture),
            ("inputs", ", ".join(meta.inputs)),
            ("channels", ", ".join(meta.channels)),
            ("crop / input size (px)", f"{meta.crop_size[0]} / {meta.input_size}"),
            ("pixel size (um)", meta.pixel_size_um),
            ("decision threshold (calibrated p)", _threshold_text(meta)),
            ("calibration", _calibration_text(meta.calibration_map())),
            ("training data fingerprint", meta.training.dataset_fingerprint),
            ("training patients", len(meta.training.train_samples)),
            ("created", meta.created),
            ("versions", ", ".join(f"{k} {v}" for k, v in meta.versions.items())),
        ],
        columns=["field", "value"],
    )


def write_report(path_in: str | os.PathLike[str], out_html: str | os.PathLike[str], **kw: Any) -> Path:
    """Render the report of a predict output or run folder and write it atomically."""
    from ..io import atomic_write_text

    out = Path(out_html)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CtcidError("the report is an HTML file; name it *.html", out)
    text = render_report(load_inputs(path_in), **kw)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    return out
