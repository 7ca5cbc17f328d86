"""The package's boundaries (pyproject.toml, [tool.importlinter]) hold, and break when an import crosses one.

The contracts: the shells (magic, widgets, cli) sit on top and do not import each other; the engine, the
connections and the lists import no shell; only the notebook shells import IPython or ipywidgets, and neither
``import klaviyo_magic`` nor ``python -m klaviyo_magic`` loads them; the form talks to Klaviyo only through the
library; the client does not import the package root; the sandbox imports nothing from the client side.
"""

from __future__ import annotations

import re
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


def verdicts(output: str) -> dict[str, list[str]]:
    """The contracts import-linter kept and broke, by name, from its summary (which wraps long names)."""
    summary = re.search(r"Analyzed .*?\n-+\n(.*?)\nContracts: ", output, re.S)
    assert summary, output
    found: dict[str, list[str]] = {"KEPT": [], "BROKEN": []}
    for name, verdict in re.findall(
        r"(.+?) (KEPT|BROKEN)(?: \(\d+ ignored imports?\))?(?: |$)", " ".join(summary[1].split())
    ):
        found[verdict].append(name)
    return found


def test_the_boundaries_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 6 kept, 0 broken." in done.stdout
    assert len(verdicts(done.stdout)["KEPT"]) == 6


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
        # What two shells both need lives below them (arguments.py), not in one of them.
        ("widgets/parts.py", "from ..cli import parsing", "Layers: shells on top"),
        ("widgets/views.py", "import requests", "The form does no HTTP itself"),
        ("widgets/runner.py", "from ..client import KlaviyoClient", "The form does no HTTP itself"),
        ("__init__.py", "import IPython", "Importing the package, or python -m klaviyo_magic, loads no IPython"),
        ("__main__.py", "from .widgets import form", "Importing the package, or python -m klaviyo_magic, loads no"),
        ("client.py", "import klaviyo_magic", "The client does not import the package root"),
        ("sandbox/store.py", "from ..connections import keys", "The sandbox imports nothing from the client side"),
    ],
)
def test_an_import_across_a_boundary_fails(copy_of_the_package: Path, module: str, line: str, broken: str):
    path = copy_of_the_package / "klaviyo_magic" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(copy_of_the_package)
    assert done.returncode == 1
    # The contract meant, not merely some contract: every name is in the summary, kept or broken.
    assert any(name.startswith(broken) for name in verdicts(done.stdout)["BROKEN"]), done.stdout


# -- the README's layout table names every module, and nothing that is not there ------------------------------------

FILE_OR_FOLDER = re.compile(r"[\w./]+\.py|[\w./]+/")


def layout_rows() -> list[tuple[list[str], list[str]]]:
    """Each row of the README's layout table: the paths of its first column, and the files its last column names.

    The first path of a row is from the repository's root (``klaviyo_magic/cli/``, ``klaviyo_magic/client.py``);
    the others, and the files its description names (``parsing.py``), are relative to that folder, or to
    the first file's folder, unless they start with ``klaviyo_magic/`` themselves.
    """
    readme = (ROOT / "README.md").read_text()
    assert "\n## Layout\n" in readme, "README.md has no '## Layout' section"
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 3 or not cells[0].startswith("`klaviyo_magic/"):
            continue  # the header, its rule, or prose
        paths = re.findall(r"`([^`]+)`", cells[0])
        base = paths[0] if paths[0].endswith("/") else paths[0].rsplit("/", 1)[0] + "/"
        named = [name for name in re.findall(r"`([^`]+)`", cells[-1]) if FILE_OR_FOLDER.fullmatch(name)]
        rows.append(([where(base, path) for path in paths], [where(base, name) for name in named]))
    assert rows, "the README's layout table has no row naming a path under klaviyo_magic/"
    return rows


def where(base: str, name: str) -> str:
    return name if name.startswith("klaviyo_magic/") else base + name


def test_the_readme_layout_table_names_every_module():
    rows = layout_rows()
    named = {path for paths, files in rows for path in [*paths, *files]}
    absent = [path for path in sorted(named) if not (ROOT / path).exists()]
    assert not absent, f"the README's layout table names what is not in the tree: {absent}"
    # A folder whose row names none of its modules (the sandbox) stands for all of them; a folder's __init__.py
    # is the folder itself unless its row says what the __init__.py does.
    whole = {path for paths, files in rows for path in paths if path.endswith("/") and not files}
    folders = {path for path in named if path.endswith("/")}
    missing = []
    for module in sorted((ROOT / "klaviyo_magic").rglob("*.py")):
        path = module.relative_to(ROOT).as_posix()
        folder = path.rsplit("/", 1)[0] + "/"
        if path in named or any(path.startswith(w) for w in whole):
            continue
        if module.name == "__init__.py" and folder in folders:
            continue
        missing.append(path)
    assert not missing, f"modules the README's layout table does not name: {missing}"
