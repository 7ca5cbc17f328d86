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
    assert out.getvalue() == "Nothing to send\n"  # one line, no bar (no "0/0", no "%|")


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
    assert re.fullmatch(
        r"Klaviyo unreachable while checking the API key; retrying \(2/8\) in (\d+ s|under a second)", retries[0][1]
    )
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


# -- an empty segment, Klaviyo unreachable with progress off, the last frame ------------------------------------


def test_lines_of_an_empty_segment_say_nothing_to_send_and_draw_no_zeros(klaviyo_home, sandbox, capsys):
    out = io.StringIO()
    lines = _Lines(stream=out, every=0)
    lines(ProgressEvent("sending", 0, 0))
    lines(ProgressEvent("processing", 0, None))
    lines(ProgressEvent("done", 0, 0, outcome="empty", message="Nothing to send"))
    assert out.getvalue() == "Nothing to send\n"
    # The same through a real export, for an empty segment and for one whose every row is skipped.
    conn = Connection.from_key(KEY, base_url=sandbox.url)
    list_id = sandbox.create_list("Empty lines")
    for frame in (pd.DataFrame({"email": pd.Series([], dtype=object)}), pd.DataFrame({"email": ["x", "y@"]})):
        capsys.readouterr()
        export_segment(frame, email="email", list_id=list_id, connection=conn, progress="lines")
        err = capsys.readouterr().err
        assert err.startswith("Nothing to send") and err.count("\n") == 1, err
        assert "0 / 0" not in err and "Sending" not in err


class _Watched(io.StringIO):
    """A stand-in for stderr that notes when each line arrives and sets ``cancel`` at the second one."""

    def __init__(self, cancel: threading.Event, started: float) -> None:
        super().__init__()
        self.cancel, self.started, self.arrivals = cancel, started, []

    def write(self, text: str) -> int:
        if text.strip():
            self.arrivals.append(time.monotonic() - self.started)
            if len(self.arrivals) == 2:
                self.cancel.set()
        return super().write(text)


@pytest.mark.parametrize("progress", [None, False])
def test_with_progress_off_an_unreachable_klaviyo_is_still_said_on_stderr(klaviyo_home, monkeypatch, progress):
    conn = Connection.from_key(KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    cancel = threading.Event()
    started = time.monotonic()
    stderr = _Watched(cancel, started)
    monkeypatch.setattr(sys, "stderr", stderr)
    with pytest.raises(ExportInterrupted):
        export_segment(pd.DataFrame({"email": ["a@example.com"]}), email="email", list_id="Y6nRLr", connection=conn,
                       progress=progress, cancel=cancel)  # fmt: skip
    text = stderr.getvalue()
    assert stderr.arrivals and stderr.arrivals[0] < 2.0, "the first word must come within seconds"
    lines = text.splitlines()
    assert len(lines) == 2 and "\r" not in text, text  # one line a notice, no bar frames, nothing else
    for number, line in enumerate(lines, start=2):
        assert re.fullmatch(
            rf"Klaviyo unreachable while checking the API key; retrying \({number}/8\) in (\d+ s|under a second)", line
        )
    assert KEY not in text and KEY[3:] not in text


def test_progress_off_is_otherwise_silent(klaviyo_home, sandbox, capsys):
    conn = Connection.from_key(KEY, base_url=sandbox.url)
    list_id = sandbox.create_list("Quiet")
    for progress in (None, False):
        export_segment(pd.DataFrame({"email": ["a@example.com", "bad"]}), email="email", list_id=list_id,
                       connection=conn, progress=progress)  # fmt: skip
        export_segment(pd.DataFrame({"email": pd.Series([], dtype=object)}), email="email", list_id=list_id,
                       connection=conn, progress=progress)  # fmt: skip
    assert capsys.readouterr() == ("", "")


def _last_frame(text: str) -> dict[str, str]:
    frames = [m.groupdict() for m in _FRAME.finditer(text)]
    assert frames, text
    return frames[-1]


def _frames_of(bar_events: list[tuple[float, ProgressEvent]]) -> list[dict[str, str]]:
    """The frames a terminal bar draws for events coming at the given seconds after the first."""
    out, now = io.StringIO(), [0.0]
    bar = _Bar(notebook=False, file=out, clock=lambda: now[0])
    for at, event in bar_events:
        now[0] = at
        bar(event)
    frames: list[dict[str, str]] = []
    for frame in (m.groupdict() for m in _FRAME.finditer(out.getvalue())):
        if not frames or frame != frames[-1]:  # the last frame is drawn twice (refresh, close)
            frames.append(frame)
    counts = [int(f["n"].replace(",", "")) for f in frames]
    assert counts == sorted(counts), "the bar went backwards"
    return frames


def test_no_rate_until_the_bar_has_run_a_second_and_moved():
    frames = _frames_of(
        [
            (0.0, ProgressEvent("sending", 0, 100_000, 0, in_flight=10_000, in_flight_jobs=1)),
            (0.0005, ProgressEvent("sending", 10_000, 100_000, 1)),  # was "21M profiles/s"
            (0.5, ProgressEvent("sending", 20_000, 100_000, 2)),
            (2.0, ProgressEvent("sending", 40_000, 100_000, 4)),
            (2.5, ProgressEvent("done", 50_000, 50_000, 5, outcome="complete", message="Done: 50,000 sent")),
        ]
    )
    assert [f["n"] for f in frames][-4:] == ["10,000", "20,000", "40,000", "50,000"]
    assert not [f for f in frames if f["n"] in ("0", "10,000", "20,000") and "profiles/s" in f["rest"]], frames
    assert "20k profiles/s" in frames[-2]["rest"]  # 40,000 in 2 s
    assert frames[-1]["rest"].endswith(", 20k profiles/s")  # the last frame: the average of the whole run


def test_a_resumed_run_starts_the_bar_where_the_earlier_run_stopped_and_rates_only_what_it_sends():
    # What Klaviyo accepted before the bar appeared is its starting point, not rows sent in no time.
    frames = _frames_of(
        [
            (0.0, ProgressEvent("sending", 30_000, 100_000, 3, in_flight=10_000, in_flight_jobs=1)),
            (2.0, ProgressEvent("sending", 50_000, 100_000, 5)),
        ]
    )
    assert frames[0]["n"] == "30,000" and "profiles/s" not in frames[0]["rest"]  # was "2095M profiles/s"
    assert "10k profiles/s" in frames[-1]["rest"]  # 20,000 in 2 s
    # The earlier run's batches can be counted after the bar appeared (the input is read again): when the engine
    # says which rows those are (``earlier``), they stay out of the rate too.
    frames = _frames_of(
        [
            (0.0, ProgressEvent("sending", 40_000, 300_000, 4, earlier=40_000)),
            (0.05, ProgressEvent("sending", 100_000, 300_000, 10, in_flight=10_000, in_flight_jobs=1, earlier=100_000)),
            (2.0, ProgressEvent("sending", 120_000, 300_000, 12, earlier=100_000)),
            (4.0, ProgressEvent("done", 300_000, 300_000, 30, outcome="complete", message="Done: 300,000 sent")),
        ]
    )
    assert [f["n"] for f in frames][-3:] == ["100,000", "120,000", "300,000"]
    assert not [f for f in frames[:-2] if "profiles/s" in f["rest"]], frames
    assert "10k profiles/s" in frames[-2]["rest"]  # 20,000 in 2 s
    assert frames[-1]["rest"].endswith(", 50k profiles/s")  # 200,000 in 4 s


def test_the_last_frame_agrees_with_the_outcome_when_klaviyo_fails_rows():
    # Klaviyo accepted all 10,000 (the bar counted them), then failed 10 while importing.
    out = io.StringIO()
    bar = _Bar(notebook=False, file=out)
    for done in (0, 5_000, 10_000):
        bar(ProgressEvent("sending", done, 10_000, done // 5_000))
    bar(ProgressEvent("done", 9_990, 10_000, 2, outcome="complete", message="Done: 9,990 sent"))
    final = _last_frame(out.getvalue())
    assert final["desc"].strip() == "Done: 9,990 sent, 10 failed" and final["pct"] == "100"
    assert (final["n"], final["total"]) == ("10,000", "10,000") and "in flight" not in final["rest"]
    # Stopped after Klaviyo accepted 30,000 and failed 10,000 of them: the bar does not go back to 20,000.
    out = io.StringIO()
    bar = _Bar(notebook=False, file=out)
    bar(ProgressEvent("sending", 30_000, 100_000, 3))
    bar(ProgressEvent("done", 20_000, 100_000, 3, outcome="interrupted", message="Interrupted: 20,000 of 100,000 sent"))
    final = _last_frame(out.getvalue())
    assert final["desc"].strip() == "Interrupted: 20,000 of 100,000 sent, 10,000 failed" and final["pct"] == "30"
    assert final["n"] == "30,000"
    # A log says the same in its last line.
    out = io.StringIO()
    lines = _Lines(stream=out, every=60)
    lines(ProgressEvent("sending", 10_000, 10_000, 2))
    lines(ProgressEvent("done", 9_990, 10_000, 2, outcome="complete", message="Done: 9,990 sent · 3 removed"))
    assert out.getvalue().splitlines()[-1] == "Done: 9,990 sent, 10 failed · 3 removed"


@pytest.mark.parametrize("how", ["after accepting the job", "refusing them in the request"])
def test_a_real_export_whose_rows_klaviyo_fails_ends_on_a_true_frame(klaviyo_home, sandbox, how):
    if how == "after accepting the job":
        sandbox.fail_emails(r"^bad\d")
    else:
        sandbox.reject_emails(r"^bad\d")
    emails = [f"ok{i}@example.com" for i in range(990)] + [f"bad{i}@example.com" for i in range(10)]
    out = io.StringIO()
    conn = Connection.from_key(KEY, base_url=sandbox.url)
    result = export_segment(pd.DataFrame({"email": emails}), email="email", list_id=sandbox.create_list("Fails"),
                            connection=conn, progress=_Bar(notebook=False, file=out))  # fmt: skip
    assert (result.sent, result.failed) == (990, 10)
    final = _last_frame(out.getvalue())
    assert final["desc"].strip() == "Done: 990 sent, 10 failed" and final["pct"] == "100"
    assert (final["n"], final["total"]) == ("1,000", "1,000")


def _widget(bar: _Bar) -> tuple:
    """The notebook bar's widgets: its left text (the label and percentage), the progress bar, its right text."""
    left, progress, right = bar._bars["sending"].container.children
    return left, progress, right


def _text(widget) -> str:
    """A text widget's value with tqdm's figure spaces as plain ones, and runs of them as one."""
    return " ".join(widget.value.replace("\u2007", " ").split())


def test_the_notebook_bar_ends_saying_what_happened(capsys):
    # A full run, from a streamed input whose total is learnt on the way: the widget follows the total.
    bar = _Bar(notebook=True)
    bar(ProgressEvent("sending", 0, None, in_flight=500, in_flight_jobs=1))
    left, progress, right = _widget(bar)
    bar(ProgressEvent("sending", 500, 1_000, 1, in_flight=500, in_flight_jobs=1))
    assert progress.max == 1_000 and progress.value == 500 and progress.bar_style == ""
    bar(ProgressEvent("processing", 1_000, 1_000, 2))
    bar(ProgressEvent("done", 1_000, 1_000, 2, outcome="complete", message="Done: 1,000 sent"))
    assert _text(left).startswith("Done: 1,000 sent 100%") and "1,000/1,000" in _text(right)
    assert (progress.value, progress.max, progress.bar_style) == (1_000, 1_000, "success")
    assert progress.style.bar_color is None
    assert "in flight" not in _text(right)
    # Interrupted: red, and the words and numbers of what went out.
    bar = _Bar(notebook=True)
    bar(ProgressEvent("sending", 60_000, 100_000, 6, in_flight=20_000, in_flight_jobs=2))
    left, progress, right = _widget(bar)
    bar(ProgressEvent("done", 60_000, 100_000, 6, outcome="interrupted", message="Interrupted: 60,000 of 100,000 sent"))
    assert _text(left).startswith("Interrupted: 60,000 of 100,000 sent 60%") and "60,000/100,000" in _text(right)
    assert (progress.value, progress.bar_style, progress.style.bar_color) == (60_000, "danger", "#d9534f")
    # Klaviyo failed some: orange, and the label says how many.
    bar = _Bar(notebook=True)
    bar(ProgressEvent("sending", 1_000, 1_000, 1))
    left, progress, right = _widget(bar)
    bar(ProgressEvent("done", 990, 1_000, 1, outcome="complete", message="Done: 990 sent"))
    assert _text(left).startswith("Done: 990 sent, 10 failed 100%")
    assert (progress.bar_style, progress.style.bar_color) == ("warning", "#f0ad4e")
    # Nothing to send: no widget at all, one line that says so.
    capsys.readouterr()
    bar = _Bar(notebook=True)
    bar(ProgressEvent("sending", 0, 0))
    assert bar._bars == {}
    bar(ProgressEvent("done", 0, 0, outcome="empty", message="Nothing to send"))
    assert capsys.readouterr().out == "Nothing to send\n"


def test_with_progress_off_a_short_wait_for_the_rate_limit_is_not_announced():
    from klaviyo_magic.progress import _Notices
    from klaviyo_magic.retries import RetryNotice

    out = io.StringIO()
    notices = _Notices(out)
    for attempt, problem, delay in ((1, "429", 1.2), (2, "429", 1.0), (1, "429", 30.0), (3, "429", 1.0),
                                    (1, "unreachable", 1.0), (1, "503", 2.0)):  # fmt: skip
        notice = RetryNotice(attempt, 8, delay, problem, "creating import job 1")
        notices(ProgressEvent("retrying", 0, None, message=notice.message, retry=notice))
    assert out.getvalue().splitlines() == [
        "Klaviyo answered 429 while creating import job 1; retrying (2/8) in 30 s",
        "Klaviyo answered 429 while creating import job 1; retrying (4/8) in 1 s",  # a third 429 in a row is said
        "Klaviyo unreachable while creating import job 1; retrying (2/8) in 1 s",
        "Klaviyo answered 503 while creating import job 1; retrying (2/8) in 2 s",
    ]


def test_a_key_check_spares_the_export_its_own_account_request(klaviyo_home):
    """GET /api/accounts allows one call a second: a connection test and the export right after it ask once."""
    from klaviyo_magic import connections
    from klaviyo_magic.sandbox import Sandbox

    with Sandbox(rate_limits=True) as sb:
        conn = Connection.from_key(KEY, base_url=sb.url, name="checked")
        assert connections.check.check(conn)["ok"]
        list_id = sb.create_list("Checked")
        export_segment(pd.DataFrame({"email": ["a@example.com"]}), email="email", list_id=list_id, connection=conn)
        assert [r.path for r in sb.requests].count("/api/accounts") == 1
        assert not [r for r in sb.requests if r.status == 429]
