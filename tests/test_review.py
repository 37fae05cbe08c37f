"""The operator review app: display windows, counts, queues, the JSON API, persistence, security, the browser."""

from __future__ import annotations

import io
import json
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_store
from ctcid.errors import CtcidError
from ctcid.io import CellDataset, DatasetWriter, with_labels
from ctcid.review import (
    ReviewSession,
    create_app,
    export_labels,
    fixed_window,
    is_loopback,
    poisson_binomial_interval,
    poisson_binomial_pmf,
    queue_orders,
    to_display,
)

fastapi_testclient = pytest.importorskip("fastapi.testclient")
TestClient = fastapi_testclient.TestClient
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("review") / "ds", patients=2, cells=6, ctc=2, size=24)


def make_predict_out(folder: Path, dataset: Path, seed: int = 0) -> Path:
    """A `ctcid predict`-like folder over ``dataset``: predictions.parquet and predict.json."""
    ds = CellDataset.open(dataset)
    p = np.random.default_rng(seed).uniform(0.01, 0.99, len(ds))
    t = ds.table
    frame = pd.DataFrame(
        {
            "cell_id": t["cell_id"],
            "sample_id": t["sample_id"],
            "label": "",
            "logit": np.log(p / (1 - p)),
            "p_ctc": p,
            "call": np.where(p >= 0.5, "ctc", "wbc"),
            "uncertainty": 1 - np.abs(2 * p - 1),
            "qc_flags": ["padded;blank:CK" if i == 1 else "" for i in range(len(t))],
            "model_id": "m-test",
        }
    )
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "predictions.parquet", index=False)
    info = {
        "model_id": "m-test",
        "model": str(folder / "no-bundle"),
        "dataset": str(dataset),
        "dataset_fingerprint": ds.fingerprint,
        "threshold": 0.5,
    }
    (folder / "predict.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def out(tmp_path: Path, dataset: Path) -> Path:
    return make_predict_out(tmp_path / "predict", dataset)


def db_rows(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "review.sqlite") as db:
        return db.execute("SELECT cell_id, decision, reviewer, undone_at FROM decisions ORDER BY id").fetchall()


# ------------------------------------------------------------------------------------------ pure functions


def test_fixed_windows_keep_a_dim_cell_dim() -> None:
    stats = {"BF": {"p0.1": 900.0, "p50": 1000.0, "p99.9": 1200.0}, "CD45": {"p50": 100.0, "p99.9": 1100.0}}
    win = fixed_window(stats, ["BF", "CD45"])
    dim = np.full((2, 8, 8), 100, np.uint16)
    dim[1] += np.arange(8, dtype=np.uint16)  # CD45-negative: background noise only
    bright = dim.copy()
    bright[1, 2:6, 2:6] = 1100
    bf_shifted = dim.copy()
    bf_shifted[0] = 3000  # another field's illumination: windowed around its own border median
    out = to_display(np.stack([dim, bright, bf_shifted]), win)
    assert out[0, 1].max() <= 2  # auto-contrast would stretch this noise to 255
    assert out[1, 1, 3, 3] == 255
    assert out[0, 0, 4, 4] == out[2, 0, 4, 4] == 127  # flat field at its border median: mid grey
    assert dim.max() == 107  # the input is not changed


def test_poisson_binomial_is_exact() -> None:
    p = np.random.default_rng(1).uniform(0, 1, 150)
    direct = np.array([1.0])
    for q in p:
        direct = np.convolve(direct, [1 - q, q])
    np.testing.assert_allclose(poisson_binomial_pmf(p), direct, atol=1e-12)
    mean, lo, hi = poisson_binomial_interval(p)
    cdf = np.cumsum(direct)
    assert mean == pytest.approx(p.sum())
    assert cdf[lo] >= 0.025 > (cdf[lo - 1] if lo else 0) and cdf[hi] >= 0.975 > cdf[hi - 1]
    assert poisson_binomial_interval([]) == (0.0, 0, 0)
    assert poisson_binomial_interval([1.0, 1.0, 0.0]) == (2.0, 2, 2)


def test_queues_rank_by_distance_to_the_threshold_on_the_logit_scale() -> None:
    p = np.array([0.95, 0.3, 0.62, 0.2, 0.01, 0.7, 0.55, 0.05])
    o = queue_orders(p, 0.6, seed=0)
    z = np.log(p / (1 - p))
    zt = np.log(0.6 / 0.4)
    assert o["undecided"].tolist() == np.argsort(np.abs(z - zt), kind="stable").tolist()
    assert o["candidates"].tolist() == [0, 5, 2]
    assert sorted(o["random"].tolist()) == [1, 3, 4, 6, 7]
    assert sorted(o["mixed"].tolist()) == list(range(8))
    assert o["mixed"][0] == o["undecided"][0]


# ------------------------------------------------------------------------------------------ the JSON API


def test_decide_undo_and_counts(out: Path) -> None:
    with TestClient(create_app(out, reviewer="ana", warm=False)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.text.count('<figure class="cell') == 12
        assert page.text.count('<img src="/cells/') == 12
        img = client.get(page.text.split('<img src="')[1].split('"')[0].replace("&amp;", "&"))
        assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"
        r = client.post("/api/decisions", json={"cell_id": "P0_c00", "decision": "ctc"})
        assert r.status_code == 200
        body = r.json()
        assert body["reviewer"] == "ana" and body["model_id"] == "m-test" and body["decided_at"].endswith("+00:00")
        assert body["sample"]["confirmed_ctc"] == 1 and body["sample"]["reviewed"] == 1
        assert body["progress"] == {"cells": 12, "reviewed": 1, "remaining": 11, "mine": 1}
        client.post("/api/decisions", json={"cell_id": "P0_c00", "decision": "wbc"})
        client.post("/api/decisions", json={"cell_id": "P0_c01", "decision": "unsure", "sample_id": "P0"})
        assert [r[:2] for r in db_rows(out)] == [("P0_c00", "ctc"), ("P0_c00", "wbc"), ("P0_c01", "unsure")]
        undone = client.post("/api/undo").json()["undone"]
        assert undone["cell_id"] == "P0_c01" and undone["restored"] is None
        undone = client.post("/api/undo", json={}).json()["undone"]
        assert undone["decision"] == "wbc" and undone["restored"] == "ctc"  # the earlier decision returns
        counts = {c["sample_id"]: c for c in client.get("/api/counts").json()["samples"]}
        assert counts["P0"]["confirmed_ctc"] == 1 and counts["P0"]["reviewed"] == 1
        p = pd.read_parquet(out / "predictions.parquet").query("sample_id == 'P0'")["p_ctc"].to_numpy()
        rest = p[1:]  # P0_c00 is confirmed; the others are estimated
        mean, lo, hi = poisson_binomial_interval(rest)
        assert counts["P0"]["ctc_estimate"] == pytest.approx(1 + mean, abs=1e-3)
        assert (counts["P0"]["ctc_estimate_lo"], counts["P0"]["ctc_estimate_hi"]) == (1 + lo, 1 + hi)
        queue = client.get("/api/queue", params={"queue": "candidates"}).json()["cells"]
        assert all(c["call"] == "ctc" for c in queue) and "P0_c00" not in {c["cell_id"] for c in queue}
        flagged = client.get("/api/queue", params={"flag": "blank:CK"}).json()["cells"]
        assert [c["cell_id"] for c in flagged] == ["P0_c01"]
    rows = db_rows(out)
    assert len(rows) == 3 and [r[3] is not None for r in rows] == [False, True, True]  # nothing deleted
    assert pd.read_csv(out / "reviewed_counts.csv").set_index("sample_id").loc["P0", "confirmed_ctc"] == 1


def test_saliency_overlay_when_maps_are_present(out: Path, dataset: Path) -> None:
    maps = np.zeros((12, 24, 24), np.float32)
    maps[0, 8:16, 8:16] = 1.0
    np.save(out / "saliency.npy", maps)
    with TestClient(create_app(out, warm=False)) as client:
        plain = client.get("/cells/0.png", params={"scale": 1})
        overlay = client.get("/cells/0.png", params={"scale": 1, "saliency": 1})
        assert 'data-saliency="1"' in client.get("/").text
    w_plain = Image.open(io.BytesIO(plain.content)).size[0]
    w_overlay = Image.open(io.BytesIO(overlay.content)).size[0]
    assert w_overlay == w_plain + 2 + 24  # one more panel: the heat map over bright field
    np.save(out / "saliency.npy", np.zeros((5, 24, 24), np.float32))
    with pytest.raises(CtcidError, match="5 saliency maps for 12"):
        ReviewSession(out)


def test_restart_resumes_where_the_reviewer_left_off(out: Path) -> None:
    with TestClient(create_app(out, reviewer="ana", warm=False)) as client:
        first = [c["cell_id"] for c in client.get("/api/queue", params={"limit": 3}).json()["cells"]]
        for cell in first:
            assert client.post("/api/decisions", json={"cell_id": cell, "decision": "wbc"}).status_code == 200
    with TestClient(create_app(out, reviewer="ana", warm=False)) as client:  # a new server process
        assert client.get("/api/counts").json()["progress"]["reviewed"] == 3
        shown = [c["cell_id"] for c in client.get("/api/queue").json()["cells"]]
        assert len(shown) == 9 and not set(first) & set(shown)
        assert client.post("/api/undo").json()["undone"]["cell_id"] == first[-1]
    session = ReviewSession(out, reviewer="ana", images=False)
    assert session.progress()["mine"] == 2
    session.close()


def test_export_and_disagreements(out: Path, tmp_path: Path, capsys) -> None:
    from ctcid.cli import run

    labels, _ = export_labels(out, tmp_path / "none.csv")
    assert (tmp_path / "none.csv").read_text() == "cell_id,sample_id,label,reviewer,decided_at\n" and labels.empty
    with TestClient(create_app(out, reviewer="ana", warm=False)) as client:
        for cell, d in (("P0_c00", "ctc"), ("P0_c02", "wbc"), ("P1_c00", "unsure"), ("P1_c01", "ctc")):
            client.post("/api/decisions", json={"cell_id": cell, "decision": d})
        for cell, d in (("P0_c00", "ctc"), ("P1_c01", "wbc")):
            client.post("/api/decisions", json={"cell_id": cell, "decision": d, "reviewer": "ben"})
        split = client.get("/api/disagreements").json()["cells"]
        assert [(c["cell_id"], c["decisions"]) for c in split] == [("P1_c01", "ana: ctc; ben: wbc")]
        assert "Disagreements between reviewers (1)" in client.get("/").text
        csv = client.get("/labels.csv")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    with pytest.raises(SystemExit) as info:
        run(["review", str(out), "--export", str(tmp_path / "labels.csv")])
    assert info.value.code == 0
    got = pd.read_csv(tmp_path / "labels.csv")
    assert got.columns.tolist() == ["cell_id", "sample_id", "label", "reviewer", "decided_at"]
    assert got[["cell_id", "label", "reviewer"]].values.tolist() == [
        ["P0_c00", "ctc", "ana;ben"],
        ["P0_c02", "wbc", "ana"],
    ]  # unsure and disputed cells are not labels
    counts = pd.read_csv(out / "reviewed_counts.csv").set_index("sample_id")
    assert counts.loc["P1", "open"] == 2 and counts.loc["P1", "confirmed_ctc"] == 0
    with pytest.raises(SystemExit) as info:
        run(["review", str(out), "--export", str(tmp_path / "labels.csv")])
    assert info.value.code == 2 and "--overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ safety


TRAVERSALS = [
    "/static/../session.py",
    "/static/..%2fsession.py",
    "/static/%2e%2e%2fapp.py",
    "/static/..%5c..%5capp.py",
    "/static/%2e%2e/templates/index.html",
    "/static/review.js%00.png",
    "/cells/..%2f..%2fpredict.json",
    "/cells/../../predict.json",
    "/cells/%2e%2e%2fpredictions.parquet",
    "/cells/-1.png",
    "/cells/99999.png",
    "/cells/%C2%B2.png",
    "/cells/1.png%2f..%2f..%2fpredict.json",
    "/labels.csv/../predict.json",
    "/reviewed_counts.csv/..%2fpredict.json",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_file_route_leaves_its_folder(out: Path, path: str) -> None:
    with TestClient(create_app(out, warm=False)) as client:
        r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    for secret in ("m-test", "dataset_fingerprint", "import ", "PAR1", "<figure"):
        assert secret not in r.text


def test_token_is_required_off_localhost(out: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with TestClient(create_app(out, token="s3cret", warm=False)) as client:
        for path in ("/", "/api/counts", "/cells/0.png", "/static/review.js", "/labels.csv"):
            assert client.get(path).status_code == 401, path
        assert client.get("/", params={"token": "wrong"}).status_code == 401
        r = client.post("/api/decisions", json={"cell_id": "P0_c00", "decision": "ctc"})
        assert r.status_code == 401 and not db_rows(out)
        page = client.get("/", params={"token": "s3cret"})
        assert page.status_code == 200 and "/cells/" in page.text and "token=s3cret" in page.text
        r = client.post(
            "/api/decisions", json={"cell_id": "P0_c00", "decision": "ctc"}, headers={"X-Ctcid-Token": "s3cret"}
        )
        assert r.status_code == 200 and len(db_rows(out)) == 1
    with TestClient(create_app(out, allowed_hosts=["127.0.0.1", "localhost"], warm=False)) as client:
        assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 403  # DNS rebinding
        assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {
            "content": b"cell_id=P0_c00&decision=ctc",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        {"content": b'{"cell_id": "P0_c00", "decision": "ctc"}', "headers": {"Content-Type": "text/plain"}},
        {"json": {"decision": "ctc"}},
        {"json": {"cell_id": "P0_c00"}},
        {"json": {"cell_id": ["P0_c00"], "decision": "ctc"}},
        {"json": {"cell_id": "P0_c00", "decision": "maybe"}},
        {"json": {"cell_id": "P0_c00", "decision": "ctc", "extra": 1}},
        {"json": {"cell_id": "no-such-cell", "decision": "ctc"}},
        {"json": {"cell_id": "P0_c00", "decision": "ctc", "sample_id": "P9"}},
        {"json": {"cell_id": "P0_c00", "decision": "ctc", "reviewer": "<script>"}},
        {"json": [1, 2, 3]},
    ],
)
def test_malformed_decisions_are_4xx_with_a_message(out: Path, kwargs: dict) -> None:
    with TestClient(create_app(out, warm=False), raise_server_exceptions=False) as client:
        r = client.post("/api/decisions", **kwargs)
    assert 400 <= r.status_code < 500 and "Traceback" not in r.text and r.json()["detail"]
    assert not db_rows(out)


@pytest.mark.parametrize(
    "path",
    [
        "/?queue=best",
        "/?flag=nope",
        "/?sample=P9",
        "/api/queue?limit=0",
        "/api/queue?skip=-1",
        "/cells/1.png?scale=100",
        "/cells/1.png?saliency=yes",
        "/?reviewer=%3Cb%3E",
    ],
)
def test_malformed_queries_are_4xx(out: Path, path: str) -> None:
    with TestClient(create_app(out, warm=False), raise_server_exceptions=False) as client:
        r = client.get(path)
    assert 400 <= r.status_code < 500 and "Traceback" not in r.text, (path, r.status_code)


def test_a_review_database_of_other_predictions_is_refused(out: Path, tmp_path: Path, dataset: Path) -> None:
    ReviewSession(out, images=False).close()
    other = make_predict_out(tmp_path / "other", dataset)
    info = json.loads((other / "predict.json").read_text())
    (other / "predict.json").write_text(json.dumps({**info, "model_id": "m-other"}))
    shutil.copy(out / "review.sqlite", other / "review.sqlite")
    with pytest.raises(CtcidError, match="belongs to other predictions"):
        ReviewSession(other, images=False)


# ------------------------------------------------------------------------------------------ training labels


def _unlabelled_copy(src: Path, dst: Path, keep: set[str]) -> Path:
    ds = CellDataset.open(src)
    dst.mkdir()
    writer = DatasetWriter(dst, ds.channels, ds.crop_size[0], ds.pixel_size_um)
    rows = ds.table[["cell_id", "sample_id", "label", "qc_flags"]].copy()
    rows.loc[~rows["sample_id"].isin(keep), "label"] = ""
    writer.append(ds.images(), rows)
    writer.finish({"source": {"root": "test", "layout": "test", "detected": False}, "rejected": 0})
    return dst


def test_with_labels_adds_labels_and_refuses_unknown_cells(tmp_path: Path, dataset: Path) -> None:
    ds = CellDataset.open(_unlabelled_copy(dataset, tmp_path / "ds", keep={"P0"}))
    assert (ds.labels() >= 0).sum() == 6
    (tmp_path / "labels.csv").write_text(
        "cell_id,sample_id,label,reviewer\nP1_c00,P1,ctc,ana\nP1_c03,P1,wbc,ana\n"
    )
    got = with_labels(ds, tmp_path / "labels.csv")
    assert (got.labels() >= 0).sum() == 8 and got.table["label"].iloc[6] == "ctc"
    assert got.header["classes"] == {"ctc": 3, "unlabelled": 4, "wbc": 5}
    assert got.header["ingest"]["added_labels"]["cells"] == 2 and got.fingerprint == ds.fingerprint
    assert (ds.labels() >= 0).sum() == 6  # the original is not changed
    (tmp_path / "bad.csv").write_text("cell_id,label\nP1_c00,ctc\nX_c99,wbc\n")
    with pytest.raises(CtcidError, match=r"1 labelled cell\(s\) are not in the dataset .*X_c99"):
        with_labels(ds, tmp_path / "bad.csv")
    (tmp_path / "odd.csv").write_text("cell_id,label\nP1_c00,maybe\n")
    with pytest.raises(CtcidError, match="unknown label 'maybe'"):
        with_labels(ds, tmp_path / "odd.csv")


def _reviewed_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A dataset labelled for 2 of 6 patients, and a labels CSV for the other 4."""
    full = make_store(tmp_path / "full", patients=6, cells=16, ctc=4, size=32)
    ds_path = _unlabelled_copy(full, tmp_path / "ds", keep={"P0", "P1"})
    table = CellDataset.open(full).table
    reviewed = table[table["sample_id"].isin(["P2", "P3", "P4", "P5"])][["cell_id", "sample_id", "label"]]
    reviewed.to_csv(tmp_path / "labels.csv", index=False)
    return ds_path, tmp_path / "labels.csv"


def test_train_refuses_labels_of_unknown_cells(tmp_path: Path, capsys) -> None:
    from ctcid.cli import run

    ds_path, _ = _reviewed_dataset(tmp_path)
    (tmp_path / "bad.csv").write_text("cell_id,label\nnope,ctc\n")
    with pytest.raises(SystemExit) as info:
        run(["train", str(ds_path), str(tmp_path / "bad-run"), "--labels", str(tmp_path / "bad.csv")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "not in the dataset" in err and "Traceback" not in err
    assert not (tmp_path / "bad-run").exists()


@pytest.mark.slow
def test_train_with_reviewed_labels(tmp_path: Path, capsys) -> None:
    from ctcid.cli import run

    ds_path, labels = _reviewed_dataset(tmp_path)
    args = ["train", str(ds_path), str(tmp_path / "run"), "--labels", str(labels)]
    with pytest.raises(SystemExit) as info:
        run(
            [
                *args,
                "--model",
                "features_gbm",
                "--channels",
                "BF,DAPI,CK,CD45",
                "--val-fraction",
                "0.34",
                "--n-boot",
                "20",
            ]
        )
    assert info.value.code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    record = meta["training"]
    assert record["train_cells"] + record["val_cells"] == 96  # 2 labelled patients + 4 reviewed ones
    assert record["ingest"]["added_labels"]["cells"] == 64
    assert not set(record["train_samples"]) & set(record["val_samples"])  # still split by patient


# ------------------------------------------------------------------------------------------ the browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_review_in_a_real_browser(out: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    app = create_app(out, reviewer="ana", allowed_hosts=["127.0.0.1", "localhost"], counts_every_s=0.2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            figures = page.locator("figure.cell")
            expect(figures).to_have_count(12)
            order = figures.evaluate_all("fs => fs.map(f => f.dataset.cellId)")
            loaded = page.locator("figure.cell img").evaluate_all(
                "im => im.filter(i => i.naturalWidth > 0).length"
            )
            assert loaded == 12
            counter = page.locator("#progress .mine")
            page.keyboard.press("c")
            page.keyboard.press("w")
            page.keyboard.press("u")
            expect(counter).to_have_text("3")
            expect(page.locator("#progress .remaining")).to_have_text("9")
            rows = db_rows(out)
            assert [(r[0], r[1], r[2]) for r in rows] == [
                (order[0], "ctc", "ana"),
                (order[1], "wbc", "ana"),
                (order[2], "unsure", "ana"),
            ]
            page.keyboard.press("z")
            expect(counter).to_have_text("2")
            assert db_rows(out)[-1][3] is not None  # the unsure decision is withdrawn, not deleted
            page.keyboard.press("ArrowRight")
            figures.nth(5).locator("button[data-decide=wbc]").click()  # the mouse works too
            expect(counter).to_have_text("3")
            sample = page.locator(f'#counts tr[data-sample="{order[0].split("_")[0]}"] .reviewed')
            expect(sample).not_to_have_text("0")
            assert figures.nth(0).get_attribute("data-decision") == "ctc"
            assert not errors, errors
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len([r for r in db_rows(out) if r[3] is None]) == 3
