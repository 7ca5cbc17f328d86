"""``%klaviyo_connection`` in a real IPython shell, and the key-leak test across every connection path."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import pickle
import secrets
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from klaviyo_magic import connections
from klaviyo_magic.connections import Connection
from klaviyo_magic.magic import ConnectionTestOutcome, KlaviyoMagic
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_0123456789abcdefghijWXYZ"


def magic(shell, line: str) -> Any:
    return shell.run_cell(f"%klaviyo_connection {line}").result


def test_add_list_default_accept_remove(ipython_shell):
    with capture_output() as captured:
        assert magic(ipython_shell, "add prod --api-key-env PROD_KEY --base-url http://127.0.0.1:9/") is None
    assert "Added connection 'prod' (key from env:PROD_KEY, base URL http://127.0.0.1:9)" in captured.stdout
    assert "%klaviyo_connection accept prod" in captured.stdout
    magic(ipython_shell, "add eu --api-key-env EU_KEY --revision 2026-07-15 --accept-privacy-terms")
    magic(ipython_shell, "default prod")
    with capture_output() as captured:
        magic(ipython_shell, "accept prod")
    assert "Privacy terms accepted for 'prod' at 20" in captured.stdout
    frame = magic(ipython_shell, "list")
    assert isinstance(frame, pd.DataFrame)
    assert ipython_shell.user_ns["_"] is frame  # the result is also in `_`
    assert list(frame.columns) == [
        "name",
        "key",
        "base_url",
        "revision",
        "default",
        "scope",
        "privacy_accepted_at",
    ]
    assert frame.to_dict("records")[1] | {"privacy_accepted_at": None} == {
        "name": "prod",
        "key": "env:PROD_KEY",
        "base_url": "http://127.0.0.1:9",
        "revision": connections.DEFAULT_REVISION,
        "default": True,
        "scope": "personal",
        "privacy_accepted_at": None,
    }
    assert frame.privacy_accepted_at.notna().all()
    magic(ipython_shell, "remove prod")
    magic(ipython_shell, "remove eu")
    with capture_output() as captured:
        assert magic(ipython_shell, "list").empty
    assert "No connections yet" in captured.stdout


def test_test_returns_the_outcome_and_shows_its_message(ipython_shell, sandbox, monkeypatch):
    monkeypatch.setenv("PROD_KEY", KEY)
    magic(ipython_shell, f"add prod --api-key-env PROD_KEY --base-url {sandbox.url}")
    with capture_output() as captured:
        outcome = ipython_shell.run_cell("%klaviyo_connection test prod").result
    assert isinstance(outcome, ConnectionTestOutcome) and outcome["ok"] is True
    assert outcome["organization"] == "Sandbox Demo Co"
    assert "Connection 'prod' works" in captured.stdout  # displayed as its message, not a dict dump


def test_user_mistakes_are_one_line_usage_errors(ipython_shell):
    magic(ipython_shell, "add production --api-key-env A")
    cases = {
        "default prodution": "Did you mean 'production'",
        f"add x --api-key {KEY}": "never takes a key: it would be saved in the cell source",
        f"add x {KEY}": "never takes a key",
        "add x": "--api-key-env VAR",
        "add x --api-key-env A --base-url http://example.com": "plain http:// only to this machine",
        "add x --api-key-stdin": "unrecognized arguments",
        "frobnicate": "invalid choice: 'frobnicate'",
        "add 'x --api-key-env A": "check its quotes",
        "test": "no default set",
    }
    for line, message in cases.items():
        with capture_output():
            with pytest.raises(UsageError) as info:
                magic(ipython_shell, line)
        text = str(info.value)
        assert message in text, line
        assert "\n" not in text and KEY not in text, line


def test_mistyped_options_and_actions_get_a_did_you_mean(ipython_shell):
    cases = {
        "add x --api-key-evn X_KEY": "unrecognized arguments: --api-key-evn X_KEY (did you mean --api-key-env?)",
        "add x --api-key-env X_KEY --relpace": "unrecognized arguments: --relpace (did you mean --replace?)",
        # The terminal-only way to give a key: the notebook's own way is the one suggested.
        "add x --api-key-stdin": "unrecognized arguments: --api-key-stdin (did you mean --api-key-env?)",
        "tset": "invalid choice: 'tset'",
        "lst": "invalid choice: 'lst'",
        "sandbx": "invalid choice: 'sandbx'",
        # A mistyped option is why the action is missing: it comes first.
        "--hlp": "unrecognized arguments: --hlp (did you mean --help?); the following arguments are required: ACTION",
    }
    meant = {"tset": "'test'", "lst": "'list'", "sandbx": "'sandbox'"}
    for line, message in cases.items():
        with capture_output(), pytest.raises(UsageError) as info:
            magic(ipython_shell, line)
        text = str(info.value)
        assert message in text and "\n" not in text, line
        if line in meant:
            assert f"(did you mean {meant[line]}?)" in text, line
        if line.startswith("add"):  # the action's usage, with the option meant
            assert "Usage: %klaviyo_connection add [-h] [--api-key-env VAR]" in text, line
    with capture_output(), pytest.raises(UsageError) as info:
        magic(ipython_shell, "frobnicate")
    assert "did you mean" not in str(info.value)  # nothing close: no guess
    assert connections.list() == []


def test_a_typed_key_is_refused_with_the_same_routes_as_the_cli(ipython_shell):
    with capture_output(), pytest.raises(UsageError) as info:
        magic(ipython_shell, f"add x --api-key {KEY}")
    text = str(info.value)
    for route in ("--api-key-env VAR", "klaviyo-magic connection add NAME --api-key-stdin", "--store file"):
        assert route in text
    assert connections.list() == []


def test_team_profiles_cannot_be_removed_from_the_magic(ipython_shell, tmp_path, monkeypatch):
    team = tmp_path / "team.toml"
    team.write_text('[connections.shared]\nkey_source = "env:TEAM_KEY"\n')
    monkeypatch.setenv("KLAVIYO_MAGIC_TEAM_FILE", str(team))
    assert magic(ipython_shell, "list").scope.tolist() == ["team"]
    with capture_output(), pytest.raises(UsageError, match="managed by an admin"):
        magic(ipython_shell, "remove shared")


def test_dollar_names_are_not_expanded_from_python_variables(ipython_shell):
    ipython_shell.user_ns["KLAVIYO_API_KEY"] = KEY  # a variable that happens to hold a key
    magic(ipython_shell, "add prod --api-key-env $KLAVIYO_API_KEY")
    assert connections.get("prod").key_source == "env:KLAVIYO_API_KEY"
    del ipython_shell.user_ns["KLAVIYO_API_KEY"]


def test_help_and_registration(ipython_shell):
    with capture_output() as captured:
        assert magic(ipython_shell, "--help") is None
    assert "usage: %klaviyo_connection" in captured.stdout
    doc = ipython_shell.find_line_magic("klaviyo_connection").__doc__
    for option in ("--api-key-env", "--base-url", "--revision", "--accept-privacy-terms", "--replace"):
        assert option in doc
    assert "klaviyo-magic connection add NAME --api-key-stdin" in doc
    assert any(isinstance(c, KlaviyoMagic) for c in ipython_shell.configurables)


# -- the leak test -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_usable_keyring():
    """keyring's "fail" backend for a while, as on a server or in a container; the previous one afterwards."""
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


class Seen:
    """Everything a user, a log or a file could show, labelled so a failure says where the key leaked."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, label: str, *values: Any) -> None:
        for value in values:
            self.texts.append((label, value if isinstance(value, str) else repr(value)))

    def error(self, label: str, call: Callable[[], Any], *, typed_in_cell: bool = False) -> BaseException:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - any exception type is a display path
            lines = traceback.format_exception(exc)
            if typed_in_cell:
                # The traceback quotes the cell's own source; a key the user typed there is theirs already
                # (IPython shows a UsageError without a traceback anyway). Everything else must stay clean.
                lines = [line for line in lines if "run_line_magic('klaviyo_connection'" not in line]
            self.add(label, str(exc), repr(exc), "".join(lines))
            return exc
        raise AssertionError(f"{label}: expected an error")


def test_the_key_never_leaks(ipython_shell, memory_keyring, klaviyo_home, sandbox, run_cli, caplog, monkeypatch):
    key = "pk_LEAKCANARY_" + secrets.token_hex(16)
    core = key[len("pk_LEAKCANARY_") : -4]  # the part no mask may show
    seen = Seen()
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LEAK_KEY", key)
    with (
        Sandbox(rate_limits=False, api_keys=["pk_someoneelse0000000000"]) as strict,
        warnings.catch_warnings(record=True) as warned,
    ):
        warnings.simplefilter("always")
        # Python API: success paths.
        conn = connections.add("leaky", api_key_env="LEAK_KEY", base_url=sandbox.url, accept_privacy_terms=True)
        seen.add(
            "api",
            conn,
            str(conn),
            conn.summary(),
            conn.masked_key,
            connections.list(),
            connections.get("leaky"),
        )
        seen.add("test ok", connections.test("leaky"))
        connections.add("refused", api_key_env="LEAK_KEY", base_url=strict.url)
        seen.add("test 401", connections.test("refused"))
        seen.add("keyring", connections.add("kr", api_key=key, base_url=sandbox.url), connections.get("kr"))
        inline = Connection.from_key(key, base_url=sandbox.url)
        seen.add("inline", inline, str(inline), vars(inline), dataclasses.asdict(inline), copy.deepcopy(inline))
        seen.add("inline test", connections.test(inline))

        # Python API: error paths.
        from klaviyo_magic.client import KlaviyoClient

        with KlaviyoClient(connections.get("refused")) as client:
            seen.add("client", client)
            seen.error("client 401", client.get_account)
        seen.error("pickle", lambda: pickle.dumps(inline))
        seen.error("consent", lambda: connections.require_consent(connections.get("refused")))
        seen.error("key as env name", lambda: connections.add("x", api_key_env=key))
        seen.error("key as name", lambda: connections.add(key, api_key_env="A"))
        seen.error("key with space", lambda: connections.add("x", api_key=key + " x"))
        seen.error("key without prefix", lambda: Connection.from_key(key[3:]))
        seen.error("key as url", lambda: connections.add("x", api_key_env="A", base_url=key))
        seen.error("key as revision", lambda: connections.add("x", api_key_env="A", revision=key))
        monkeypatch.delenv("LEAK_KEY")
        seen.error("missing env", lambda: connections.get("leaky").api_key)
        seen.error("missing env test", lambda: connections.test("leaky"))
        monkeypatch.setenv("LEAK_KEY", key)

        # CLI, with the key on stdin (to the keyring, and to the key file on request) and refused in argv.
        for argv, stdin in (
            (("add", "cli-kr", "--api-key-stdin"), key),
            (("add", "filed", "--api-key-stdin", "--store", "file", "--base-url", sandbox.url), key),
            (("add", "x", "--api-key", key), ""),
            (("add", "x", key), ""),
            (("add", "x", "--api-key-env", key), ""),
            (("add", "x", f"--api-key={key}"), ""),
            (("add", "x", "--key", key), ""),
            (("test", key), ""),
            (("remove", key), ""),
            (("default", key), ""),
            (("list",), ""),
            (("list", "--json"), ""),
            (("test", "leaky"), ""),
            (("test", "refused"), ""),
            (("test", "filed"), ""),
        ):
            seen.add(f"cli {argv[:2]}", *run_cli(*argv, stdin=stdin))

        # No usable keyring: a literal key is refused, from Python and from the CLI.
        with no_usable_keyring():
            seen.error("no keyring", lambda: connections.add("nokr", api_key=key))
            seen.error("no keyring, asked", lambda: connections.add("nokr", api_key=key, store="keyring"))
            for store in ("auto", "keyring"):
                code, out, err = run_cli("add", "nokr", "--api-key-stdin", "--store", store, stdin=key)
                assert code == 2 and "No usable OS keyring" in err
                seen.add(f"cli no keyring {store}", out, err)
        assert "nokr" not in {c.name for c in connections.list()}

        # The magic: printed output, rich displays, and errors with their tracebacks.
        for line in ("add m --api-key-env LEAK_KEY", "list", "test leaky", "test refused", "default leaky"):
            with capture_output() as captured:
                result = magic(ipython_shell, line)
            seen.add(f"magic {line}", captured.stdout, captured.stderr, captured.outputs, result)
            seen.add(f"magic {line} display", ipython_shell.display_formatter.format(result))
        typed = (
            f"add z --api-key {key}",
            f"add z --api-key-env {key}",
            f"add z {key}",
            f"test {key}",
            "test x",
        )
        for line in typed:
            with capture_output() as captured:
                seen.error(f"magic {line[:12]}", lambda line=line: magic(ipython_shell, line), typed_in_cell=True)
            seen.add(f"magic {line[:12]} output", captured.stdout, captured.stderr)
    seen.add("warnings", [str(w.message) for w in warned])
    seen.add("logs", caplog.text, [r.getMessage() for r in caplog.records])
    seen.add("sandbox log", sandbox.requests, strict.requests, [str(r) for r in sandbox.requests + strict.requests])
    files = [p for p in klaviyo_home.rglob("*") if p.is_file()]
    key_file = klaviyo_home / "keys.toml"
    for path in files:
        if path != key_file:
            seen.add(f"file {path.name}", path.read_bytes().decode("utf-8", "replace"))

    # The canary did travel: it is in the explicitly requested key file, the keyring, and it reached Klaviyo.
    assert key in key_file.read_text()
    assert key in memory_keyring.passwords.values()
    assert any(r.status == 200 for r in sandbox.requests) and any(r.status == 401 for r in strict.requests)
    assert len(seen.texts) > 60
    leaks = [(label, text) for label, text in seen.texts if key in text or core in text]
    assert leaks == []


def test_braces_work_as_in_klaviyo_export(ipython_shell):
    ipython_shell.user_ns["url"] = "http://127.0.0.1:9"
    with capture_output() as captured:
        magic(ipython_shell, "add braces --api-key-env SOME_KEY --base-url {url}")
    assert "base URL http://127.0.0.1:9)" in captured.stdout
    assert connections.get("braces").base_url == "http://127.0.0.1:9"
    ipython_shell.user_ns["SOME_KEY"] = KEY  # a Python variable that happens to hold a key...
    with capture_output() as captured:
        magic(ipython_shell, "add dollars --api-key-env $SOME_KEY")
    assert connections.get("dollars").masked_key == "env:SOME_KEY"  # ...is never put in the line: $ stays a name
    assert KEY not in captured.stdout + captured.stderr
    ipython_shell.user_ns.pop("SOME_KEY")
    ipython_shell.user_ns.pop("url")


def test_one_line_sandbox_connection_exports_at_once(ipython_shell, monkeypatch):
    monkeypatch.delenv("KLAVIYO_SANDBOX_KEY", raising=False)
    with capture_output() as captured:
        sb = magic(ipython_shell, "sandbox")
    try:
        assert "saved connection 'sandbox' to it, now the default" in captured.stdout
        conn = connections.get()
        assert conn.name == "sandbox" and conn.base_url == sb.url and conn.privacy_accepted
        ipython_shell.user_ns["tiny"] = pd.DataFrame({"email": ["one@example.com"]})
        list_id = sb.create_list("One line")
        ipython_shell.run_cell(f"%klaviyo_export tiny --email email --list {list_id} --no-progress")
        sb.wait_for_jobs()
        assert sb.member_emails(list_id) == {"one@example.com"}
    finally:
        sb.stop()
        ipython_shell.user_ns.pop("tiny", None)


def test_sandbox_says_how_to_restore_the_default_it_replaced(ipython_shell, monkeypatch):
    monkeypatch.setenv("PROD_KEY", KEY)
    magic(ipython_shell, "add prod --api-key-env PROD_KEY --accept-privacy-terms")
    magic(ipython_shell, "default prod")
    with capture_output() as captured:
        sb = magic(ipython_shell, "sandbox")
    try:
        assert "The default was 'prod'; make it the default again with: %klaviyo_connection default prod" in (
            captured.stdout
        )
        assert KEY not in captured.stdout
        with capture_output() as again:  # the same sandbox again has nothing to restore
            assert magic(ipython_shell, "sandbox") is sb
        assert "The default was" not in again.stdout
    finally:
        sb.stop()


def test_the_sandbox_line_again_reuses_the_running_sandbox_and_its_lists(ipython_shell, monkeypatch):
    monkeypatch.delenv("KLAVIYO_SANDBOX_KEY", raising=False)
    sb = magic(ipython_shell, "sandbox")
    fresh = None
    try:
        list_id = sb.create_list("Made before the line ran again")
        with capture_output() as captured:
            assert magic(ipython_shell, "sandbox") is sb  # not a new, empty one that has never heard of list_id
        assert captured.stdout.splitlines()[0] == (
            f"The Klaviyo sandbox at {sb.url} is still running in this kernel: reusing it, with its lists, as "
            "connection 'sandbox', the default. For a new, empty one, run sb.stop() first, then this line again."
        )
        assert connections.get().base_url == sb.url
        ipython_shell.user_ns["tiny"] = pd.DataFrame({"email": ["two@example.com"]})
        ipython_shell.run_cell(f"%klaviyo_export tiny --email email --list {list_id} --no-progress")
        sb.wait_for_jobs()
        assert sb.member_emails(list_id) == {"two@example.com"}

        sb.stop()  # what the reuse message says to do for a fresh one
        with capture_output() as captured:
            fresh = magic(ipython_shell, "sandbox")
        assert fresh is not sb and fresh.lists() == [] and captured.stdout.startswith("Started a Klaviyo sandbox")
        assert connections.get().base_url == fresh.url
        with pytest.raises(UsageError, match=f"List '{list_id}' was not found"):  # its lists are its own
            ipython_shell.run_cell(f"%klaviyo_export tiny --email email --list {list_id} --no-progress")
    finally:
        sb.stop()
        if fresh is not None:
            fresh.stop()
        ipython_shell.user_ns.pop("tiny", None)
