"""The package's public face: the names people import, complete in a notebook, and catch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import klaviyo_magic
from klaviyo_magic import errors

ROOT = Path(__file__).resolve().parents[1]


def test_dir_lists_the_lazy_names_for_completion():
    names = dir(klaviyo_magic)
    lazy = "export_segment ExportResult RemovalLimitError Sandbox connections form load_ipython_extension"
    for name in lazy.split():
        assert name in names
    assert set(klaviyo_magic.__all__) <= set(names)
    # What the module imports for its own annotations is not the package's to offer.
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(names)


def test_every_public_name_resolves():
    for name in klaviyo_magic.__all__:
        assert getattr(klaviyo_magic, name) is not None, name


def test_the_errors_people_catch_come_from_the_root():
    caught = "KlaviyoError InputError ExportInterrupted ConfigError AuthenticationError RateLimitError NetworkError"
    more = "NotFoundError ValidationError PermissionDeniedError ServerError ConsentRequiredError KlaviyoMagicError"
    for name in [*caught.split(), *more.split()]:
        assert getattr(klaviyo_magic, name) is getattr(errors, name)
    # A mirror run that would remove too many members raises it; it loads with the engine, on first use.
    from klaviyo_magic.export.mirror import RemovalLimitError

    assert klaviyo_magic.RemovalLimitError is RemovalLimitError
    assert issubclass(RemovalLimitError, klaviyo_magic.KlaviyoMagicError)
    assert issubclass(klaviyo_magic.InputError, ValueError)
    assert issubclass(klaviyo_magic.ExportInterrupted, KeyboardInterrupt)


def test_the_version_is_in_one_place():
    from klaviyo_magic._version import __version__

    assert klaviyo_magic.__version__ == __version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
    done = subprocess.run([sys.executable, "-m", "klaviyo_magic", "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"klaviyo-magic {__version__}"


def test_importing_the_package_stays_light():
    heavy = "{'requests', 'pandas', 'IPython', 'ipywidgets', 'numpy'}"
    script = f"import sys, klaviyo_magic; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
