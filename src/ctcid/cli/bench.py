"""Benchmark commands: ``ctcid bench ingest``, ``train``, ``predict``, ``counts``, ``features``, ``saliency``,
``small-cohorts``, ``thresholds`` and ``system-a``.

Most benchmarks take their options straight from the benchmark function: :func:`_bench_command` builds the
command from a table of the parameters to offer and their help texts, with types and defaults read from the
function's signature, so the two cannot disagree.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import bench
from ..bench.system_a import ARCHITECTURES, bench_system_a, default_cohort, default_training, system_a_markdown
from ..config import ConfigError, parse_list
from ..errors import CtcidError
from . import _ui
from ._app import JobsOpt, JsonOutOpt, WorkersOpt, bench_app

__all__ = ["bench_saliency_cmd", "bench_system_a_cmd"]

MarkdownOpt = Annotated[Path | None, typer.Option(help="Write the table as Markdown here.")]
DEVICE = "auto, cpu or cuda."
PRECISION = "auto (bf16 on GPU), 32 or bf16-mixed."
#: What a benchmark says before it starts (formatted with its options).
NOTES = {
    "ingest": "generating a {cells}-cell export, then timing both readers on it ...",
    "predict": "generating {cells} cells, then timing model-only and end-to-end prediction ...",
    "features": "rendering {cells} cells, then timing segmentation, features and the reference loop ...",
}


def _parameter(run: Callable[..., Any], name: str, spec: Any) -> inspect.Parameter:
    """The command-line option ``name`` of the benchmark ``run``: ``spec`` is its help text (the type and default
    are the function's; a tuple becomes a comma-separated list, a bool a ``--name`` switch) or its full
    annotation (the default is the function's, else ``None``)."""
    param = inspect.signature(run).parameters.get(name)
    default = param.default if param is not None else None
    if not isinstance(spec, str):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=spec)
    hint = typing.get_type_hints(run)[name]
    if hint is bool:
        annotation: Any = Annotated[bool, typer.Option(f"--{name}", help=spec)]
    elif typing.get_origin(hint) is tuple:
        annotation, default = Annotated[str, typer.Option(help=spec)], ",".join(map(str, default))
    else:
        annotation = Annotated[hint, typer.Option(help=spec)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _bench_command(name: str, run: Callable[..., dict], doc: str, options: dict[str, Any]) -> None:
    """Register ``ctcid bench NAME``: ``options`` (parameter of ``run`` -> help text or annotation, see
    :func:`_parameter`) then ``--out``; it says its line of :data:`NOTES`, runs the benchmark (with ``log`` when
    ``run`` takes it), prints the result and writes it with ``--out``."""
    note = NOTES.get(name)
    params = [_parameter(run, k, v) for k, v in options.items()]
    params.insert(len(options) - ("markdown" in options), _parameter(run, "out", JsonOutOpt))
    hints = typing.get_type_hints(run)
    lists = {
        k: typing.get_args(hints[k])[0]  # the items' type: str, or int for seeds
        for k, v in options.items()
        if isinstance(v, str) and typing.get_origin(hints[k]) is tuple
    }
    takes_log = "log" in inspect.signature(run).parameters

    def command(**values: Any) -> None:
        out = values.pop("out")
        for k, item in lists.items():
            flag = "--" + k.replace("_", "-")
            try:
                values[k] = tuple(item(v) for v in parse_list(values[k], flag) or ())
            except ValueError:
                raise CtcidError(f"{flag} takes {item.__name__} values, got {values[k]!r}") from None
        if note:
            _ui.note(note.format(**values))
        _ui.bench_result(run(**values, **({"log": _ui.note} if takes_log else {})), out)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = f"bench_{name.replace('-', '_')}_cmd"
    bench_app.command(name)(command)


_bench_command(
    "ingest",
    bench.bench_ingest,
    "Ingest throughput (cells/s) against a plain loop over the same files, in one run.",
    {"cells": "Cells in the generated export.", "size": "Crop size in px.", "workers": WorkersOpt},
)
_bench_command(
    "train",
    bench.bench_train,
    "Training images/s: model only (tensors on the device) against end to end (store + augmentation).",
    {
        "model": "Backbone.",
        "batch_size": "Batch size.",
        "size": "Input size in px.",
        "steps": "Timed steps (after warm-up).",
        "warmup": "Warm-up steps.",
        "device": DEVICE,
        "precision": PRECISION,
        "workers": "Batch loader processes.",
        "compile": "torch.compile the model in both loops.",
    },
)
_bench_command(
    "predict",
    bench.bench_predict,
    "Prediction cells/s end to end (store, raw export) against model-only; on CPU also onnxruntime and INT8.",
    {
        "model": "Backbone.",
        "cells": "Cells in the generated cohort.",
        "size": "Crop and input size in px.",
        "batch_size": "Cells per batch.",
        "device": DEVICE,
        "precision": PRECISION,
    },
)
_bench_command(
    "counts",
    bench.bench_counts,
    "Coverage, width, error and bias of each count estimator on held-out synthetic patients.",
    {
        "presets": "Synthetic presets, comma-separated.",
        "patients": "Patients per preset (all counted out of fold).",
        "cells_per_patient": "Cells per patient.",
        "folds": "Patient-grouped folds.",
        "model": "Model trained in each fold.",
        "channels": "Input channels.",
        "epochs": "Training epochs per fold.",
        "seeds": "Seeds, comma-separated: each its own cohort and training, all counts pooled.",
        "threshold_rule": "Decision threshold of every fold's model: max-f1 or half-max-f1.",
    },
)
_bench_command(
    "features",
    bench.bench_features,
    "Segmentation and feature cells/s against a per-cell scikit-image loop, in one run.",
    {"cells": "Cells in the generated dataset.", "size": "Crop size in px.", "workers": WorkersOpt},
)


@bench_app.command("saliency")
def bench_saliency_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset with ground-truth masks (ingested `synth --masks`).")],
    models: Annotated[
        str, typer.Option("--models", help="Bundles to explain, NAME=FOLDER comma-separated, e.g. all4=run/model.")
    ],
    methods: Annotated[str | None, typer.Option(help="Methods, comma-separated (default: all).")] = None,
    top: Annotated[int, typer.Option(help="The N most CTC-like cells explained per model.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the re-initialised models.")] = 0,
    out: JsonOutOpt = None,
    markdown: MarkdownOpt = None,
) -> None:
    """Saliency methods scored against the true cell masks, with the randomisation checks, side by side."""
    from ..bench.saliency import markdown_table
    from ..config import parse_map
    from ..io import atomic_write_text

    result = bench.bench_saliency(
        dataset,
        parse_map(models, "--models") or {},
        methods=parse_list(methods, "--methods"),
        top=top,
        seed=seed,
        log=_ui.note,
    )
    _ui.bench_result(result, out)
    if markdown:
        atomic_write_text(markdown, markdown_table(result) + f"\ndefault: {result['default']}\n")


_bench_command(
    "small-cohorts",
    bench.bench_small_cohorts,
    "features_logreg, features_gbm and a small CNN cross-validated on cohorts of 24-60 cells: pooled ROC-AUC.",
    {
        "seeds": "Cohorts (seeds) per size.",
        "epochs": "Training epochs of the CNN per fold.",
        "input_size": "Input size of the CNN in px.",
        "n_boot": "Bootstrap resamples of the pooled ROC-AUC.",
        "markdown": MarkdownOpt,
    },
)
_bench_command(
    "thresholds",
    bench.bench_thresholds,
    "Decision-threshold rules re-scored on finished cv/ablate runs (no training): pooled out-of-fold F1 of "
    "half-max-f1 against max-f1, paired 95% interval, and the threshold's spread over folds.",
    {
        "runs": "Run folders of ctcid cv or ablate, comma-separated (searched for fold*/ prediction files).",
        "n_boot": "Bootstrap resamples of the paired interval (patients).",
        "markdown": MarkdownOpt,
    },
)


@bench_app.command("system-a")
def bench_system_a_cmd(
    work: Annotated[
        Path, typer.Argument(help="Folder for the cohort and the runs (kept; a second call resumes).")
    ],
    patients: Annotated[int, typer.Option(help="Patients in the medium cohort.")] = 12,
    cells_per_patient: Annotated[int, typer.Option(help="Cells per patient.")] = 120,
    folds: Annotated[int, typer.Option(help="Patient-grouped folds.")] = 5,
    epochs: Annotated[int, typer.Option(help="Epochs' worth of optimiser steps for every ablation variant.")] = 12,
    input_size: Annotated[int, typer.Option(help="Input size of the ablation's ResNet-18 in px.")] = 40,
    architectures: Annotated[str, typer.Option(help="Backbones compared (empty: none).")] = ",".join(
        ARCHITECTURES
    ),
    arch_input_size: Annotated[int, typer.Option(help="Input size of the architecture comparison.")] = 32,
    arch_epochs: Annotated[int, typer.Option(help="Epochs of the architecture comparison.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the cohort, the folds and the training.")] = 0,
    variants: Annotated[
        str,
        typer.Option(help="Train only these rows of the ablation (bf and bf+aug+dapi among them; empty: all)."),
    ] = "",
    cohort_seeds: Annotated[
        str,
        typer.Option(
            help="Two or more cohort seeds, comma-separated: one cohort each (--seed then seeds only the folds "
            "and the training), pooled with patients resampled within their cohort; empty: one cohort."
        ),
    ] = "",
    jobs: JobsOpt = 1,
    out: JsonOutOpt = None,
    markdown: MarkdownOpt = None,
) -> None:
    """System A's ablation and architecture comparison on a medium cohort, with paired intervals."""
    from ..io import atomic_write_text

    seeds = parse_list(cohort_seeds, "--cohort-seeds") if cohort_seeds.strip() else None
    try:
        cohort_seed_list = [int(s) for s in seeds] if seeds else None
    except ValueError as exc:
        raise ConfigError(
            "cohort_seeds", f"must be whole numbers, got {cohort_seeds!r}", "--cohort-seeds"
        ) from exc
    result = bench_system_a(
        work,
        cohort=default_cohort().replace(patients=patients, cells_per_patient=cells_per_patient, seed=seed),
        training=default_training().replace(
            epochs=epochs, patience=epochs, input_size=input_size, n_folds=folds, seed=seed
        ),
        architectures=tuple(parse_list(architectures, "--architectures") or ()) if architectures.strip() else (),
        arch_size=(arch_input_size, arch_epochs),
        variants=parse_list(variants, "--variants") if variants.strip() else None,
        cohort_seeds=cohort_seed_list,
        jobs=jobs,
        log=_ui.note,
    )
    _ui.bench_result(result, out)
    if markdown:
        atomic_write_text(markdown, system_a_markdown(result))
