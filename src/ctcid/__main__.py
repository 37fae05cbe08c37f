"""``python -m ctcid`` runs the command line."""

from ctcid.cli.main import run

run()
