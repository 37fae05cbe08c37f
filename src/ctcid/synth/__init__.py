"""Synthetic DEPArray-like cohorts: the embedded default dataset, the test fixture and the benchmark workload.

No public DEPArray data exists, so :func:`generate_cohort` writes a realistic stand-in: per-cell crops in
bright-field (BF), DAPI, cytokeratin (CK) and CD45, with leukocyte subtypes, heterogeneous CTC phenotypes,
patient-to-patient variation of staining, optics and CTC prevalence, and imaging artefacts. Every knob of
realism is a field of :class:`Difficulty`; :data:`PRESETS` holds ``easy``, ``medium`` and ``hard``.

Examples
--------
>>> import tempfile
>>> from ctcid.synth import SynthConfig, generate_cohort
>>> out = generate_cohort(tempfile.mkdtemp(), SynthConfig(patients=2, cells_per_patient=10, size=48), workers=1)
>>> sorted(p.name for p in out.iterdir())
['P01', 'P02', 'cohort.json', 'labels.csv']
"""

from __future__ import annotations

from ._render import CHANNELS
from .cohort import FORMAT_VERSION, generate_cohort, render_cells, sample_cells
from .dataset import synth_dataset
from .export import write_export
from .frames import generate_frames
from .outcomes import OutcomeModel, sample_outcomes
from .presets import PRESETS, Difficulty, SynthConfig

__all__ = [
    "CHANNELS",
    "FORMAT_VERSION",
    "PRESETS",
    "Difficulty",
    "OutcomeModel",
    "SynthConfig",
    "generate_cohort",
    "generate_frames",
    "render_cells",
    "sample_cells",
    "sample_outcomes",
    "synth_dataset",
    "write_export",
]
