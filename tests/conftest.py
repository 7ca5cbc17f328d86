"""Shared fixtures: an isolated klaviyo-magic home, an in-memory keyring, a sandbox, an IPython shell.

Nothing here mocks our code or ``requests``: the sandbox is a real HTTP server, the keyring backend is a real
``keyring`` backend that happens to keep its secrets in a dict, the shell is a real ``InteractiveShell``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

ISOLATED_ENV = ("KLAVIYO_API_KEY", "KLAVIYO_BASE_URL", "KLAVIYO_MAGIC_TEAM_FILE")

try:
    import keyring
    import keyring.backend
    import keyring.errors
    from keyring.backends import fail as _fail_keyring
except ImportError:  # the keyring extra is optional
    keyring = None


if keyring is not None:

    class MemoryKeyring(keyring.backend.KeyringBackend):
        """A working keyring backend that keeps passwords in this process only."""

        priority = 1  # type: ignore[assignment]  # keyring reads it as a class property

        def __init__(self) -> None:
            super().__init__()
            self.passwords: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.passwords.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.passwords[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            if self.passwords.pop((service, username), None) is None:
                raise keyring.errors.PasswordDeleteError(username)


@contextlib.contextmanager
def _swap_keyring(backend: Any) -> Iterator[Any]:
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture(scope="session", autouse=True)
def _no_real_home(tmp_path_factory):
    """Every test, even one that does not ask for `klaviyo_home`, writes run journals, saved exports and
    profiles under a temporary ``$KLAVIYO_MAGIC_HOME``, never into the developer's config directory."""
    patch = pytest.MonkeyPatch()
    patch.setenv("KLAVIYO_MAGIC_HOME", str(tmp_path_factory.mktemp("session-home")))
    yield
    patch.undo()


@pytest.fixture
def klaviyo_home(tmp_path, monkeypatch):
    """``$KLAVIYO_MAGIC_HOME`` in a temp dir, KLAVIYO_* variables cleared, and no usable OS keyring, so
    no test touches the developer's real profiles or keyring (`memory_keyring` gives a working one)."""
    home = tmp_path / "klaviyo-home"
    monkeypatch.setenv("KLAVIYO_MAGIC_HOME", str(home))
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    if keyring is None:
        yield home
        return
    with _swap_keyring(_fail_keyring.Keyring()):
        yield home


@pytest.fixture
def memory_keyring(klaviyo_home):
    """A usable keyring backend kept in memory; ``.passwords`` maps (service, user) to the stored key."""
    if keyring is None:
        pytest.skip("the keyring package is not installed")
    with _swap_keyring(MemoryKeyring()) as backend:
        yield backend


@pytest.fixture
def sandbox():
    from klaviyo_magic.sandbox import Sandbox

    with Sandbox(rate_limits=False) as sb:
        yield sb


@pytest.fixture(scope="session")
def _ipython(tmp_path_factory):
    """One InteractiveShell per session (it is a singleton), with history in memory and its own IPYTHONDIR."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    patch = pytest.MonkeyPatch()
    patch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "klaviyo_magic")
    yield shell
    patch.undo()


@pytest.fixture
def ipython_shell(_ipython, klaviyo_home, monkeypatch):
    """The InteractiveShell with ``%load_ext klaviyo_magic`` done, whose ``run_cell`` re-raises cell errors
    (``UsageError`` included) instead of only printing them, so tests fail loudly."""
    shell = _ipython
    original = type(shell).run_cell

    def run_cell(raw_cell: str, *args: Any, **kwargs: Any) -> Any:
        result = original(shell, raw_cell, *args, **kwargs)
        result.raise_error()
        return result

    monkeypatch.setattr(shell, "run_cell", run_cell)
    return shell


@pytest.fixture
def run_cli(klaviyo_home, capsys, monkeypatch):
    """Run ``klaviyo-magic connection ARGS`` in-process; returns (exit code, stdout, stderr)."""

    import argparse
    import io
    import sys

    from klaviyo_magic.cli import connection

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        parser = argparse.ArgumentParser(prog="klaviyo-magic connection")
        connection.configure_parser(parser)
        try:
            code = connection.run(parser.parse_args(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (local[2]) for every test that needs one: starting the JVM costs seconds, so it
    is shared. The UI and the console progress bar are off, shuffles use two partitions, logs are quiet, and
    Python workers (for UDFs) run this interpreter (the system's python3 may lack pyarrow). Skips on a laptop without
    Java or pyspark; under CI (the `CI` variable set) that is a failure instead."""
    import importlib.util
    import os
    import shutil
    import sys

    found = {"java": shutil.which("java"), "pyspark": importlib.util.find_spec("pyspark")}
    missing = [name for name, where in found.items() if not where]
    if missing:
        message = f"Spark tests need {' and '.join(missing)}: .ci/run installs Java, pip install 'klaviyo-magic[spark]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    patch = pytest.MonkeyPatch()
    patch.setenv("PYSPARK_PYTHON", sys.executable)
    patch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # no "hostname resolves to a loopback address" warning
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("klaviyo-magic-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        # Tiny data and short jobs: a quick-starting JVM (C1 only, serial GC) and no whole-stage code generation
        # or adaptive planning halve the wall time of the Spark tests on two cores.
        .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    patch.undo()
