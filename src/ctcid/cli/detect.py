"""``ctcid detect`` and ``ctcid bench detect``: from whole frames of a slide scan to a cell dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..detect import DetectOptions
from ..detect import detect as run_detect
from . import _ui
from ._app import JsonOutOpt, WorkersOpt, app, bench_app
from ._options import dataset_command

__all__ = ["bench_detect_cmd", "detect"]


def _detected(result: Any, out: Path) -> str:
    h = result.header
    return f"wrote {h['n_cells']} cells from {result.frames} frames of {h['n_samples']} slide(s) to {out}" + (
        f"; {len(result.rejected)} frame(s) rejected" if result.rejected else ""
    )


@app.command()
@dataset_command(DetectOptions, run_detect, _detected)
def detect(
    frames: Annotated[
        Path,
        typer.Argument(
            help="Slide folder (tiles, multipage TIFFs or a CellTracks cartridge), or a folder of them."
        ),
    ],
) -> None:
    """Find every cell in the frames of a slide scan and write one crop per cell as a dataset."""


@bench_app.command("detect")
def bench_detect_cmd(
    frames: Annotated[int, typer.Option(help="Frames per density.")] = 12,
    frame_size: Annotated[str, typer.Option(help="HEIGHTxWIDTH px.")] = "1000x1400",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic slides.")] = 0,
    workers: WorkersOpt = None,
    out: JsonOutOpt = None,
) -> None:
    """Detection recall and precision at three densities, and frames/s against a scikit-image loop, in one run."""
    from ..bench import bench_detect
    from ..synth.frames import parse_frame_size

    _ui.note(f"rendering {frames} frames at each of three densities, then detecting and scoring ...")
    result = bench_detect(frames=frames, frame_size=parse_frame_size(frame_size), workers=workers, seed=seed)
    _ui.bench_result(result, out)
