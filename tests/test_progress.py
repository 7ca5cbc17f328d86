"""What the progress display shows must be true: a bar that never goes backwards or starts over, readable rates,
jobs in flight, an end that says what happened, no bar frames in a log, and word within seconds when Klaviyo
cannot be reached. The bar is read from a real terminal (a pty) running the real command."""

from __future__ import annotations

import io
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.errors import ExportInterrupted
from klaviyo_magic.progress import ProgressEvent, _Bar, _Lines, describe, readable_rate, reporter

CLI = str(Path(sys.executable).with_name("klaviyo-magic"))
KEY = "pk_PROGRESS_TESTS_0123456789"
_FRAME = re.compile(
    r"(?P<desc>[^\r\n|]*?)\s+(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>[\d,]+)/(?P<total>[\d,]+) \[(?P<rest>[^\]]*)\]"
)


def in_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Everything ``klaviyo-magic ARGS`` writes to a real terminal (a pty), frames and all."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([CLI, *args], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    process.wait(timeout=120)
    os.close(leader)
    return out.decode()


def test_the_bar_in_a_terminal_only_moves_forward_and_ends_with_the_outcome(klaviyo_home):
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home)}
    text = in_a_terminal("demo", "--rows", "60000", env=env)
    frames = [m.groupdict() for m in _FRAME.finditer(text)]
    assert len(frames) >= 3, text
    done = [int(f["n"].replace(",", "")) for f in frames]
    assert done == sorted(done), "the bar went backwards"
    totals = {f["total"] for f in frames}
    assert len(totals) == 1, f"the bar started over with another total: {totals}"
    assert frames[-1]["desc"].strip().startswith("Done: ") and frames[-1]["pct"] == "100"
    rates = [f["rest"] for f in frames if "profiles/s" in f["rest"]]
    assert rates and all(re.search(r"\b\d+(\.\d)?[kM]? profiles/s\b", rest) for rest in rates)
    assert any("in flight" in f["rest"] for f in frames)
    elapsed = [f["rest"].split(",")[0] for f in frames]
    assert elapsed == sorted(elapsed), "the clock was restarted"
    assert "Done 0%" not in text


def test_no_bar_frames_in_a_log(klaviyo_home, tmp_path):
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home)}
    log = tmp_path / "demo.log"
    with log.open("w") as handle:
        done = subprocess.run([CLI, "demo", "--rows", "20000"], stdout=handle, stderr=subprocess.STDOUT, env=env,
                              timeout=120)  # fmt: skip
    assert done.returncode in (0, 1)
    text = log.read_text()
    assert "\r" not in text
    assert re.search(r"^Done: [\d,]+ sent$", text, re.MULTILINE), text


def test_an_interrupted_bar_says_what_was_sent():
    out = io.StringIO()
    bar = _Bar(notebook=False, file=out)
    for done in (0, 10_000, 20_000):
        bar(ProgressEvent("sending", done, 100_000, done // 10_000, in_flight=20_000, in_flight_jobs=2))
    bar(ProgressEvent("done", 20_000, 100_000, 2, outcome="interrupted", message="Interrupted: 20,000 of 100,000 sent"))
    last = out.getvalue().replace("\n", "\r").split("\r")
    final = [frame for frame in last if frame.strip()][-1]
    assert final.startswith("Interrupted: 20,000 of 100,000 sent  20%") and "20,000/100,000" in final


def test_nothing_to_send_draws_no_bar():
    out = io.StringIO()
    bar = _Bar(notebook=False, file=out)
    bar(ProgressEvent("sending", 0, 0))
    bar(ProgressEvent("done", 0, 0, outcome="empty", message="Nothing to send"))
    bar.close()
    assert out.getvalue() == ""


def test_an_empty_segment_says_so(klaviyo_home, sandbox):
    conn = Connection.from_key(KEY, base_url=sandbox.url)
    events: list[ProgressEvent] = []
    empty = pd.DataFrame({"email": pd.Series([], dtype=object)})
    result = export_segment(empty, email="email", list_id=sandbox.create_list("E"), connection=conn,
                            progress=events.append)  # fmt: skip
    assert result.summary().startswith("Nothing to send: the segment is empty.")
    assert [e.outcome for e in events if e.stage == "done"] == ["empty"]
    assert not [e for e in events if e.stage == "sending" and e.total]


def test_lines_in_a_log_come_now_and_then_and_at_the_end():
    out = io.StringIO()
    lines = _Lines(stream=out, every=60)
    for done in range(0, 100_001, 10_000):
        lines(ProgressEvent("sending", done, 100_000, done // 10_000))
    lines(ProgressEvent("done", 100_000, 100_000, 10, outcome="complete", message="Done: 100,000 sent"))
    assert out.getvalue().splitlines() == ["Sending 0 / 100,000 profiles accepted", "Done: 100,000 sent"]


def test_readable_rates_and_lines():
    assert readable_rate(68_089_350.65) == "68M profiles/s"
    assert readable_rate(95_400) == "95k profiles/s"
    assert readable_rate(1_234) == "1.2k profiles/s"
    assert readable_rate(840.4) == "840 profiles/s"
    event = ProgressEvent("sending", 20_000, 99_925, 2, in_flight=20_000, in_flight_jobs=2, imported=10_000)
    assert describe(event) == "Sending 20,000 / 99,925 profiles accepted · 2 jobs in flight (20,000) · 10,000 imported"


def test_progress_true_draws_no_bar_where_output_is_not_a_terminal():
    assert isinstance(reporter(True), _Lines)  # pytest captures stderr: not a terminal


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_klaviyo_is_said_within_seconds_and_cancel_still_works(klaviyo_home):
    conn = Connection.from_key(KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    cancel = threading.Event()
    retries: list[tuple[float, str]] = []
    started = time.monotonic()

    def watch(event: ProgressEvent) -> None:
        if event.stage == "retrying":
            retries.append((time.monotonic() - started, event.message))
            if len(retries) == 3:
                cancel.set()  # as the form's Cancel button would, in the middle of the retries

    with pytest.raises(ExportInterrupted) as caught:
        export_segment(pd.DataFrame({"email": ["a@example.com"]}), email="email", list_id="Y6nRLr", connection=conn,
                       progress=watch, cancel=cancel)  # fmt: skip
    assert retries[0][0] < 2.0, "the first word about an unreachable Klaviyo must come within seconds"
    assert re.fullmatch(r"Klaviyo unreachable while checking the API key; retrying \(2/8\) in \d+ s", retries[0][1])
    assert time.monotonic() - started < retries[-1][0] + 2.0, "cancel must end the retrying at once"
    assert caught.value.result.not_sent == 1


def test_ctrl_c_during_retries_stops_the_export(klaviyo_home):
    conn = Connection.from_key(KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    import signal

    def interrupt(event: ProgressEvent) -> None:
        if event.stage == "retrying":
            os.kill(os.getpid(), signal.SIGINT)

    started = time.monotonic()
    with pytest.raises(ExportInterrupted):
        export_segment(pd.DataFrame({"email": ["a@example.com"]}), email="email", list_id="Y6nRLr", connection=conn,
                       progress=interrupt)  # fmt: skip
    assert time.monotonic() - started < 3.0
