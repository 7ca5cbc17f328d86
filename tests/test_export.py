"""export_segment() against the real sandbox over HTTP: every row accounted for, list membership exact."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.errors import AuthenticationError, ExportInterrupted, InputError, NotFoundError
from klaviyo_magic.progress import ProgressEvent
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_export_tests_0123456789abcdef"


def people(n: int, *, start: int = 0, domain: str = "example.com") -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "email": [f"person{i}@{domain}" for i in ids],
            "first_name": [f"First{i}" for i in ids],
            "ltv": ids * 1.5,
        },
        index=[f"row{i}" for i in ids],
    )


def assert_accounted(result, *frames: pd.DataFrame) -> None:
    """Every input row appears in the report exactly once, in order, with a status and (unless sent) a reason."""
    expected = [(seg, label) for seg, frame in enumerate(frames) for label in frame.index]
    report = result.report
    assert list(zip(report["segment"], report["index"], strict=True)) == expected
    assert set(report["status"]) <= {"sent", "unchanged", "skipped", "failed", "duplicate", "not_sent"}
    not_sent = report[report["status"] != "sent"]
    assert not_sent["reason"].notna().all() and (not_sent["reason"].str.len() > 0).all()
    parts = result.sent + result.unchanged + result.skipped + result.failed + result.duplicates + result.not_sent
    assert result.total_rows == parts == len(report)


def assert_members_are_sent_rows(sb: Sandbox, list_id: str, result) -> None:
    sb.wait_for_jobs(timeout=60)
    sent = set(result.report.loc[result.report["status"] == "sent", "email"])
    assert sb.member_emails(list_id) == sent


@pytest.fixture
def sb():
    with Sandbox(rate_limits=False) as sandbox:
        yield sandbox


@pytest.fixture
def conn(sb):
    return Connection.from_key(KEY, base_url=sb.url, name="sandbox")


def test_exports_a_segment_into_the_list(sb, conn):
    list_id = sb.create_list("VIP")
    frame = people(250)
    result = export_segment(frame, email="email", list_id=list_id, connection=conn, properties=["first_name", "ltv"])
    assert_accounted(result, frame)
    assert result.sent == 250 and result.failed == 0 and len(result.job_ids) == 1
    assert_members_are_sent_rows(sb, list_id, result)
    profile = sb.find_profile("person7@example.com")
    assert profile["first_name"] == "First7"
    assert profile["properties"] == {"ltv": 10.5}


def test_messy_segments_skip_duplicates_and_nan(sb, conn):
    list_id = sb.create_list("Messy")
    first = pd.DataFrame(
        {
            "email": [" Ada@Example.com ", "bob@@example", None, "carl@example.com", ""],
            "score": [1.0, 2.0, 3.0, np.nan, 5.0],
            "joined": pd.to_datetime(["2024-01-02", None, "2024-03-04", "2024-05-06", None]),
        },
        index=[10, 11, 12, 13, 14],
    )
    second = pd.DataFrame({"email": ["ada@example.com", "dora@example.com"], "score": [9.0, 7.0], "joined": pd.NaT})
    result = export_segment(
        [first, second], email="email", list_id=list_id, connection=conn, properties=["score", "joined"]
    )
    assert_accounted(result, first, second)
    keys = zip(result.report["segment"], result.report["index"], strict=True)
    status = dict(zip(keys, result.report["status"], strict=True))
    assert status == {
        (0, 10): "sent",
        (0, 11): "skipped",
        (0, 12): "skipped",
        (0, 13): "sent",
        (0, 14): "skipped",
        (1, 0): "duplicate",
        (1, 1): "sent",
    }
    assert_members_are_sent_rows(sb, list_id, result)
    assert sb.find_profile("carl@example.com")["properties"] == {"joined": "2024-05-06T00:00:00"}  # NaN omitted
    assert sb.find_profile("ada@example.com")["properties"]["score"] == 1.0  # first occurrence wins


def test_oversized_profile_fails_and_the_rest_is_sent(sb, conn):
    list_id = sb.create_list("Big")
    frame = people(20)
    frame["notes"] = "short"
    frame.loc["row3", "notes"] = "x" * 120_000
    result = export_segment(frame, email="email", list_id=list_id, connection=conn, properties=["notes"])
    assert_accounted(result, frame)
    row = result.report.set_index("index").loc["row3"]
    assert row["status"] == "failed" and "100 KB" in row["reason"]
    assert result.sent == 19
    assert_members_are_sent_rows(sb, list_id, result)


def test_synchronous_rejections_are_set_aside_and_the_rest_resent(sb, conn):
    list_id = sb.create_list("Reject")
    frame = people(30)
    sb.reject_emails(r"^person(4|17)@")
    result = export_segment(frame, email="email", list_id=list_id, connection=conn)
    assert_accounted(result, frame)
    failed = result.report[result.report["status"] == "failed"]
    assert sorted(failed["email"]) == ["person17@example.com", "person4@example.com"]
    assert failed["reason"].str.startswith("rejected by Klaviyo").all()
    assert result.sent == 28
    assert_members_are_sent_rows(sb, list_id, result)


def test_asynchronous_import_errors_are_reported_per_row(sb, conn):
    list_id = sb.create_list("Async")
    frame = people(40)
    sb.fail_emails(r"^person(5|25)@")
    result = export_segment(frame, email="email", list_id=list_id, connection=conn)
    assert_accounted(result, frame)
    failed = result.report[result.report["status"] == "failed"]
    assert sorted(failed["email"]) == ["person25@example.com", "person5@example.com"]
    assert failed["reason"].str.contains("import error").all()
    assert_members_are_sent_rows(sb, list_id, result)


@pytest.mark.parametrize(
    "fault",
    [
        dict(status=429, retry_after=1),
        dict(status=429, retry_after=None),
        dict(status=500),
        dict(status=503),
    ],
    ids=["429-retry-after", "429-bare", "500", "503"],
)
def test_transient_failures_are_retried(sb, conn, fault):
    list_id = sb.create_list("Retry")
    frame = people(50)
    sb.fail_next("POST /api/profile-bulk-import-jobs", count=3, **fault)
    result = export_segment(frame, email="email", list_id=list_id, connection=conn)
    assert result.sent == 50
    posts = [r for r in sb.requests if r.method == "POST" and r.path.rstrip("/") == "/api/profile-bulk-import-jobs"]
    assert [r.status for r in posts] == [fault["status"]] * 3 + [202]
    assert_members_are_sent_rows(sb, list_id, result)


def test_dropped_connections_are_retried(sb, conn):
    list_id = sb.create_list("Dropped")
    frame = people(50)
    sb.drop_next("POST /api/profile-bulk-import-jobs", count=2)
    sb.drop_next("GET /api/profile-bulk-import-jobs", count=1)
    result = export_segment(frame, email="email", list_id=list_id, connection=conn)
    assert result.sent == 50
    assert_members_are_sent_rows(sb, list_id, result)


def test_rate_limited_export_paces_itself_inside_klaviyos_limits():
    with Sandbox(rate_limits=True) as sb:
        list_id = sb.create_list("Paced")
        frame = people(125_000)
        conn = Connection.from_key(KEY, base_url=sb.url)
        result = export_segment(frame, email="email", list_id=list_id, connection=conn)
        assert result.sent == 125_000 and len(result.job_ids) == 13
        posts = [r for r in sb.requests if r.method == "POST" and "bulk-import" in r.path]
        assert [r.status for r in posts].count(429) == 0  # paced, not bounced: 13 jobs > the 10/s burst
        assert len(sb.member_emails(list_id)) == 125_000


def test_a_429_storm_with_rate_limits_on_still_completes():
    with Sandbox(rate_limits=True) as sb:
        list_id = sb.create_list("Storm")
        frame = people(30_000)
        sb.fail_next("POST /api/profile-bulk-import-jobs", count=6, status=429, retry_after=1)
        conn = Connection.from_key(KEY, base_url=sb.url)
        result = export_segment(frame, email="email", list_id=list_id, connection=conn)
        assert result.sent == 30_000
        assert_members_are_sent_rows(sb, list_id, result)


def test_dry_run_sends_nothing(sb, conn):
    list_id = sb.create_list("Dry")
    frame = people(10)
    frame.loc["row2", "email"] = "broken"
    sb.clear_log()
    result = export_segment(frame, email="email", list_id=list_id, connection=conn, dry_run=True)
    assert result.dry_run and result.would_send == 9 and result.skipped == 1 and result.sent == 0
    assert [(r.method, r.path) for r in sb.requests] == [("GET", "/api/accounts"), ("GET", f"/api/lists/{list_id}")]
    assert "Nothing was sent" in result.summary()
    sb.clear_log()
    offline = export_segment(frame, email="email", list_id="Y6nRLr", connection=conn, dry_run=True, offline=True)
    assert offline.would_send == 9 and sb.requests == []
    with pytest.raises(InputError, match="offline=True only goes with dry_run=True"):  # asked for no request
        export_segment(frame, email="email", list_id=list_id, connection=conn, offline=True)
    assert sb.requests == []


def test_dry_run_checks_the_key_and_the_list(sb, conn):
    with pytest.raises(NotFoundError, match="List 'NOPE12' was not found"):
        export_segment(people(3), email="email", list_id="NOPE12", connection=conn, dry_run=True)
    with Sandbox(rate_limits=False, api_keys=["pk_the_only_good_key"]) as strict:
        wrong = Connection.from_key("pk_wrong_key_ABCDEF123456", base_url=strict.url, name="prod")
        with pytest.raises(AuthenticationError, match="Check connection 'prod'"):
            export_segment(people(3), email="email", list_id=strict.create_list("L"), connection=wrong, dry_run=True)


def test_input_errors_come_before_any_request(sb, conn):
    sb.clear_log()
    with pytest.raises(InputError, match="Did you mean 'email'"):
        export_segment(people(3), email="Emial", list_id="abc123", connection=conn)
    with pytest.raises(InputError, match="list_id"):
        export_segment(people(3), email="email", list_id="  ", connection=conn)
    with pytest.raises(InputError, match="max_profiles"):
        export_segment(people(30), email="email", list_id="abc123", connection=conn, max_profiles=10)
    assert sb.requests == []


def test_unknown_list_is_explained(sb, conn):
    with pytest.raises(NotFoundError, match="List 'NOPE12' was not found"):
        export_segment(people(3), email="email", list_id="NOPE12", connection=conn)


def test_refused_key_raises_with_every_row_accounted_for():
    with Sandbox(rate_limits=False, api_keys=["pk_the_only_good_key"]) as sb:
        list_id = sb.create_list("Auth")
        frame = people(5)
        conn = Connection.from_key("pk_wrong_key_ABCDEF123456", base_url=sb.url, name="prod")
        with pytest.raises(AuthenticationError) as caught:
            export_segment(frame, email="email", list_id=list_id, connection=conn)
        message = str(caught.value)
        assert "401" in message and "'prod'" in message and "pk_wrong_key_ABCDEF123456" not in message
        result = caught.value.result
        assert_accounted(result, frame)
        assert result.not_sent == 5 and result.report["reason"].str.contains("stopped after an error").all()
        assert not result.resumable and "resume" not in message  # nothing was accepted: fix the key, run again


def test_progress_callback_sees_sending_and_processing(sb, conn):
    list_id = sb.create_list("Progress")
    events: list[ProgressEvent] = []
    export_segment(people(25_000), email="email", list_id=list_id, connection=conn, progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "sending" and stages[-1] == "done" and "processing" in stages
    sending = [e.done for e in events if e.stage == "sending"]
    assert sending == sorted(sending) and sending[-1] == 25_000
    assert events[-1].done == 25_000 and events[-1].jobs == 3


def test_progress_bar_draws_on_stderr(sb, conn, capsys):
    export_segment(people(100), email="email", list_id=sb.create_list("Bar"), connection=conn, progress=True)
    assert "profile" in capsys.readouterr().err


def test_not_waiting_for_jobs_counts_accepted_rows_as_sent(sb, conn):
    list_id = sb.create_list("NoWait")
    result = export_segment(people(100), email="email", list_id=list_id, connection=conn, wait_for_jobs=False)
    assert result.sent == 100
    assert result.report["reason"].str.contains("not watched to completion").all()
    assert_members_are_sent_rows(sb, list_id, result)


def test_ctrl_c_stops_cleanly_with_a_partial_result():
    with Sandbox(rate_limits=True) as sb:
        list_id = sb.create_list("Interrupted")
        frame = people(150_000)
        conn = Connection.from_key(KEY, base_url=sb.url)

        def interrupt_once_sending(event: ProgressEvent) -> None:
            # Ctrl-C arrives as SIGINT in the main thread while workers are mid-export.
            if event.stage == "sending" and event.jobs == 1:
                os.kill(os.getpid(), signal.SIGINT)

        with pytest.raises(ExportInterrupted) as caught:
            export_segment(
                frame,
                email="email",
                list_id=list_id,
                connection=conn,
                concurrency=2,
                progress=interrupt_once_sending,
            )
        result = caught.value.result
        assert result.interrupted and "Interrupted" in str(caught.value)
        assert_accounted(result, frame)
        assert 0 < result.sent <= 40_000  # requests ramp up: a stop after the first job leaves most unsent
        not_sent = result.report[result.report["status"] == "not_sent"]
        assert len(not_sent) == 150_000 - result.sent
        assert (not_sent["reason"] == "not sent: the export was interrupted").all()
        assert "Continue it with: export_segment(..., resume=True)" in str(caught.value)
        assert_members_are_sent_rows(sb, list_id, result)


def test_ctrl_c_while_import_jobs_are_retried_stops_at_once(klaviyo_home, sb, conn):
    """Ctrl-C reaches only the main thread; the workers waiting out a 503's backoff must stop too, or the
    interrupted export would live on for their whole retry budget (most of a minute)."""
    list_id = sb.create_list("Retrying")
    sb.fail_next("POST /api/profile-bulk-import-jobs", count=100, status=503)
    interrupted_at: list[float] = []

    def interrupt_at_first_retry(event: ProgressEvent) -> None:
        if event.stage == "retrying" and not interrupted_at:
            interrupted_at.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(ExportInterrupted) as caught:
        export_segment(people(30_000), email="email", list_id=list_id, connection=conn, concurrency=2,
                       progress=interrupt_at_first_retry)  # fmt: skip
    assert time.monotonic() - interrupted_at[0] < 5  # the first retry waits 1-2 s; the budget is about 45 s
    result = caught.value.result
    assert result.interrupted and result.sent == 0 and result.not_sent == 30_000
    assert (result.report["reason"] == "not sent: the export was interrupted").all()


def test_cancel_while_sending_keeps_the_accepted_job_and_sends_nothing_more(klaviyo_home, sb, conn):
    list_id = sb.create_list("Cancelled")
    frame = people(30_000)  # three import jobs of 10,000 profiles
    cancel = threading.Event()

    def cancel_after_first_job(event: ProgressEvent) -> None:
        if event.stage == "sending":  # a worker thread reports the first accepted job: cancel, as a button would
            cancel.set()

    with pytest.raises(ExportInterrupted) as caught:
        export_segment(
            frame,
            email="email",
            list_id=list_id,
            connection=conn,
            concurrency=1,  # one job at a time, so exactly one was under way when the cancel came
            progress=cancel_after_first_job,
            cancel=cancel,
        )
    result = caught.value.result
    assert result.interrupted
    assert_accounted(result, frame)
    assert len(result.job_ids) == 1 and len(sb.jobs()) == 1, "no job may be sent after the cancel"
    sent = result.report[result.report["status"] == "sent"]
    assert len(sent) == 10_000 and sent["reason"].str.contains(f"import job {result.job_ids[0]}").all()
    not_sent = result.report[result.report["status"] == "not_sent"]
    assert len(not_sent) == 20_000 and (not_sent["reason"] == "not sent: the export was cancelled").all()
    assert_members_are_sent_rows(sb, list_id, result)

    # Like an interrupted run, a cancelled one resumes without re-sending the job Klaviyo accepted.
    resumed = export_segment(frame, email="email", list_id=list_id, connection=conn, resume=True)
    assert resumed.sent == 30_000 and len(sb.jobs()) == 3
    assert_members_are_sent_rows(sb, list_id, resumed)


def test_cancel_while_waiting_for_jobs_stops_waiting_at_once(klaviyo_home):
    with Sandbox(rate_limits=False, job_delay=10) as sb:  # each job takes 20 s: far longer than the test waits
        list_id = sb.create_list("Cancelled while importing")
        conn = Connection.from_key(KEY, base_url=sb.url)
        cancel = threading.Event()

        def cancel_once_processing(event: ProgressEvent) -> None:
            if event.stage == "processing":
                cancel.set()

        with pytest.raises(ExportInterrupted) as caught:
            export_segment(
                people(100),
                email="email",
                list_id=list_id,
                connection=conn,
                progress=cancel_once_processing,
                cancel=cancel,
            )
        result = caught.value.result
        assert [job["status"] for job in sb.jobs()] == ["queued"], "the export must not wait for Klaviyo"
        assert result.interrupted and result.sent == 100  # accepted by Klaviyo, so counted as sent
        assert result.report["reason"].str.contains("not watched to completion").all()


def test_cancel_set_before_the_run_sends_nothing(sb, conn):
    list_id = sb.create_list("Never")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ExportInterrupted) as caught:
        export_segment(people(10), email="email", list_id=list_id, connection=conn, cancel=cancel)
    assert caught.value.result.not_sent == 10 and sb.jobs() == []
    with pytest.raises(ExportInterrupted) as caught:  # a long preview can be cancelled too (the form's Cancel)
        export_segment(people(10), email="email", list_id=list_id, connection=conn, cancel=cancel, dry_run=True)
    assert (
        caught.value.result is None
        and str(caught.value) == "The dry run was cancelled before it finished; nothing was sent."
    )
