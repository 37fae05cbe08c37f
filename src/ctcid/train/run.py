"""The run folder of one training run, from preparation to completion.

A run folder holds ``config.yaml`` (resolved options), ``folds.csv`` (which patient is where),
``history.csv`` and ``training_curves.png``, ``checkpoints/`` (``last.ckpt`` for ``--resume``,
``best.safetensors``), the model bundle in ``model/``, validation and (for a CV fold) test
predictions and metrics, and ``run.json`` (seed, versions, git revision, device, timings),
written last: a folder without a complete ``run.json`` is an unfinished run.

The lifecycle is :meth:`TrainingRun.prepare` (checks, folder, records), fitting one model family
(:mod:`ctcid.train.network` or :mod:`ctcid.train.trees`), one shared finish step (:func:`ctcid.train.finish`:
calibration, threshold, bundle, predictions, metrics), optional explanation by the workflow above, and
:meth:`TrainingRun.complete`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._runtime import git_revision, launched_worker
from ..config import to_yaml
from ..errors import CtcidError, arg
from ..evaluate import PATIENTS_UNKNOWN, Split, check_no_leakage, fold_table, split_groups
from ..io import CellDataset
from ..io._atomic import atomic_write_text, output_errors
from ..io.store import package_versions
from ..models import TrainingRecord
from .config import TrainConfig

__all__ = ["RUN_FILE", "TrainingRun", "is_complete", "run_groups"]

RUN_FILE = "run.json"


def is_complete(out: str | Path) -> bool:
    """Whether ``out`` holds a finished run (its ``run.json`` says ``complete``)."""
    path = Path(out) / RUN_FILE
    try:
        return path.is_file() and json.loads(path.read_text()).get("status") == "complete"
    except (OSError, json.JSONDecodeError):
        return False


@dataclass
class TrainingRun:
    """A training run in progress: its data, split, options and folder (see the module docstring)."""

    ds: CellDataset
    split: Split
    cfg: TrainConfig
    out: Path
    labels: np.ndarray
    train_cells: np.ndarray
    val_cells: np.ndarray
    test_cells: np.ndarray
    resuming: bool = False
    child: bool = False
    created: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def sample_ids(self) -> np.ndarray:
        return self.ds.table["sample_id"].to_numpy()

    @property
    def groups(self) -> np.ndarray:
        """What the split keeps together: each cell's patient, or the cell itself with ``samples_unknown``."""
        return run_groups(self.ds, self.cfg)

    @classmethod
    def prepare(
        cls,
        ds: CellDataset,
        split: Split,
        cfg: TrainConfig,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        restartable: bool = True,
    ) -> TrainingRun:
        """Check the options and the split, create (or reopen) the run folder and write its first records.

        ``restartable=False`` (models that train in seconds, such as trees) turns ``resume`` into training
        again from the start. A data-parallel worker process leaves the folder to the first process.
        """
        cfg.validate()
        out = Path(out)
        ds.channel_index(cfg.channels + cfg.train_extra_channels)
        labels, train_cells, val_cells = _split_cells(ds, split, run_groups(ds, cfg))
        test = np.asarray(split.test, np.int64)
        test_cells = test[labels[test] >= 0] if len(test) else test
        run = cls(ds, split, cfg, out, labels, train_cells, val_cells, test_cells, child=launched_worker())
        if run.child:
            run.resuming = resume and (out / "checkpoints" / "last.ckpt").is_file()
            run.info = run._started()
            return run
        if not restartable and resume:
            resume, overwrite = False, overwrite or out.exists()
        with output_errors(out):
            run.resuming, run.created = _prepare_run_dir(out, resume, overwrite)
        with run.guard():
            if run.resuming:
                _check_same_config(out / "config.yaml", cfg)
            atomic_write_text(out / "config.yaml", to_yaml(cfg, "train"))
            folds = fold_table(run.groups, [split], labels=labels)
            atomic_write_text(out / "folds.csv", folds.to_csv(index=False))
            run.info = run._started()
            atomic_write_text(out / RUN_FILE, json.dumps(run.info, indent=2) + "\n")
        return run

    @contextlib.contextmanager
    def guard(self, log: Callable[[str], None] | None = None) -> Iterator[None]:
        """Leave no unusable run folder behind: on any error, a folder this run created is removed unless it holds
        a checkpoint, which stays for ``--resume`` (the error says so); a full disk or a read-only output is one
        line naming the folder (:func:`ctcid.io.output_errors`)."""
        try:
            with output_errors(self.out):
                yield
        except BaseException as exc:
            if self.child:
                raise
            last = self.out / "checkpoints" / "last.ckpt"
            if last.is_file():
                note = f"{self.out} keeps the checkpoint of its last finished epoch: continue with {arg('resume')}"
                exc.add_note(note)
                if log:
                    log(note)
            elif self.created:
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    def _started(self) -> dict[str, Any]:
        marks = {"patients_unknown": PATIENTS_UNKNOWN} if self.cfg.samples_unknown else {}
        return {
            "status": "running",
            **marks,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": self.cfg.seed,
            "dataset": str(self.ds.path),
            "dataset_fingerprint": self.ds.fingerprint,
            "versions": package_versions(),
            "git_revision": git_revision(),
        }

    def training_record(self, best_epoch: int | None, epochs_run: int) -> TrainingRecord:
        """What a bundle records of its training: data, patients on each side, epochs and options."""
        ids = self.sample_ids
        return TrainingRecord(
            dataset_fingerprint=self.ds.fingerprint,
            dataset=str(self.ds.path),
            ingest=dict(self.ds.header.get("ingest", {})),
            train_cells=len(self.train_cells),
            val_cells=len(self.val_cells),
            train_samples=sorted(str(s) for s in set(ids[self.train_cells])),
            val_samples=sorted(str(s) for s in set(ids[self.val_cells])),
            best_epoch=best_epoch,
            epochs_run=epochs_run,
            config=self.cfg.to_dict(),
        )

    def complete(self, **fields: Any) -> None:
        """Write the completed ``run.json`` (written last: a run folder without it is unfinished)."""
        self.info.update(
            {
                "status": "complete",
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - self.t_start, 1),
                **fields,
            }
        )
        atomic_write_text(self.out / RUN_FILE, json.dumps(self.info, indent=2, default=float) + "\n")


def run_groups(ds: CellDataset, cfg: TrainConfig) -> np.ndarray:
    """The groups of a run's splits (:func:`ctcid.evaluate.split_groups`): patients, or cells with
    ``samples_unknown``."""
    t = ds.table
    return split_groups(t["sample_id"].to_numpy(), t["cell_id"].to_numpy(), samples_unknown=cfg.samples_unknown)


def _split_cells(ds: CellDataset, split: Split, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, training and validation cells of a split, checked: no patient (group) on both sides, and both
    classes on each side."""
    check_no_leakage(groups, split)
    labels = ds.labels()
    train_cells = np.asarray(split.train, np.int64)
    val_cells = np.asarray(split.val, np.int64)
    for name, cells in (("training", train_cells), ("validation", val_cells)):
        if len(cells) == 0 or not (labels[cells] == 1).any() or not (labels[cells] == 0).any():
            raise CtcidError(f"the {name} set needs labelled cells of both classes (ctc and wbc)", ds.path)
    return labels, train_cells, val_cells


def _prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """Create or reopen a run folder; returns whether it resumes from a checkpoint and whether it was created."""
    last = out / "checkpoints" / "last.ckpt"
    if out.exists():
        if resume:
            if is_complete(out):
                raise CtcidError("this run is already complete; nothing to resume", out)
            return last.is_file(), False
        if not overwrite:
            raise CtcidError(
                f"already exists; pass {arg('resume')} to continue this run or {arg('overwrite')} to start again",
                out,
            )
        shutil.rmtree(out)
    elif resume:
        raise CtcidError("no run to resume here", out)
    (out / "checkpoints").mkdir(parents=True)
    return False, True


def _check_same_config(path: Path, cfg: TrainConfig) -> None:
    """A run resumes only with the options it started with (progress display and loader workers aside)."""
    if not path.is_file():
        return
    before = (yaml.safe_load(path.read_text()) or {}).get("train", {})
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in ("progress", "workers") and before.get(k, now[k]) != now[k])
    if changed:
        raise CtcidError(
            f"{arg('resume', ...)} needs the options the run started with; changed: {', '.join(changed)} "
            "(see its config.yaml)",
            path.parent,
        )
