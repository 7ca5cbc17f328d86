"""``klaviyo-magic connection ...``: exit codes, one-line errors, keys only from stdin or a prompt."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from klaviyo_magic import connections
from klaviyo_magic.cli import connection
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_0123456789abcdefghijWXYZ"


def test_add_list_default_accept_remove(run_cli, klaviyo_home):
    code, out, err = run_cli("add", "prod", "--api-key-env", "PROD_KEY", "--base-url", "http://127.0.0.1:9/")
    assert (code, err) == (0, "")
    assert "Added connection 'prod' (key from env:PROD_KEY, base URL http://127.0.0.1:9)" in out
    assert "klaviyo-magic connection accept prod" in out
    assert run_cli("default", "prod")[:2] == (0, "'prod' is now the default connection.\n")
    code, out, _ = run_cli("accept", "prod")
    assert code == 0 and out.startswith("Privacy terms accepted for 'prod' at 20")
    code, out, _ = run_cli("list")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "KEY", "BASE_URL", "DEFAULT", "SCOPE", "PRIVACY_ACCEPTED_AT"]
    assert row.split()[:5] == ["prod", "env:PROD_KEY", "http://127.0.0.1:9", "*", "personal"]
    code, out, _ = run_cli("list", "--json")
    assert json.loads(out)[0]["name"] == "prod"
    assert run_cli("remove", "prod")[:2] == (0, "Removed connection 'prod'.\n")
    assert run_cli("list")[1].startswith("No connections yet")


def test_add_with_options(run_cli):
    code, _, _ = run_cli("add", "eu", "--api-key-env", "EU_KEY", "--revision", "2026-07-15", "--accept-privacy-terms")
    conn = connections.get("eu")
    assert code == 0 and conn.revision == "2026-07-15" and conn.privacy_accepted


def test_key_from_stdin_goes_to_the_keyring(run_cli, memory_keyring, klaviyo_home):
    code, out, err = run_cli("add", "prod", "--api-key-stdin", stdin=KEY + "\n")
    assert (code, err) == (0, "")
    assert "key from keyring" in out
    assert list(memory_keyring.passwords.values()) == [KEY]
    assert KEY not in (klaviyo_home / "connections.toml").read_text()


@pytest.mark.parametrize("store", [(), ("--store", "auto"), ("--store", "keyring")])
def test_without_a_keyring_a_key_is_refused_before_it_is_read(run_cli, klaviyo_home, store):
    code, out, err = run_cli("add", "prod", "--api-key-stdin", *store, stdin=KEY)
    assert (code, out) == (2, "")
    assert err.startswith("error: No usable OS keyring to keep the API key of connection 'prod' in")
    assert len(err.splitlines()) == 1
    for fix in ("--api-key-env VAR", "pip install 'klaviyo-magic[keyring]'", "--store file"):
        assert fix in err
    assert "api_key_env=" not in err and "store='file'" not in err  # the CLI's flags, not Python's arguments
    assert sys.stdin.read() == KEY  # refused before the key was read
    assert not klaviyo_home.exists()


def test_key_file_on_request_warns_on_one_line(run_cli, klaviyo_home):
    code, out, err = run_cli("add", "prod", "--api-key-stdin", "--store", "file", stdin=KEY)
    assert code == 0 and "key from pk_****WXYZ" in out
    assert err.startswith("warning: The API key of connection 'prod' is stored in plain text")
    assert len(err.splitlines()) == 1
    assert tomllib.loads((klaviyo_home / "keys.toml").read_text())["keys"]["prod"] == KEY


def test_keys_on_the_command_line_are_refused_without_echo(run_cli):
    for argv in (
        ("add", "prod", "--api-key", KEY),
        ("add", "prod", KEY),
        ("add", "prod", "--api-key-env", KEY),
    ):
        code, out, err = run_cli(*argv)
        assert code == 2, argv
        assert KEY not in out + err
        assert len(err.splitlines()) == 1
    assert "lands in shell history" in run_cli("add", "prod", "--api-key", KEY)[2]
    assert connections.list() == []


def test_missing_key_source_without_a_terminal_is_a_usage_error(run_cli):
    code, _, err = run_cli("add", "prod")
    assert (
        code == 2 and err == "error: Give --api-key-env VAR (recommended) or --api-key-stdin (and pipe the key in).\n"
    )
    code, _, err = run_cli("add", "prod", "--api-key-stdin", "--store", "file", stdin="")
    assert code == 2 and "read nothing" in err


def test_config_errors_exit_2_with_one_line(run_cli):
    code, _, err = run_cli("remove", "nope")
    assert code == 2 and err.startswith("error: No connection named 'nope'") and len(err.splitlines()) == 1
    code, _, err = run_cli("add", "x", "--api-key-env", "A", "--base-url", "http://example.com")
    assert code == 2 and "plain http:// only to this machine" in err
    code, _, err = run_cli("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_test_exit_codes(run_cli, monkeypatch):
    monkeypatch.setenv("PROD_KEY", KEY)
    with (
        Sandbox(rate_limits=False) as ok,
        Sandbox(rate_limits=False, api_keys=["pk_otherkey000000000000"]) as strict,
    ):
        run_cli("add", "good", "--api-key-env", "PROD_KEY", "--base-url", ok.url)
        run_cli("add", "bad", "--api-key-env", "PROD_KEY", "--base-url", strict.url)
        code, out, err = run_cli("test", "good")
        assert (code, err) == (0, "") and "works" in out and "Sandbox Demo Co" in out
        code, out, err = run_cli("test", "bad")
        assert (code, out) == (3, "") and "401 Unauthorized" in err and len(err.splitlines()) == 1
    code, _, err = run_cli("test", "nope")
    assert code == 2


def test_a_notebook_sandbox_connection_after_its_kernel_ended(ipython_shell, klaviyo_home, tmp_path, monkeypatch):
    """`sb = %klaviyo_connection sandbox`, the kernel ends, then the CLI with the same home: the message says the
    notebook's sandbox is gone and what to type, not to set KLAVIYO_SANDBOX_KEY (a variable of ours)."""
    from IPython.utils.capture import capture_output

    monkeypatch.delenv("KLAVIYO_SANDBOX_KEY", raising=False)
    with capture_output():
        sb = ipython_shell.run_cell("%klaviyo_connection sandbox").result
    url = sb.url
    assert connections.test()["ok"] is True  # over HTTP while the kernel runs
    sb.stop()  # the kernel ended
    env = {k: v for k, v in os.environ.items() if k != "KLAVIYO_SANDBOX_KEY"}
    env["KLAVIYO_MAGIC_HOME"] = str(klaviyo_home)
    rows = tmp_path / "rows.csv"
    rows.write_text("email\none@example.com\n")
    cli = Path(sys.executable).with_name("klaviyo-magic")
    message = (
        f"Connection 'sandbox' points at the sandbox a notebook started at {url}; that sandbox runs only inside "
        "the notebook's kernel and stops with it. Start a new one with `%klaviyo_connection sandbox` in a "
        "notebook, or use another connection: --connection NAME."
    )
    for args, prefix in (
        (["connection", "test"], "error: "),
        (["export", "-i", str(rows), "--email", "email", "--list", "L1", "--no-progress"], "klaviyo-magic: "),
    ):
        done = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr == prefix + message + "\n"


def test_python_dash_m_with_a_piped_key(klaviyo_home, tmp_path):
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home)}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the developer's real keyring
    command = [sys.executable, "-m", "klaviyo_magic", "connection"]
    done = subprocess.run(
        [*command, "add", "prod", "--api-key-stdin"], input=KEY, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "No usable OS keyring" in done.stderr and "--store file" in done.stderr
    assert KEY not in done.stdout + done.stderr and not klaviyo_home.exists()
    done = subprocess.run(
        [*command, "add", "prod", "--api-key-stdin", "--store", "file"],
        input=KEY,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "plain text" in done.stderr and KEY not in done.stdout + done.stderr
    done = subprocess.run([*command, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "prod" in done.stdout and "pk_****WXYZ" in done.stdout
    done = subprocess.run([*command, "add", "x", "--api-key", KEY], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and KEY not in done.stderr


def test_every_option_is_documented_in_help():
    parser = argparse.ArgumentParser(prog="klaviyo-magic connection")
    connection.configure_parser(parser)
    actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in actions.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                assert flag in text, (name, flag)
            assert action.help, (name, action.dest)


def test_mounted_under_the_klaviyo_magic_command(klaviyo_home, capsys):
    from klaviyo_magic import cli

    assert cli.main(["connection", "add", "prod", "--api-key-env", "PROD_KEY"]) == 0
    assert cli.main(["connection", "list"]) == 0
    assert "env:PROD_KEY" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["connection", "add", "x", "--key", KEY])
    assert info.value.code == 2 and KEY not in capsys.readouterr().err


def test_mistyped_options_and_actions_get_a_did_you_mean(run_cli):
    code, out, err = run_cli("add", "x", "--api-key-evn", "X_KEY")
    assert (code, out) == (2, "")
    assert err.startswith("usage: klaviyo-magic connection add")  # the action's usage, not the command's
    assert err.splitlines()[-1] == (
        "klaviyo-magic connection add: error: unrecognized arguments: --api-key-evn X_KEY (did you mean --api-key-env?)"
    )
    code, _, err = run_cli("add", "x", "--api-key-env", "X_KEY", "--relpace")
    assert code == 2 and err.endswith("unrecognized arguments: --relpace (did you mean --replace?)\n")
    code, _, err = run_cli("add", "x", "--api-key-stdin", "--store", "fiel")
    assert code == 2 and err.endswith("invalid choice: 'fiel' (choose from 'auto', 'keyring', 'file') "
                                      "(did you mean 'file'?)\n")  # fmt: skip
    code, _, err = run_cli("list", "--jsn")
    assert code == 2 and err.endswith("unrecognized arguments: --jsn (did you mean --json?)\n")
    assert connections.list() == []


def test_a_key_after_a_mistyped_option_is_masked_and_never_suggested_back(run_cli):
    code, out, err = run_cli("add", "x", "--apikey", KEY)
    assert code == 2 and KEY not in out + err
    assert err.splitlines()[-1].endswith("unrecognized arguments: --apikey pk_****WXYZ (did you mean --api-key-env?)")
    # --api-key is accepted only to refuse it: it is never the option suggested.
    code, _, err = run_cli("add", "x", "--api-ky", KEY)
    assert code == 2 and KEY not in err and "did you mean --api-key?" not in err


def test_mistyped_actions_and_options_under_the_klaviyo_magic_command(klaviyo_home, capsys):
    from klaviyo_magic import cli

    for argv, last in (
        (["connection", "add", "x", "--api-key-evn", "X_KEY"],
         "klaviyo-magic connection add: error: unrecognized arguments: --api-key-evn X_KEY "
         "(did you mean --api-key-env?)"),
        (["connection", "tset"], "(did you mean 'test'?)"),
        (["conection", "list"], "(did you mean 'connection'?)"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.splitlines()[-1].endswith(last), (argv, err)
    with pytest.raises(SystemExit):
        cli.main(["connection", "frobnicate"])
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and "did you mean" not in err  # nothing close: no guess
    assert connections.list() == []
