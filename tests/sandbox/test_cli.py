"""`python -m klaviyo_magic.sandbox` in a real subprocess: it announces itself, serves, stops on SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_support import Api

from klaviyo_magic.sandbox import serve
from klaviyo_magic.sandbox.control import is_loopback

LISTENING = re.compile(
    r"Klaviyo sandbox listening on (http://127\.0\.0\.1:\d+) \(rate limits: (klaviyo|off)\) — Ctrl-C to stop"
)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "klaviyo_magic.sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_sigterm_or_ctrl_c(stop_signal):
    process = start("--port", "0", "--rate-limits", "off", "--list", "VIP", "--api-key", "pk_cli_key_123456")
    try:
        match = LISTENING.fullmatch(process.stdout.readline().strip())
        assert match, "no listening line"
        url, mode = match.groups()
        assert mode == "off"
        list_line = process.stdout.readline()
        list_id = re.fullmatch(r"Created list '(\w{6})': VIP\n", list_line).group(1)
        api = Api(url, "pk_cli_key_123456")
        assert api.get(f"/api/lists/{list_id}").json()["data"]["attributes"]["name"] == "VIP"
        assert Api(url, "pk_someone_else_1").get("/api/accounts").status_code == 401
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
        assert process.stderr.read() == ""
    finally:
        process.kill()
        process.wait()


def test_refuses_a_non_loopback_host():
    process = start("--host", "0.0.0.0", "--port", "0")
    assert process.wait(timeout=30) == 2
    assert "not a loopback address" in process.stderr.read()
    assert process.stdout.read() == ""


def test_every_option_has_help_and_is_documented():
    parser = argparse.ArgumentParser()
    serve.configure_parser(parser)
    options = [action for action in parser._actions if action.option_strings and action.dest != "help"]
    names = {action.option_strings[0] for action in options}
    assert names == {"--host", "--port", "--rate-limits", "--api-key", "--job-delay", "--list", "--verbose"}
    assert all(action.help for action in options)
    guide = (Path(__file__).parents[2] / "docs" / "sandbox.md").read_text(encoding="utf-8")
    assert [name for name in names if f"`{name}" not in guide] == []  # every option is documented
    defaults = parser.parse_args([])
    assert (defaults.port, defaults.rate_limits, defaults.host) == (8765, "klaviyo", "127.0.0.1")


def test_only_loopback_hosts_are_allowed():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "192.168.1.10", "example.com", ""))
