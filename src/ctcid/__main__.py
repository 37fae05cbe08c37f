"""``python -m ctcid`` runs the command line."""

from ctcid.cli.main import run

if __name__ == "__main__":
    run()
