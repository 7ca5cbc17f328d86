"""The tutorial notebooks as committed, as a reader sees them on GitHub.

nbval (configured in pyproject.toml) re-runs every notebook and compares each output with the committed one.
These checks cover what it does not: the committed file itself was run top to bottom, shows no traceback,
no widget state and no key, ignores no output by accident, and is linked from the README.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SANITIZE_FILE = ROOT / "notebooks" / "sanitize.cfg"

# Cells whose output nbval does not compare, per notebook. Each is a deliberate exception (04: the live
# progress bar); sanitize volatile values in notebooks/sanitize.cfg instead of adding to this.
IGNORED_OUTPUT_CELLS = {"04-real-world-data.ipynb": 1}
_IGNORE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "PYTEST_VALIDATE_IGNORE_OUTPUT")
_IGNORE_TAGS = ("nbval-ignore-output", "nbval-skip")

_KEY_LIKE = re.compile(r"pk_[A-Za-z0-9_\-]+")
# Made-up keys say so, so that a real key pasted into a notebook by mistake fails the test below.
_MADE_UP_KEY = re.compile(r"pk_[A-Za-z0-9_\-]*not_a_real_key")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_texts(cell: dict[str, Any]) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(_text(output["text"]))
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                texts.append(_text(value) if not isinstance(value, dict) else json.dumps(value))
        texts.extend(_text(line) for line in output.get("traceback", []))
    return texts


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/*.ipynb not found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_after_a_run_from_top_to_bottom(path):
    counts = [cell.get("execution_count") for cell in _code_cells(_load(path))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}: run it top to bottom in a fresh kernel before committing "
        "(the command is in README's Notebooks section)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_show_no_traceback(path):
    for number, cell in enumerate(_code_cells(_load(path)), start=1):
        kinds = [output["output_type"] for output in cell.get("outputs", [])]
        assert "error" not in kinds, f"{path.name}, code cell {number}: an exception's traceback is committed"
        for text in _output_texts(cell):
            assert "Traceback (most recent call last)" not in text, f"{path.name}, code cell {number}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_widget_state_is_committed(path):
    notebook = _load(path)
    assert "widgets" not in notebook.get("metadata", {}), (
        f"{path.name}: widget state is committed; run it with --ExecutePreprocessor.store_widget_state=False"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_api_key_anywhere(path):
    notebook = _load(path)
    for number, cell in enumerate(notebook["cells"], start=1):
        for key in _KEY_LIKE.findall(_text(cell["source"])):
            assert key == "pk_" or _MADE_UP_KEY.fullmatch(key), (
                f"{path.name}, cell {number}: {key[:6]}... looks like a real key; made-up keys end in "
                "'not_a_real_key', real ones come from the environment"
            )
        for text in _output_texts(cell) if cell["cell_type"] == "code" else []:
            for key in _KEY_LIKE.findall(text):
                assert key == "pk_" or key.startswith("pk_****"), (
                    f"{path.name}, cell {number}: an output shows a key ({key[:6]}...)"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_ignored_only_on_purpose(path):
    ignored = 0
    for cell in _code_cells(_load(path)):
        comments = {line.strip().lstrip("#").strip() for line in _text(cell["source"]).splitlines()}
        tags = set(cell.get("metadata", {}).get("tags", []))
        ignored += bool(comments & set(_IGNORE_MARKERS) or tags & set(_IGNORE_TAGS))
    assert ignored == IGNORED_OUTPUT_CELLS.get(path.name, 0), (
        f"{path.name}: {ignored} cell(s) whose output nbval does not check; mask volatile values in "
        "notebooks/sanitize.cfg instead (or, for a deliberate exception, update IGNORED_OUTPUT_CELLS)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_readme_links_the_notebook(path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"](notebooks/{path.name})" in readme, f"README's Notebooks section has no link to {path.name}"


def test_sanitize_file_is_valid():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8"))
    assert patterns, f"{SANITIZE_FILE} has no regex/replace pairs"
    for regex, _ in patterns:
        re.compile(regex)
