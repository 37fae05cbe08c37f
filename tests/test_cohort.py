"""A cohort of several datasets (shards) reads as one dataset, without copying pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_synth_store
from ctcid.errors import CtcidError
from ctcid.io import CellDataset, ShardedPixels, write_cohort


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("shards")
    return [
        make_synth_store(root / "centre_a", patients=3, cells=20, size=48, seed=1, prefix="A"),
        make_synth_store(root / "centre_b", patients=2, cells=25, size=48, seed=2, prefix="B"),
    ]


def test_sharded_pixels_read_like_one_array() -> None:
    a = np.arange(5 * 2 * 3 * 3, dtype=np.uint16).reshape(5, 2, 3, 3)
    b = 1000 + np.arange(4 * 2 * 3 * 3, dtype=np.uint16).reshape(4, 2, 3, 3)
    whole = np.concatenate([a, b])
    px = ShardedPixels([a, b])
    assert px.shape == whole.shape and len(px) == 9 and px.nbytes == whole.nbytes
    for index in (slice(None), slice(3, 7), slice(8, 2, -2), np.array([8, 0, 5, 5, 4]), [], -1, 6):
        np.testing.assert_array_equal(px[index], whole[index])
    with pytest.raises(IndexError):
        px[np.array([9])]


def test_cohort_opens_as_one_dataset(shards: list[Path], tmp_path: Path) -> None:
    write_cohort(tmp_path / "cohort", shards)
    ds = CellDataset.open(tmp_path / "cohort")
    parts = [CellDataset.open(p) for p in shards]
    assert len(ds) == sum(len(p) for p in parts) == 110
    assert ds.table["shard"].tolist() == [0] * 60 + [1] * 50 and ds.table["index"].tolist() == list(range(110))
    np.testing.assert_array_equal(ds.labels(), np.concatenate([p.labels() for p in parts]))
    rows = np.array([109, 0, 59, 60, 61])
    expected = np.concatenate([parts[0].images([0, 59]), parts[1].images([0, 1, 49])])
    np.testing.assert_array_equal(ds.images(rows, ["BF", "CK"]), expected[[4, 0, 1, 2, 3]][:, [0, 2]])
    assert ds.header["n_samples"] == 5 and ds.fingerprint == CellDataset.open(tmp_path / "cohort").fingerprint
    stats = ds.header["channel_stats"]["CK"]
    assert stats["p99.9"] == max(p.header["channel_stats"]["CK"]["p99.9"] for p in parts)


def test_cohort_refuses_incompatible_or_overlapping_shards(shards: list[Path], tmp_path: Path) -> None:
    with pytest.raises(CtcidError, match="more than one shard"):
        write_cohort(tmp_path / "twice", [shards[0], shards[0]])
    other = make_synth_store(tmp_path / "small", patients=2, cells=5, size=32, prefix="C")
    with pytest.raises(CtcidError, match="crop size"):
        write_cohort(tmp_path / "mixed", [shards[0], other])
    assert not (tmp_path / "mixed").exists()


def test_commands_read_a_cohort(shards: list[Path], tmp_path: Path) -> None:
    from ctcid.cli.main import run
    from ctcid.predict import predict

    with pytest.raises(SystemExit) as exc:
        run(["cohort", str(tmp_path / "cohort"), *map(str, shards)])
    assert exc.value.code in (0, None)
    with pytest.raises(SystemExit) as exc:
        run(
            [
                "train",
                str(tmp_path / "cohort"),
                str(tmp_path / "run"),
                "--model",
                "resnet10t",
                "--epochs",
                "1",
                "--channels",
                "BF,DAPI,CK,CD45",
                "--batch-size",
                "32",
                "--no-progress",
                "--val-fraction",
                "0.25",
            ]
        )
    assert exc.value.code in (0, None)
    res = predict(tmp_path / "run" / "model", tmp_path / "cohort", tmp_path / "pred")
    assert len(res.predictions) == 110 and res.predictions["cell_id"].is_unique
    assert set(res.counts["sample_id"]) == {"A01", "A02", "A03", "B01", "B02"}
