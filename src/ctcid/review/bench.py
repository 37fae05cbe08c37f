"""``ctcid bench review``: the review app's latency on a large predict output (100,000 cells by default).

A dataset of ``cells`` cells (synthetic renders, tiled) and its predictions are written to a temporary
folder; the app is served by uvicorn on a free local port and driven over HTTP by a client in the same
process. Measured: opening the review (predictions read, queues indexed), the first page's HTML, the first
page's cell images with a cold cache (time to a complete first page), per-decision latency (``POST
/api/decisions``, each committed to SQLite with ``synchronous=FULL`` before the answer), undo, the next page as
JSON, the counts, and reopening a review that holds every decision made.
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import CellDataset, DatasetWriter

__all__ = ["TARGET_P99_MS", "bench_review", "write_predict_output"]

#: Target for the 99th percentile of the per-decision latency, on 2 cores.
TARGET_P99_MS = 50.0


def write_predict_output(
    out: Path, cells: int, *, samples: int = 40, size: int = 48, distinct: int = 1024, seed: int = 0
) -> Path:
    """A ``ctcid predict``-like folder of ``cells`` cells: dataset (rendered cells, tiled), predictions.parquet
    (probabilities of a rare class: about 5% of cells called CTC), predict.json."""
    from ..synth import CHANNELS, SynthConfig
    from ..synth.cohort import render_cells, sample_cells

    out.mkdir(parents=True)
    cfg = SynthConfig(patients=4, cells_per_patient=max(1, distinct // 4), ctc_fraction=0.1, size=size, seed=seed)
    pat, table = sample_cells(cfg)
    images, _ = render_cells(table, pat, size=size, pixel_size_um=cfg.pixel_size_um, seed=seed)
    sample_of = np.repeat(np.arange(samples), -(-cells // samples))[:cells]
    ids = pd.DataFrame(
        {
            "cell_id": [f"S{s:03d}_c{i:06d}" for i, s in enumerate(sample_of)],
            "sample_id": [f"S{s:03d}" for s in sample_of],
            "label": "",
            "qc_flags": "",
        }
    )
    (out / "dataset").mkdir()
    writer = DatasetWriter(out / "dataset", list(CHANNELS), size, cfg.pixel_size_um)
    block = len(images)
    for lo in range(0, cells, block):
        n = min(block, cells - lo)
        writer.append(images[:n], ids.iloc[lo : lo + n].reset_index(drop=True))
    writer.finish({"source": {"root": "generated", "layout": "bench", "detected": False}, "rejected": 0})
    ds = CellDataset.open(out / "dataset")
    rng = np.random.default_rng(seed)
    ctc = rng.random(cells) < 0.05
    p = np.where(ctc, rng.beta(6, 2, cells), rng.beta(0.4, 12, cells))
    flags = np.where(rng.random(cells) < 0.03, "padded", "")
    frame = pd.DataFrame(
        {
            "cell_id": ids["cell_id"],
            "sample_id": ids["sample_id"],
            "label": "",
            "logit": np.log(np.clip(p, 1e-7, 1) / np.clip(1 - p, 1e-7, 1)),
            "p_ctc": p,
            "call": np.where(p >= 0.5, "ctc", "wbc"),
            "uncertainty": 1 - np.abs(2 * p - 1),
            "qc_flags": flags,
            "model_id": "bench-model",
        }
    )
    frame.to_parquet(out / "predictions.parquet", index=False)
    info = {
        "model_id": "bench-model",
        "model": str(out / "no-model"),
        "dataset": "dataset",
        "dataset_fingerprint": ds.fingerprint,
        "cells": cells,
        "threshold": 0.5,
    }
    (out / "predict.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000.0
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(call: Any, n: int) -> list[float]:
    """Seconds of ``call(k)`` for k = 0 .. n-1."""
    out = []
    for k in range(n):
        t0 = time.perf_counter()
        call(k)
        out.append(time.perf_counter() - t0)
    return out


def _drive(client: Any, session: Any, decisions: int, page_size: int, seed: int) -> dict[str, Any]:
    """The timed requests: first page and its images (cold), decisions, undo, next pages, counts."""
    t0 = time.perf_counter()
    page = client.get("/")
    t_html = time.perf_counter() - t0
    srcs = re.findall(r'<img src="(/cells/\d+\.png[^"]*)"', page.text)
    t_images = sum(_timed(lambda k: client.get(srcs[k]).raise_for_status(), len(srcs)))
    t_again = sum(_timed(lambda _k: client.get("/").raise_for_status(), 1))
    rows = session.page("mixed", limit=decisions)
    said = np.random.default_rng(seed).choice(["ctc", "wbc", "unsure"], len(rows), p=[0.3, 0.6, 0.1])
    bodies = [{"cell_id": str(session.cell_id[r]), "decision": str(d)} for r, d in zip(rows, said, strict=True)]
    lat = _timed(lambda k: client.post("/api/decisions", json=bodies[k]).raise_for_status(), len(bodies))
    undo = _timed(lambda _k: client.post("/api/undo", json={}).raise_for_status(), min(50, len(rows)))
    queue = _timed(lambda k: client.get("/api/queue", params={"skip": k * page_size}).raise_for_status(), 30)
    counts = _timed(lambda _k: client.get("/api/counts").raise_for_status(), 10)
    return {
        "first_page_html_ms": round(t_html * 1000, 1),
        "first_page_images_cold_ms": round(t_images * 1000, 1),
        "first_page_images": len(srcs),
        "page_html_warm_ms": round(t_again * 1000, 1),
        "decision_latency": _ms(lat),
        "undo_latency": _ms(undo),
        "queue_page_json_latency": _ms(queue),
        "counts_latency": _ms(counts),
    }


def bench_review(
    cells: int = 100_000,
    samples: int = 40,
    decisions: int = 500,
    page_size: int = 48,
    size: int = 48,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the review app on ``cells`` predicted cells (see the module doc)."""
    import httpx
    import uvicorn

    from .app import create_app
    from .session import ReviewSession

    with tempfile.TemporaryDirectory(prefix="ctcid-bench-review-") as tmp:
        t0 = time.perf_counter()
        folder = write_predict_output(Path(tmp) / "predict", cells, samples=samples, size=size, seed=seed)
        t_data = time.perf_counter() - t0
        t0 = time.perf_counter()
        session = ReviewSession(folder, reviewer="bench")
        app = create_app(session, page_size=page_size, warm=False)
        t_open = time.perf_counter() - t0
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                timings = _drive(client, session, decisions, page_size, seed)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        session.close()
        t0 = time.perf_counter()
        again = ReviewSession(folder, reviewer="bench", images=False)
        t_reopen = time.perf_counter() - t0
        resumed = again.progress()["reviewed"]
        again.close()
    first_page = t_open * 1000 + timings["first_page_html_ms"] + timings["first_page_images_cold_ms"]
    return {
        "benchmark": "review",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cells": cells,
        "samples": samples,
        "crop_size": size,
        "page_size": page_size,
        "client": "httpx over local TCP, in the server's process (uvicorn, one worker)",
        "seconds_to_write_inputs": round(t_data, 1),
        "open_review_s": round(t_open, 3),
        "time_to_first_page_ms": round(first_page, 1),
        **timings,
        "reopen_with_decisions_s": round(t_reopen, 3),
        "decisions_resumed": resumed,
        "target_decision_p99_ms": TARGET_P99_MS,
        "meets_target": timings["decision_latency"]["p99_ms"] < TARGET_P99_MS,
    }
