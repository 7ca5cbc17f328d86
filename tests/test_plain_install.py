"""A plain `pip install klaviyo-magic` has no IPython and no ipywidgets (they come with the notebook extra).

Every `klaviyo-magic` command must work there, and the form must say which extra it needs. Each test runs
the command in a fresh process in which importing IPython, ipywidgets or traitlets fails, as it would on
such an install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KEY = "pk_PLAIN_INSTALL_test_0123456789"
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "traitlets")
# Blocks the notebook extra's packages (a None in sys.modules makes their import fail), then runs Python code.
WITHOUT_NOTEBOOK = f"import sys; sys.modules.update(dict.fromkeys({NOTEBOOK_ONLY!r}))\n"


def run_without_notebook(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_NOTEBOOK + code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def klaviyo_magic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``klaviyo-magic ARGS`` without the notebook extra; fails loudly if one of its modules got imported."""
    code = (
        "from klaviyo_magic.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"leaked = sorted(set({NOTEBOOK_ONLY!r}) & {{m.split('.')[0] for m, v in sys.modules.items() if v}})\n"
        "assert not leaked, leaked\n"
        "sys.exit(code)\n"
    )
    return run_without_notebook(code, env, *args)


@pytest.fixture
def env(klaviyo_home, sandbox) -> dict[str, str]:
    return {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY,
            "KLAVIYO_BASE_URL": sandbox.url}  # fmt: skip


@pytest.fixture
def vip_csv(tmp_path: Path) -> Path:
    path = tmp_path / "vip.csv"
    path.write_text("email,first_name,plan\nada@example.com,Ada,gold\nbob@example.com,Bob,free\n")
    return path


def test_the_blocking_works(env):
    done = run_without_notebook("import IPython", env)
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr


def test_export_with_properties(env, sandbox, vip_csv):
    list_id = sandbox.create_list("Plain")
    done = klaviyo_magic(env, "export", "--input", str(vip_csv), "--email", "email", "--list", list_id,
                         "--properties", "first_name,plan", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 2
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com", "bob@example.com"}
    assert sandbox.find_profile("ada@example.com")["properties"] == {"plan": "gold"}


def test_run_a_saved_export(env, sandbox, vip_csv, klaviyo_home):
    from klaviyo_magic.export import saved

    list_id = sandbox.create_list("Saved")
    saved.save(saved.SavedExport(name="weekly", segments=("vip",), email="email", list_id=list_id))
    done = klaviyo_magic(env, "run", "weekly", "--input", f"vip={vip_csv}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 2


def test_connection_commands(env, sandbox):
    done = klaviyo_magic(env, "connection", "add", "prod", "--api-key-env", "KLAVIYO_API_KEY",
                         "--base-url", sandbox.url, "--accept-privacy-terms")  # fmt: skip
    assert done.returncode == 0 and "Added connection 'prod'" in done.stdout, done.stderr
    done = klaviyo_magic(env, "connection", "test", "prod")
    assert done.returncode == 0 and "works" in done.stdout, done.stderr
    assert KEY not in done.stdout + done.stderr


def test_demo(env):
    done = klaviyo_magic(env, "demo", "--rows", "300", "--rate-limits", "off", "--no-progress")
    assert done.returncode in (0, 1), done.stderr  # 1: the sample's messy rows are skipped, by design
    assert "now has" in done.stdout and "members" in done.stdout


def test_the_form_names_the_extra_it_needs(env):
    done = run_without_notebook("import klaviyo_magic\nklaviyo_magic.form()", env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: The export form needs ipywidgets, which is not installed: "
        "pip install 'klaviyo-magic[notebook]'"
    )
