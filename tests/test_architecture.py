"""The package's boundaries (pyproject.toml, [tool.importlinter]) hold, and break when an import crosses one.

The contracts: the shells (magic, widgets, cli) sit on top and do not import each other; the engine, the
connections and the lists import no shell; only the notebook shells import IPython or ipywidgets; the client
does not import the package root; the sandbox imports nothing from the client side.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint(project: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on ``project`` (a directory holding pyproject.toml and the klaviyo_magic package)."""
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_boundaries_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


@pytest.fixture
def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "klaviyo_magic", tmp_path / "klaviyo_magic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The bug this layout fixed: the CLI borrowed a helper from the magic, which imports IPython.
        ("cli/export.py", "from ..magic.export import USAGE", "Only the notebook shells import IPython"),
        ("export/api.py", "from ..widgets import parts", "Layers: shells on top"),
        ("client.py", "import klaviyo_magic", "The client does not import the package root"),
        ("sandbox/store.py", "from ..connections import keys", "The sandbox imports nothing from the client side"),
    ],
)
def test_an_import_across_a_boundary_fails(copy_of_the_package: Path, module: str, line: str, broken: str):
    path = copy_of_the_package / "klaviyo_magic" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(copy_of_the_package)
    assert done.returncode == 1
    report = " ".join(done.stdout.split())
    assert f"{broken}" in report and "BROKEN" in report, report
