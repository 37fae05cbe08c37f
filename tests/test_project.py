from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\n```bash\n(.+)\n```", readme)
    assert m, "README must hold the test command after <!-- test-command -->"
    out = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == m.group(1) == 'pip install -e ".[test]" && pytest'


def test_readme_has_exactly_two_setup_commands():
    setup = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)
    assert blocks == ["pip install . && ctcid demo", 'pip install -e ".[test]" && pytest']


def test_every_command_is_in_the_readme():
    from ctcid.cli.main import app, bench_app

    readme = (ROOT / "README.md").read_text()
    for cmd in app.registered_commands:
        assert f"`ctcid {cmd.name or cmd.callback.__name__}" in readme
    for cmd in bench_app.registered_commands:
        assert f"`ctcid bench {cmd.name}" in readme


def test_ruff_lint_and_format_are_clean():
    import sys

    for args in (["check", "src", "tests"], ["format", "--check", "src", "tests"]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_a_user_loads_is_unpickled():
    """No pickle in the package: torch.load only with weights_only=True, numpy never with allow_pickle."""
    offenders = []
    for path in (ROOT / "src" / "ctcid").rglob("*.py"):
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"\bimport (pickle|dill|joblib|cloudpickle)\b|allow_pickle=True|pd\.read_pickle", code):
                offenders.append(f"{path.name}:{line_no}")
            if ("torch.load(" in code or "ckpt_path=" in code) and "weights_only=True" not in code:
                offenders.append(f"{path.name}:{line_no}")
    assert not offenders, offenders
