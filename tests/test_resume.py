"""Resumable exports: a run journal that survives kill -9, and --resume that does not re-send accepted jobs."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.export import journal
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_RESUME_TESTS_deadbeef0123"
CLI = str(Path(sys.executable).with_name("klaviyo-magic"))


def people(n: int) -> pd.DataFrame:
    ids = np.arange(n)
    return pd.DataFrame({"email": [f"r{i}@example.com" for i in ids], "score": ids % 7})


def import_posts(sb: Sandbox) -> int:
    return len(sb.jobs())


@pytest.mark.slow
def test_kill_9_mid_export_then_resume_sends_every_row_once(klaviyo_home, tmp_path):
    rows, chunks = 300_000, 30
    source = tmp_path / "big.csv"
    people(rows).to_csv(source, index=False)
    with Sandbox(rate_limits=True) as sb:
        list_id = sb.create_list("Resumable")
        env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY,
               "KLAVIYO_BASE_URL": sb.url}  # fmt: skip
        command = [CLI, "export", "-i", str(source), "-e", "email", "-l", list_id, "-p", "score", "--json"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while import_posts(sb) < 12 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL, "the export finished before it could be killed"
        time.sleep(0.5)  # let the sandbox finish any request that was mid-flight at the kill
        jobs_at_kill = import_posts(sb)

        runs = sorted((klaviyo_home / "runs").glob("*.jsonl"))
        assert len(runs) == 1
        records = journal.read(runs[0])
        accepted_at_kill = sum(1 for r in records if r["event"] == "accepted")
        assert records[0]["event"] == "plan" and not any(r["event"] == "finished" for r in records)
        assert 0 < accepted_at_kill < chunks
        in_flight_at_kill = jobs_at_kill - accepted_at_kill

        report = tmp_path / "report.csv"
        second = subprocess.run([*command, "--resume", "--report", str(report)], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert second.returncode == 0, second.stderr
        outcome = json.loads(second.stdout)
        assert outcome["sent"] == rows and outcome["total_rows"] == rows
        assert import_posts(sb) <= chunks + in_flight_at_kill
        assert import_posts(sb) - jobs_at_kill == chunks - accepted_at_kill  # only the missing chunks were sent
        sb.wait_for_jobs(timeout=120)
        assert len(sb.member_emails(list_id)) == rows
        final = pd.read_csv(report)
        assert len(final) == rows and final["index"].is_unique and (final["status"] == "sent").all()
        assert records_of(runs[0])[-1]["event"] == "finished"
        assert KEY not in runs[0].read_text()


def records_of(path: Path) -> list[dict]:
    return journal.read(path)


@pytest.fixture
def conn(sandbox):
    return Connection.from_key(KEY, base_url=sandbox.url, name="sb")


def interrupted_run(sandbox, conn, frame, list_id, properties=None):
    """An export interrupted (Ctrl-C) after its first job, leaving an unfinished run in the journal."""

    def stop_after_first_job(event):
        if event.stage == "sending" and event.jobs == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        export_segment(frame, email="email", list_id=list_id, connection=conn, concurrency=1,
                       progress=stop_after_first_job, properties=properties)  # fmt: skip


def test_resume_in_process_finishes_the_run(klaviyo_home, sandbox, conn):
    list_id = sandbox.create_list("InProcess")
    frame = people(35_000)
    interrupted_run(sandbox, conn, frame, list_id)
    before = len(sandbox.jobs())
    result = export_segment(frame, email="email", list_id=list_id, connection=conn, resume=True)
    assert result.sent == 35_000
    assert len(sandbox.jobs()) - before == 4 - before  # 4 chunks in all; accepted ones were not re-sent
    sandbox.wait_for_jobs()
    assert len(sandbox.member_emails(list_id)) == 35_000


def accepted_batches(home: Path) -> tuple[str, list[int]]:
    (path,) = (home / "runs").glob("*.jsonl")
    return path.stem, [r["batch"] for r in journal.read(path) if r["event"] == "accepted"]


def test_resume_skips_only_batches_klaviyo_accepted_with_the_same_rows(klaviyo_home, sandbox, conn):
    list_id = sandbox.create_list("Different")
    interrupted_run(sandbox, conn, people(25_000), list_id, properties=["score"])
    run_id, accepted = accepted_batches(klaviyo_home)
    assert accepted and 3 not in accepted  # three batches of 10,000: the third was never sent
    before = len(sandbox.jobs())
    changed = people(25_000)
    changed.loc[5, "score"] = 99  # batch 1's rows now send something else: Klaviyo must get today's values
    result = export_segment(changed, email="email", list_id=list_id, connection=conn, resume=True,
                            properties=["score"])  # fmt: skip
    assert result.run_id == run_id and result.sent == 25_000
    # Batch 1 differs from what Klaviyo accepted, so it is sent again; an accepted batch 2 would not be.
    assert len(sandbox.jobs()) - before == 3 - len([b for b in accepted if b != 1])
    sandbox.wait_for_jobs()
    assert sandbox.find_profile("r5@example.com")["properties"]["score"] == 99


def test_resume_with_other_settings_starts_a_new_run(klaviyo_home, sandbox, conn):
    list_id = sandbox.create_list("Settings")
    interrupted_run(sandbox, conn, people(25_000), list_id)
    run_id, _ = accepted_batches(klaviyo_home)
    result = export_segment(people(25_000), email="email", list_id=list_id, connection=conn, resume=True,
                            properties=["score"])  # fmt: skip
    assert result.run_id != run_id and result.total_rows == 25_000 and result.ok


def test_resume_without_an_unfinished_run_starts_afresh(klaviyo_home, sandbox, conn):
    list_id = sandbox.create_list("Fresh")
    result = export_segment(people(10), email="email", list_id=list_id, connection=conn, resume=True)
    assert result.sent == 10
    again = export_segment(people(10), email="email", list_id=list_id, connection=conn, resume=True)
    assert again.run_id != result.run_id and len(sandbox.jobs()) == 1  # a finished run is never resumed...
    assert again.unchanged == 10 and again.sent == 0  # ...and the list's sync state makes the new one incremental
    full = export_segment(people(10), email="email", list_id=list_id, connection=conn, resume=True, full=True)
    assert full.sent == 10 and full.updated == 10 and len(sandbox.jobs()) == 2


def test_journal_survives_a_torn_last_line_and_holds_no_key(klaviyo_home, sandbox, conn):
    list_id = sandbox.create_list("Torn")
    interrupted_run(sandbox, conn, people(25_000), list_id)
    (path,) = (klaviyo_home / "runs").glob("*.jsonl")
    with path.open("a") as handle:
        handle.write('{"event": "accep')  # what a kill in the middle of a write could leave
    assert KEY not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    result = export_segment(people(25_000), email="email", list_id=list_id, connection=conn, resume=True)
    assert result.sent == 25_000


def test_an_error_after_accepted_jobs_offers_resume_and_resume_sends_only_the_rest(klaviyo_home, sandbox, conn):
    from klaviyo_magic.errors import KlaviyoError

    list_id = sandbox.create_list("Broken midway")
    frame = people(35_000)
    sandbox.fail_next("POST /api/profile-bulk-import-jobs", count=10, status=403, after=1)  # job 1 is accepted
    with pytest.raises(KlaviyoError) as caught:
        export_segment(frame, email="email", list_id=list_id, connection=conn, concurrency=1)
    partial = caught.value.result
    assert partial.sent == 10_000 and partial.not_sent == 25_000 and partial.resumable
    assert partial.summary(resume="RESUME-LINE").endswith("Continue it with: RESUME-LINE")
    sandbox.reset_faults()  # the key is fixed
    before = len(sandbox.jobs())
    resumed = export_segment(frame, email="email", list_id=list_id, connection=conn, resume=True)
    assert resumed.sent == 35_000 and len(sandbox.jobs()) - before == 3  # the accepted batch is not sent again
    # One run, resumed: it added everyone, also the members its first job put in the list before the error.
    assert (resumed.added, resumed.updated, resumed.unchanged) == (35_000, 0, 0), resumed.summary()
    assert "updated" not in resumed.summary()
    sandbox.wait_for_jobs()
    assert len(sandbox.member_emails(list_id)) == 35_000


# -- the line printed to continue a stopped run, run as printed ----------------------------------------------------

IMPORT = "POST /api/profile-bulk-import-jobs"


def hold_the_first_job(sb: Sandbox) -> None:
    """Klaviyo takes 2 s to accept the first import job, and answers 503 to any other: Ctrl-C pressed while the
    first is on its way (the progress line says "1 job in flight") stops the export with exactly that job sent."""
    sb.delay_next(IMPORT, 2.0)
    sb.fail_next(IMPORT, count=1_000, status=503)


def continue_line(text: str) -> str:
    lines = [line for line in text.splitlines() if "Continue it with: " in line]
    assert len(lines) == 1, text
    return lines[0].partition("Continue it with: ")[2]


def assert_every_row_sent_once(sb: Sandbox, list_id: str, emails: list[str]) -> None:
    sb.wait_for_jobs()
    assert sb.member_emails(list_id) == set(emails)
    assert sum(job["total_count"] for job in sb.jobs()) == len(emails)  # no row went to Klaviyo twice


def test_ctrl_c_in_the_cli_prints_the_exact_line_that_finishes_the_export(klaviyo_home, tmp_path):
    folder = tmp_path / "my data"  # a path that has to be quoted in the line to type
    folder.mkdir()
    source, report = folder / "vip.csv", folder / "report.csv"
    frame = people(30_000).assign(first_name="Ada")  # three import jobs
    frame.to_csv(source, index=False)
    with Sandbox(rate_limits=False) as sb:
        list_id = sb.create_list("Resume line")
        path = f"{Path(CLI).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `klaviyo-magic` as a shell finds it
        env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY,
               "KLAVIYO_BASE_URL": sb.url, "PATH": path}  # fmt: skip
        typed = ["export", "-i", str(source), "--email", "email", "-l", list_id, "--properties", "score, first_name",
                 "--report", str(report)]  # fmt: skip
        hold_the_first_job(sb)
        first = subprocess.Popen([CLI, *typed], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress: list[str] = []
        assert first.stderr is not None
        for line in first.stderr:  # progress lines, as in a cron log
            progress.append(line)
            if "in flight" in line:
                break
        first.send_signal(signal.SIGINT)  # Ctrl-C, while the first job is on its way
        out, err = first.communicate(timeout=60)
        err = "".join(progress) + err
        assert first.returncode == 130, out + err
        assert out.startswith("Interrupted: 10,000 of 30,000 rows were sent") and "klaviyo-magic: interrupted" in err
        line = continue_line(out)
        assert line == "klaviyo-magic " + shlex.join([*typed, "--resume"])  # as typed, quoted for a shell
        assert "'score, first_name'" in line and f"'{source}'" in line

        sb.reset_faults()
        second = subprocess.run(line, shell=True, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout.startswith("Sent 30,000 of 30,000 rows") and "Continue it with" not in second.stdout
        assert_every_row_sent_once(sb, list_id, list(frame["email"]))
        rows = pd.read_csv(report)  # the printed line wrote the report again: every row once, all sent
        assert len(rows) == 30_000 and rows["index"].is_unique and (rows["status"] == "sent").all()
        assert sorted(rows["email"]) == sorted(frame["email"])


def test_ctrl_c_in_the_magic_prints_the_exact_line_that_finishes_the_export(ipython_shell, sandbox, monkeypatch):
    import io

    from IPython.utils.capture import capture_output

    from klaviyo_magic.result import ExportResult

    monkeypatch.setenv("RESUME_KEY", KEY)
    ipython_shell.run_cell(f"%klaviyo_connection add sb --api-key-env RESUME_KEY --base-url {sandbox.url} "
                           "--accept-privacy-terms")  # fmt: skip
    ipython_shell.run_cell("%klaviyo_connection default sb")
    list_id = sandbox.create_list("Magic resume line")
    frame = people(30_000).assign(first_name="Ada")
    ipython_shell.user_ns["vip"] = frame
    typed = f"%klaviyo_export vip --email email --list {list_id} --properties score, first_name"
    hold_the_first_job(sandbox)
    in_flight, cell_ended = threading.Event(), threading.Event()

    class Stderr(io.StringIO):  # where the progress lines go (not a terminal: plain lines)
        def write(self, text: str) -> int:
            if "in flight" in text:
                in_flight.set()
            return super().write(text)

    def press_ctrl_c() -> None:
        while not (in_flight.wait(0.01) or cell_ended.is_set()):
            pass
        if not cell_ended.is_set():  # never into a later cell
            os.kill(os.getpid(), signal.SIGINT)  # the signal reaches the main thread, as a real Ctrl-C does

    monkeypatch.setattr(sys, "stderr", Stderr())
    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    try:
        with capture_output(stderr=False) as shown:
            presser.start()
            try:
                interrupted = ipython_shell.run_cell(typed).result
            finally:
                cell_ended.set()
                presser.join(timeout=10)
        assert isinstance(interrupted, ExportResult) and interrupted.interrupted, shown.stdout
        assert (interrupted.sent, interrupted.not_sent) == (10_000, 20_000)
        line = continue_line(shown.stdout)
        assert line == f"{typed} --resume"

        sandbox.reset_faults()
        with capture_output(stderr=False) as shown:
            finished = ipython_shell.run_cell(line).result
        assert isinstance(finished, ExportResult) and finished.ok, shown.stdout
        assert finished.run_id == interrupted.run_id  # the same run, continued
        assert (finished.sent, finished.total_rows) == (30_000, 30_000) and "Continue it with" not in shown.stdout
        report = finished.report
        assert len(report) == 30_000 and report["index"].is_unique and (report["status"] == "sent").all()
        assert_every_row_sent_once(sandbox, list_id, list(frame["email"]))
    finally:
        ipython_shell.user_ns.pop("vip", None)
