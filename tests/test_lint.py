"""The code stays ruff-clean and ruff-formatted (configuration in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["klaviyo_magic", "tests", "benchmarks"]


def ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.fail("ruff is not installed; it is part of the test extra: pip install -e '.[test]'")
    return on_path


def test_ruff_check_passes():
    done = subprocess.run([ruff(), "check", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied():
    done = subprocess.run([ruff(), "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "run `ruff format klaviyo_magic tests benchmarks`:\n" + done.stdout
