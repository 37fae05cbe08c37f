"""Property-based tests: arbitrary bytes and arbitrary CSVs never crash the readers with anything but
ctcid's own error type."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcid.errors import CtcidError
from ctcid.io.imread import read_image
from ctcid.io.layouts import plan_ingest

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_HEADERS = [b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"", b"GIF89a"]


@SETTINGS
@given(
    head=st.sampled_from(_HEADERS), body=st.binary(max_size=600), name=st.sampled_from(["a.tif", "b.png", "c.jpg"])
)
def test_arbitrary_bytes_give_an_image_or_a_ctcid_error(head: bytes, body: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(head + body)
        try:
            image = read_image(path)
        except CtcidError as exc:
            assert str(path) in str(exc)  # the message names the file
        else:
            assert isinstance(image.data, np.ndarray) and image.data.size > 0


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@SETTINGS
@given(
    columns=st.lists(
        st.sampled_from(["cell_id", "sample_id", "label", "BF", "DAPI", "x", "", "cell_id"]), max_size=6
    ),
    rows=st.lists(st.lists(_cell, max_size=7), max_size=6),
)
def test_arbitrary_manifests_plan_or_raise_a_ctcid_error(columns: list[str], rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img.tif").write_bytes(b"II*\x00")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(row)
        (root / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        try:
            plan = plan_ingest(root, layout="manifest")
        except CtcidError:
            return
        for cell in plan.cells:
            assert cell.cell_id and cell.sample_id
            assert set(cell.files) == set(plan.channels)


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_arbitrary_manifest_bytes_never_crash(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "manifest.csv").write_bytes(raw)
        try:
            plan_ingest(root, layout="manifest")
        except CtcidError:
            pass
