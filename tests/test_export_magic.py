"""%klaviyo_export in a real IPython shell against the sandbox: arguments, saved exports, errors, `_`."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from klaviyo_magic.errors import AuthenticationError
from klaviyo_magic.magic import KlaviyoMagic, export
from klaviyo_magic.result import ExportResult
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_MAGICEXPORT_secret_4f3e2d1c0b"


@pytest.fixture
def shell(ipython_shell, sandbox, monkeypatch):
    monkeypatch.setenv("SB_KEY", KEY)
    ipython_shell.run_cell(
        f"%klaviyo_connection add sb --api-key-env SB_KEY --base-url {sandbox.url} --accept-privacy-terms"
    )
    ipython_shell.run_cell("%klaviyo_connection default sb")
    ns = ipython_shell.user_ns
    ns["vip"] = pd.DataFrame(
        {
            "email": ["ada@example.com", "bob@example.com", "bad-email", "cy@example.com"],
            "first_name": ["Ada", "Bob", "Bad", "Cy"],
            "plan": ["gold", "gold", "free", "platinum"],
        },
        index=["a", "b", "c", "d"],
    )
    ns["lapsed"] = pd.DataFrame(
        {"email": ["BOB@example.com", "dee@example.com"], "first_name": ["Bob", None], "plan": ["free", "basic"]}
    )
    ns["not_a_frame"] = [1, 2, 3]
    yield ipython_shell
    for name in ("vip", "lapsed", "not_a_frame", "result", "_klaviyo_result"):
        ns.pop(name, None)
    ipython_shell.run_line_magic("config", "KlaviyoMagic.max_profiles = 1000000")
    ipython_shell.run_line_magic("config", "KlaviyoMagic.show_tracebacks = False")
    ipython_shell.run_line_magic("config", "KlaviyoMagic.default_connection = ''")


def run(shell, line: str):
    shell.run_cell(line, store_history=True)
    return shell.user_ns.get("_")


def usage_error(shell, line: str) -> str:
    with pytest.raises(UsageError) as caught:
        shell.run_cell(line)
    message = str(caught.value)
    assert "\n" not in message, "user mistakes are one line"
    return message


def test_export_returns_the_result_and_sets_underscore(shell, sandbox):
    list_id = sandbox.create_list("VIP")
    result = run(
        shell, f"%klaviyo_export vip lapsed --email email --list {list_id} --properties first_name,plan --no-progress"
    )
    assert isinstance(result, ExportResult)
    assert (result.sent, result.skipped, result.duplicates) == (4, 1, 1)
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}
    assert sandbox.find_profile("ada@example.com")["first_name"] == "Ada"
    assert sandbox.find_profile("dee@example.com")["properties"] == {"plan": "basic"}
    shell.run_cell(f"result = %klaviyo_export vip --email email --list {list_id} --no-progress")
    assert isinstance(shell.user_ns["result"], ExportResult)


def test_properties_mapping_and_named_connection(shell, sandbox):
    list_id = sandbox.create_list("Mapped")
    run(shell, f"%klaviyo_export vip --email email --list {list_id} -c sb -p 'plan=tier,first_name' --no-progress")
    sandbox.wait_for_jobs()
    profile = sandbox.find_profile("cy@example.com")
    assert profile["properties"] == {"tier": "platinum"} and profile["first_name"] == "Cy"


def test_dry_run_sends_nothing(shell, sandbox):
    list_id = sandbox.create_list("Dry")
    sandbox.clear_log()
    result = run(shell, f"%klaviyo_export vip --email email --list {list_id} --dry-run --no-progress")
    assert result.dry_run and result.would_send == 3
    # Read-only: is the key good, does the list exist? Nothing is written.
    assert [(r.method, r.operation) for r in sandbox.requests] == [("GET", "get_accounts"), ("GET", "get_list")]
    assert f"list 'Dry' ({list_id}) exists" in result.checked
    sandbox.clear_log()
    result = run(shell, f"%klaviyo_export vip --email email --list {list_id} --dry-run --offline --no-progress")
    assert result.would_send == 3 and sandbox.requests == [] and "offline" in result.checked
    assert "--offline only goes with --dry-run" in usage_error(
        shell, f"%klaviyo_export vip --email email --list {list_id} --offline"
    )


def test_save_does_not_run_and_run_records_history(shell, sandbox):
    list_id = sandbox.create_list("Saved")
    sandbox.clear_log()
    with capture_output() as out:
        shell.run_cell(f"%klaviyo_export vip lapsed --email email --list {list_id} -p plan --save weekly")
    assert "Not run" in out.stdout and sandbox.requests == []
    saved = run(shell, "%klaviyo_export --saved")
    assert list(saved["name"]) == ["weekly"] and saved.loc[0, "segments"] == "vip, lapsed"
    result = run(shell, "%klaviyo_export --run weekly --no-progress")
    assert result.sent == 4
    history = run(shell, "%klaviyo_export --history weekly")
    assert len(history) == 1 and history.loc[0, "sent"] == 4 and history.loc[0, "outcome"] == "ok"
    assert history.loc[0, "job_ids"] == result.job_ids
    del shell.user_ns["lapsed"]
    assert "uses the variable 'lapsed', which is not defined here" in usage_error(shell, "%klaviyo_export --run weekly")
    run(shell, "%klaviyo_export --delete weekly")
    assert run(shell, "%klaviyo_export --saved").empty


def test_user_mistakes_are_one_line_usage_errors(shell, sandbox):
    list_id = sandbox.create_list("Errors")
    assert "'vipp' is not defined in this notebook. Did you mean 'vip'?" in usage_error(
        shell, f"%klaviyo_export vipp --email email --list {list_id}"
    )
    assert "is a list, not a DataFrame" in usage_error(
        shell, f"%klaviyo_export not_a_frame --email email --list {list_id}"
    )
    assert "Did you mean 'email'?" in usage_error(shell, f"%klaviyo_export vip --email emial --list {list_id}")
    assert "missing --email" in usage_error(shell, f"%klaviyo_export vip --list {list_id}")
    assert "missing --list" in usage_error(shell, "%klaviyo_export vip --email email")
    assert "prdo" in usage_error(shell, f"%klaviyo_export vip --email email --list {list_id} --connection prdo")
    assert "Did you mean 'plan'" in usage_error(shell, f"%klaviyo_export vip --email email --list {list_id} -p plna")
    assert "unrecognized arguments" in usage_error(shell, f"%klaviyo_export vip --email email --list {list_id} --bogus")
    shell.run_line_magic("config", "KlaviyoMagic.max_profiles = 2")
    assert "max_profiles" in usage_error(shell, f"%klaviyo_export vip --email email --list {list_id}")


def test_missing_consent_says_how_to_accept(shell, sandbox, monkeypatch):
    monkeypatch.setenv("OTHER_KEY", KEY)
    shell.run_cell(f"%klaviyo_connection add noconsent --api-key-env OTHER_KEY --base-url {sandbox.url}")
    message = usage_error(shell, f"%klaviyo_export vip --email email --list {sandbox.create_list('C')} -c noconsent")
    assert "privacy" in message and "accept" in message


def test_klaviyo_errors_are_one_line_and_keep_the_partial_result(shell, sandbox):
    list_id = sandbox.create_list("Broken")
    sandbox.fail_next("POST /api/profile-bulk-import-jobs", count=1, status=403)
    message = usage_error(shell, f"%klaviyo_export vip --email email --list {list_id} --no-progress")
    assert message.startswith("403 from Klaviyo while creating import job 1")
    assert "_klaviyo_result" not in message  # nothing was sent, so no "partial result" to point at...
    assert shell.user_ns["_klaviyo_result"].not_sent == 3  # ...but every row is still accounted for there
    # Nothing was accepted, so there is nothing to continue: the fix is the key, then the same command again.
    assert "--resume" not in message and message.endswith("Check connection 'sb'.")


def test_show_tracebacks_raises_the_original_error(ipython_shell, monkeypatch):
    with Sandbox(rate_limits=False, api_keys=["pk_only_this_one"]) as sb:
        monkeypatch.setenv("WRONG_KEY", KEY)
        ipython_shell.run_cell(
            f"%klaviyo_connection add wrong --api-key-env WRONG_KEY --base-url {sb.url} --accept-privacy-terms"
        )
        ipython_shell.user_ns["vip"] = pd.DataFrame({"email": ["a@example.com"]})
        ipython_shell.run_line_magic("config", "KlaviyoMagic.show_tracebacks = True")
        try:
            with pytest.raises(AuthenticationError):
                ipython_shell.run_cell(f"%klaviyo_export vip --email email --list {sb.create_list('X')} -c wrong")
        finally:
            ipython_shell.run_line_magic("config", "KlaviyoMagic.show_tracebacks = False")
            ipython_shell.user_ns.pop("vip")


def test_default_connection_setting(shell, sandbox, monkeypatch):
    monkeypatch.setenv("SECOND_KEY", KEY)
    shell.run_cell(
        f"%klaviyo_connection add second --api-key-env SECOND_KEY --base-url {sandbox.url} --accept-privacy-terms"
    )
    shell.run_line_magic("config", "KlaviyoMagic.default_connection = 'second'")
    result = run(shell, f"%klaviyo_export vip --email email --list {sandbox.create_list('D')} --no-progress")
    assert result.connection == "second"


def test_no_arguments_in_a_terminal_prints_usage(shell):
    with capture_output() as out:
        shell.run_cell("%klaviyo_export")
    assert out.stdout.startswith("%klaviyo_export DF [DF2 ...] --email COL --list LIST_ID")


def test_help_documents_every_option():
    doc = KlaviyoMagic.klaviyo_export.__doc__
    parser = export.build_parser(export.argparse.ArgumentParser)
    options = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")}
    missing = {opt for opt in options - {"--help"} if not re.search(re.escape(opt) + r"\b", doc)}
    assert not missing, f"options missing from %klaviyo_export? help: {missing}"


def test_the_key_never_shows_in_outputs(shell, sandbox):
    list_id = sandbox.create_list("Leak")
    texts = []
    with capture_output() as out:
        result = run(shell, f"%klaviyo_export vip lapsed --email email --list {list_id} --no-progress")
        sandbox.fail_next("POST /api/profile-bulk-import-jobs", count=1, status=401)
        texts.append(usage_error(shell, f"%klaviyo_export vip --email email --list {list_id} --full --no-progress"))
        texts.append(usage_error(shell, "%klaviyo_export vip --email email --list NOPE99 --no-progress"))
    texts += [
        out.stdout,
        out.stderr,
        repr(result),
        result._repr_html_(),
        result.report.to_csv(),
        repr(result.to_dict()),
    ]
    texts += [repr(r) for r in sandbox.requests]
    assert all(KEY not in text for text in texts)


def test_an_expression_in_braces_is_the_segment(shell, sandbox):
    list_id = sandbox.create_list("Expression")
    shell.user_ns["list_id"] = list_id
    result = run(shell, "%klaviyo_export {vip[vip.plan == 'gold']} --email email --list {list_id} --no-progress")
    assert result.sent == 2 and list(result.report["index"]) == ["a", "b"]
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com", "bob@example.com"}
    two = run(shell, "%klaviyo_export {vip[vip.plan == 'gold']} {lapsed} --email email --list $list_id --dry-run")
    assert two.total_rows == 4 and two.duplicates == 1  # bob in both: the second is a duplicate
    shell.user_ns.pop("list_id")


def test_a_bare_expression_gets_a_one_line_hint(shell, sandbox):
    message = usage_error(shell, "%klaviyo_export vip[vip.plan == 'gold'] --email email --list Y6nRLr")
    assert message.startswith("'vip[vip.plan' is not a variable name. To export an expression, put it in braces:")
    assert "%klaviyo_export {vip[vip.plan == 'gold']} --email ... --list ..." in message
    message = usage_error(shell, "%klaviyo_export {vip[vip.nope > 1]} --email email --list Y6nRLr")
    assert message.startswith("{vip[vip.nope > 1]} could not be evaluated: AttributeError")
    assert "never closed" in usage_error(shell, "%klaviyo_export {vip --email email --list Y6nRLr")
    assert "assign the expression first" in usage_error(
        shell, "%klaviyo_export {vip[vip.plan == 'gold']} --email email --list Y6nRLr --save gold"
    )


def test_mistyped_options_get_a_did_you_mean(shell):
    message = usage_error(shell, "%klaviyo_export vip --emial email --list Y6nRLr")
    assert "unrecognized arguments: --emial email (did you mean --email?)" in message
    assert "--properties" in usage_error(shell, "%klaviyo_export vip --email email --list Y6nRLr --propeties a")


def test_properties_with_a_space_after_the_comma(shell, sandbox):
    list_id = sandbox.create_list("Spaces")
    result = run(shell, f"%klaviyo_export vip --email email --list {list_id} --properties first_name, plan --dry-run")
    assert list(result.sample.columns) == ["email", "first_name", "properties.plan"]


def test_the_row_cap_says_how_to_raise_it_in_each_shell(shell, sandbox):
    message = usage_error(shell, "%klaviyo_export vip --email email --list Y6nRLr --max-profiles 2")
    assert "max_profiles=4 in Python, --max-profiles 4 in %klaviyo_export and klaviyo-magic export" in message
    result = run(shell, f"%klaviyo_export vip --email email --list {sandbox.create_list('Cap')} --max-profiles 4 "
                 "--dry-run")  # fmt: skip
    assert result.would_send == 3


def test_mirror_from_the_magic(shell, sandbox):
    list_id = sandbox.create_list("Mirror")
    run(shell, f"%klaviyo_export vip --email email --list {list_id} --no-progress")
    shell.user_ns["vip"] = shell.user_ns["vip"].iloc[:1]
    result = run(shell, f"%klaviyo_export vip --email email --list {list_id} --mirror --no-progress")
    assert (result.unchanged, result.removed) == (1, 2)
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com"}


def test_an_empty_segment_says_so_in_a_terminal(shell, sandbox):
    list_id = sandbox.create_list("Empty")
    shell.user_ns["nobody"] = pd.DataFrame({"email": pd.Series([], dtype=object)})
    shell.user_ns["all_bad"] = pd.DataFrame({"email": ["bad-email", "also@bad"]})
    try:
        with capture_output() as out:  # progress on: stderr is not a terminal here, so plain lines
            result = run(shell, f"%klaviyo_export nobody --email email --list {list_id}")
        assert result.total_rows == 0
        assert out.stdout.startswith(f"Nothing to send: the segment is empty. List '{list_id}' was not changed.")
        assert out.stderr == "Nothing to send\n"
        with capture_output() as out:
            result = run(shell, f"%klaviyo_export all_bad --email email --list {list_id}")
        assert result.skipped == 2 and out.stderr == "Nothing to send\n"
        assert out.stdout.startswith(f"Nothing to send: none of the 2 rows can be sent to list '{list_id}'.")
        assert "2 skipped: see _klaviyo_result.problems for the reasons." in out.stdout  # a name to type
        with capture_output() as out:
            run(shell, f"%klaviyo_export nobody --email email --list {list_id} --no-progress")
        assert out.stdout.startswith("Nothing to send: the segment is empty.") and out.stderr == ""
    finally:
        shell.user_ns.pop("nobody")
        shell.user_ns.pop("all_bad")


@pytest.mark.parametrize("progress_off", ["--no-progress", "%config KlaviyoMagic.progress = False"])
def test_klaviyo_unreachable_is_said_with_progress_off(shell, monkeypatch, progress_off):
    import io
    import os
    import signal
    import socket
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    shell.run_cell(f"%klaviyo_connection add down --api-key-env SB_KEY --base-url http://127.0.0.1:{port} "
                   "--accept-privacy-terms")  # fmt: skip
    started = time.monotonic()
    arrivals: list[float] = []

    class Stderr(io.StringIO):
        def write(self, text: str) -> int:
            written = super().write(text)
            if text.strip():
                arrivals.append(time.monotonic() - started)
                if len(arrivals) == 1:
                    os.kill(os.getpid(), signal.SIGINT)  # the user, told what is happening, presses Ctrl-C
            return written

    stderr = Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    flag = ""
    if progress_off.startswith("%config"):
        shell.run_line_magic("config", progress_off.removeprefix("%config "))
    else:
        flag = f" {progress_off}"
    try:
        with capture_output(stderr=False) as out:
            result = run(shell, f"%klaviyo_export vip --email email --list Y6nRLr -c down{flag}")
    finally:
        shell.run_line_magic("config", "KlaviyoMagic.progress = True")
    assert arrivals and arrivals[0] < 2.0, "the first word about an unreachable Klaviyo must come within seconds"
    notice = stderr.getvalue().splitlines()[0]
    assert re.fullmatch(r"Klaviyo unreachable while checking the API key; retrying \(2/8\) in under a second", notice)
    assert "\r" not in stderr.getvalue()
    assert result.interrupted and result.not_sent == 3 and "--resume" in out.stdout
    assert all(KEY not in text for text in (stderr.getvalue(), out.stdout, repr(result)))


def test_the_result_names_what_a_magic_user_types(shell, sandbox):
    """In a notebook the result's HTML is its summary: it names ``_klaviyo_result`` (``_`` moves on with the next
    cell) and, for a run that stopped, the magic's own line with --resume, not Python's keyword."""
    list_id = sandbox.create_list("Names")
    line = f"%klaviyo_export vip --email email --list {list_id} --no-progress"
    result = run(shell, line)
    assert shell.user_ns["_klaviyo_result"] is result
    html = result._repr_html_()
    assert "see _klaviyo_result.problems for the reasons" in html and "<code>_klaviyo_result.problems</code>" in html
    assert result.resume_command == f"{line} --resume"  # what a stopped run's summary and HTML would offer


def test_resume_through_another_connection_after_a_failed_first_run(ipython_shell, monkeypatch):
    """A first run refused for its key, then --resume through the connection that works: it just runs (nothing
    was accepted, nothing to continue), and no message names an internal run id. A run stopped after Klaviyo
    accepted a job continues through another connection of the same account, without sending that job again."""
    good, other = "pk_good_key_0123456789abcdef", "pk_other_key_0123456789abcdef"
    with Sandbox(rate_limits=False, api_keys=[good, other]) as sb:
        for name, key in (("wrong", "pk_wrong_key_0123456789abcdef"), ("right", good), ("second", other)):
            monkeypatch.setenv(f"{name.upper()}_KEY", key)
            ipython_shell.run_cell(f"%klaviyo_connection add {name} --api-key-env {name.upper()}_KEY "
                                   f"--base-url {sb.url} --accept-privacy-terms")  # fmt: skip
        frame = pd.DataFrame({"email": [f"p{i}@example.com" for i in range(25_000)]})
        ipython_shell.user_ns["many"] = frame
        list_id = sb.create_list("Moved")
        line = f"%klaviyo_export many --email email --list {list_id} --no-progress"
        with pytest.raises(UsageError) as refused:
            ipython_shell.run_cell(f"{line} -c wrong")
        assert "401" in str(refused.value) or "refused" in str(refused.value).lower()
        with capture_output() as out:
            result = run(ipython_shell, f"{line} -c right --resume")
        assert result.sent == 25_000 and result.ok
        assert not re.search(r"\b\d{8}T\d{6}", out.stdout + out.stderr)  # no run id anywhere

        again = sb.create_list("Moved again")
        line = f"%klaviyo_export many --email email --list {again} --no-progress"
        sb.fail_next("POST /api/profile-bulk-import-jobs", count=50, status=403, after=1)  # after the first job
        with pytest.raises(UsageError):
            ipython_shell.run_cell(f"{line} -c right")
        jobs = len(sb.jobs())
        sb.reset_faults()
        with capture_output() as out:
            resumed = run(ipython_shell, f"{line} -c second --resume")
        assert resumed.sent == 25_000 and len(sb.jobs()) - jobs == 2  # the accepted job was not sent again
        assert not re.search(r"\b\d{8}T\d{6}", out.stdout + out.stderr)
        sb.wait_for_jobs()
        assert sb.member_emails(again) == set(frame["email"])
        del ipython_shell.user_ns["many"]
