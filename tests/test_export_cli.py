"""`klaviyo-magic export` and `klaviyo-magic run` as real processes against the sandbox: exit codes, --json,
--report, and input files that are missing, unreadable or of the wrong kind."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from klaviyo_magic.cli.parsing import asks_for_json
from klaviyo_magic.export import saved
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_CLI_EXPORT_TEST_abcdef123456"
CLI = str(Path(sys.executable).with_name("klaviyo-magic"))


@pytest.fixture
def env(klaviyo_home, sandbox):
    return {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "KLAVIYO_API_KEY": KEY,
            "KLAVIYO_BASE_URL": sandbox.url}  # fmt: skip


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def good_csv(tmp_path) -> Path:
    path = tmp_path / "vip.csv"
    path.write_text("email,first_name,zip,ltv\nada@example.com,Ada,02139,812.5\nbob@example.com,Bob,10017,640\n")
    return path


def test_all_sent_exits_0_with_json(env, sandbox, good_csv):
    list_id = sandbox.create_list("CLI")
    done = cli(env, "export", "-i", str(good_csv), "--email", "email", "--list", list_id, "-p", "first_name,zip,ltv",
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 0 and outcome["sent"] == 2 and outcome["list_id"] == list_id
    assert len(outcome["job_ids"]) == 1
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com", "bob@example.com"}
    ada = sandbox.find_profile("ada@example.com")
    assert ada["location"]["zip"] == "02139"  # read as text: the leading zero survives
    assert ada["properties"] == {"ltv": 812.5}
    assert KEY not in done.stdout + done.stderr


def test_skipped_rows_exit_1_and_the_report_has_every_row(env, sandbox, tmp_path):
    source = tmp_path / "mixed.csv"
    source.write_text("email\nada@example.com\nnot-an-email\n\nada@example.com\n")
    report = tmp_path / "report.csv"
    done = cli(env, "export", "-i", str(source), "-e", "email", "-l", sandbox.create_list("M"), "--report", str(report))
    assert done.returncode == 1, done.stderr
    assert "Sent 1 of 3 rows" in done.stdout and f"see {report} for the reasons" in done.stdout
    rows = pd.read_csv(report)
    assert list(rows["status"]) == ["sent", "skipped", "duplicate"]


def test_parquet_and_several_inputs(env, sandbox, tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.csv"
    pd.DataFrame({"email": ["p1@example.com", "p2@example.com"]}).to_parquet(first)
    second.write_text("email\np2@example.com\np3@example.com\n")
    list_id = sandbox.create_list("P")
    done = cli(env, "export", "-i", str(first), "-i", str(second), "-e", "email", "-l", list_id, "--json")
    outcome = json.loads(done.stdout)
    assert done.returncode == 0 and outcome["sent"] == 3 and outcome["duplicates"] == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.csv", "does not exist"),
        (lambda tmp: (tmp / "adir.csv").mkdir() or tmp / "adir.csv", "does not exist (or is not a file)"),
        (lambda tmp: (tmp / "junk.parquet").write_bytes(b"not parquet") and tmp / "junk.parquet", "cannot read"),
        (lambda tmp: (tmp / "data.xlsx").write_text("x") and tmp / "data.xlsx", "neither CSV"),
    ],
    ids=["missing", "directory", "corrupt-parquet", "wrong-kind"],
)
def test_bad_input_files_exit_2(env, tmp_path, make, message):
    done = cli(env, "export", "-i", str(make(tmp_path)), "-e", "email", "-l", "Y6nRLr", "--json")
    assert done.returncode == 2
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 2 and message in outcome["error"]


def test_usage_mistakes_exit_2(env, good_csv):
    assert cli(env, "export", "-i", str(good_csv), "-l", "Y6nRLr").returncode == 2  # no --email (argparse)
    done = cli(env, "export", "-i", str(good_csv), "-e", "mail", "-l", "Y6nRLr")
    assert done.returncode == 2 and "Did you mean 'email'" in done.stderr
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", "-c", "nope")
    assert done.returncode == 2 and "nope" in done.stderr


EXPORT_USAGE = "klaviyo-magic export [-h] --input FILE --email EMAIL --list LIST_ID"


@pytest.mark.parametrize(
    ("args", "error", "usage"),
    [
        (("export", "-i", "IN", "-l", "Y6nRLr"), "the following arguments are required: --email/-e", EXPORT_USAGE),
        (("export", "-i", "IN", "-e", "email", "-l", "Y6nRLr", "--frobnicate"), "unrecognized arguments: --frobnicate",
         EXPORT_USAGE),
        (("export", "-i", "IN", "-e", "email", "-l"), "argument --list/-l: expected one argument", EXPORT_USAGE),
        (("export", "-i", "IN", "-e", "email", "-l", "Y6nRLr", "--json=yes"),
         "argument --json: ignored explicit argument 'yes'", EXPORT_USAGE),
        (("run", "--js"), "the following arguments are required: name", "klaviyo-magic run [-h] [--input"),
    ],
    ids=["missing-option", "unknown-option", "missing-value", "value-for-a-flag", "run-abbreviated-json"],
)  # fmt: skip
def test_usage_errors_are_one_json_object_with_json(env, good_csv, args, error, usage):
    args = tuple(str(good_csv) if arg == "IN" else arg for arg in args)
    done = cli(env, *args, *([] if any(a.startswith("--js") for a in args) else ["--json"]))
    assert (done.returncode, done.stderr) == (2, "")
    assert len(done.stdout.splitlines()) == 1
    outcome = json.loads(done.stdout)
    assert outcome.keys() == {"exit_code", "error", "usage"}
    assert outcome["exit_code"] == 2 and outcome["error"] == error
    assert outcome["usage"].startswith(usage)


def test_usage_errors_without_json_are_argparse_text_on_stderr(env, good_csv):
    done = cli(env, "export", "-i", str(good_csv), "-l", "Y6nRLr")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("usage: klaviyo-magic export [-h] --input FILE")
    assert done.stderr.endswith("klaviyo-magic export: error: the following arguments are required: --email/-e\n")
    done = cli(env, "run", "weekly", "-i", str(good_csv), "--", "--json")  # after --, only a stray value
    assert (done.returncode, done.stdout) == (2, "")
    assert "klaviyo-magic run: error: unrecognized arguments:" in done.stderr  # ("-- --json" on Python 3.11)


@pytest.mark.parametrize("json_flag", [["--json"], []], ids=["json", "text"])
def test_usage_errors_never_echo_a_key(env, good_csv, json_flag):
    for args in (
        ("export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", "--api-key", KEY),
        ("export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", KEY),
        ("export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", f"--api-key={KEY}"),
        ("run", "weekly", KEY, "-i", str(good_csv)),
        (KEY,),
    ):
        done = cli(env, *args, *json_flag)
        assert done.returncode == 2, args
        assert KEY not in done.stdout + done.stderr and "pk_****3456" in done.stdout + done.stderr, args
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", "--api-key", KEY, *json_flag)
    if json_flag:
        assert json.loads(done.stdout)["error"] == "unrecognized arguments: --api-key pk_****3456"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["-i", "a.csv", "--json"], True),
        (["--js"], True),
        (["--json=1"], True),
        (["-i", "--json.csv"], False),
        (["-i", "a.csv"], False),
        (["--", "--json"], False),
        (["--jsonx"], False),
    ],
)
def test_asks_for_json_reads_options_as_argparse_does(words, expected):
    assert asks_for_json(words) is expected


def test_klaviyo_errors_exit_3(env, good_csv):
    with Sandbox(rate_limits=False, api_keys=["pk_some_other_key"]) as strict:
        list_id = strict.create_list("Strict")
        done = cli({**env, "KLAVIYO_BASE_URL": strict.url}, "export", "-i", str(good_csv), "-e", "email",
                   "-l", list_id, "--json")  # fmt: skip
    assert done.returncode == 3
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 3 and outcome["error"].startswith("401 from Klaviyo") and outcome["not_sent"] == 2
    assert "Check the key in $KLAVIYO_API_KEY" in outcome["error"]  # not a connection the user never made
    assert KEY not in done.stdout + done.stderr


def test_dry_run_sends_nothing(env, sandbox, good_csv):
    list_id = sandbox.create_list("Dry")
    sandbox.clear_log()
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", list_id, "--dry-run", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["would_send"] == 2
    assert {r.method for r in sandbox.requests} == {"GET"}  # the key and the list are checked, nothing written
    sandbox.clear_log()
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", "--dry-run", "--offline", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["would_send"] == 2
    assert sandbox.requests == []
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr", "--dry-run", "--json")
    assert done.returncode == 3 and "List 'Y6nRLr' was not found" in json.loads(done.stdout)["error"]


def test_run_a_saved_export(env, sandbox, good_csv, tmp_path):
    list_id = sandbox.create_list("Saved")
    lapsed = tmp_path / "lapsed.csv"
    lapsed.write_text("email,first_name,zip,ltv\ncy@example.com,Cy,75001,1\n")
    saved.save(saved.SavedExport(name="weekly", segments=("vip", "lapsed"), email="email", list_id=list_id))
    done = cli(env, "run", "weekly", "-i", f"lapsed={lapsed}", "-i", f"vip={good_csv}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 3
    assert saved.history("weekly").loc[0, "sent"] == 3
    done = cli(env, "run", "weekly", "-i", str(good_csv))
    assert done.returncode == 2 and "uses 2 DataFrame(s) (vip, lapsed) but 1 --input" in done.stderr
    done = cli(env, "run", "weekly", "-i", f"vip={good_csv}", "-i", f"other={lapsed}")
    assert done.returncode == 2 and "unknown: other; missing: lapsed" in done.stderr
    assert cli(env, "run", "weeky", "-i", str(good_csv)).returncode == 2


def test_saved_mirror_export_runs_on_its_files_and_the_history_shows_each_run(env, sandbox, tmp_path):
    """The cron user's loop without a notebook: save once (files, mirror, a limit), run, change the file, run
    again, then read what each run did."""
    list_id = sandbox.create_list("Weekly")
    members = tmp_path / "churn_risk.csv"
    members.write_text("email,plan\n" + "".join(f"m{i}@example.com,gold\n" for i in range(10)))
    done = cli(env, "export", "-i", str(members), "-e", "email", "-l", list_id, "-p", "plan", "--mirror",
               "--max-removals", "5", "--save", "weekly")  # fmt: skip
    assert done.returncode == 0 and "Not run; run it with klaviyo-magic run weekly" in done.stdout
    assert cli(env, "run", "weekly", "--json").returncode == 0
    members.write_text("email,plan\n" + "".join(f"m{i}@example.com,gold\n" for i in range(3, 12)))
    second = cli(env, "run", "weekly", "--json")
    assert second.returncode == 0, second.stderr
    outcome = json.loads(second.stdout)
    assert (outcome["added"], outcome["unchanged"], outcome["removed"], outcome["mode"]) == (2, 7, 3, "mirror")
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {f"m{i}@example.com" for i in range(3, 12)}
    full = json.loads(cli(env, "run", "weekly", "--full", "--json").stdout)
    assert (full["sent"], full["unchanged"], full["removed"]) == (9, 0, 0)

    listed = cli(env, "saved")
    assert listed.returncode == 0 and "weekly" in listed.stdout and f"churn_risk ({members})" in listed.stdout
    (entry,) = json.loads(cli(env, "saved", "--json").stdout)
    assert (entry["name"], entry["mode"], entry["max_removals"], entry["list_id"]) == ("weekly", "mirror", 5, list_id)

    shown = cli(env, "history", "weekly")
    assert shown.returncode == 0
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["started_at", "export", "outcome", "mode", "sent", "added", "updated", "unchanged",
                              "removed", "skipped", "duplicates", "not_sent", "failed", "dry_run"]  # fmt: skip
    assert len(rows) == 3 and rows[1].split()[1:9] == ["weekly", "ok", "mirror", "2", "2", "0", "7", "3"]
    runs = json.loads(cli(env, "history", "weekly", "--last", "2", "--json").stdout)
    assert [(r["sent"], r["removed"]) for r in runs] == [(9, 0), (2, 3)]  # newest first
    assert cli(env, "history", "weekly", "--last", "-1").returncode == 2
    unknown = cli(env, "history", "weekly-vip")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "klaviyo-magic: no saved export named 'weekly-vip'. Did you mean 'weekly'?"
    saved.delete("weekly")  # its runs stay in the history, and are still shown
    assert len(json.loads(cli(env, "history", "weekly", "--json").stdout)) == 3


def test_a_saved_mirror_export_runs_once_without_removing(env, sandbox, tmp_path):
    list_id = sandbox.create_list("Add only")
    rows = tmp_path / "rows.csv"
    rows.write_text("email\n" + "".join(f"m{i}@example.com\n" for i in range(10)))
    saved.save(saved.SavedExport(name="weekly", segments=("rows",), email="email", list_id=list_id, mode="mirror",
                                 files={"rows": str(rows)}))  # fmt: skip
    assert cli(env, "run", "weekly").returncode == 0
    rows.write_text("email\n" + "".join(f"m{i}@example.com\n" for i in range(5)))
    once = json.loads(cli(env, "run", "weekly", "--no-mirror", "--json").stdout)
    assert (once["mode"], once["unchanged"], once["removed"]) == ("add", 5, 0)
    sandbox.wait_for_jobs()
    assert len(sandbox.member_emails(list_id)) == 10  # nobody removed this once
    again = json.loads(cli(env, "run", "weekly", "--json").stdout)  # the saved mode again
    assert (again["mode"], again["removed"]) == ("mirror", 5)
    both = cli(env, "run", "weekly", "--mirror", "--no-mirror")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    limit = cli(env, "run", "weekly", "--no-mirror", "--max-removals", "5")
    assert limit.returncode == 2 and "--max-removals goes with --mirror: with --no-mirror nobody is removed" in (
        limit.stderr
    )


def test_without_saved_exports_saved_and_history_say_how_to_make_one(env):
    assert "Save one: klaviyo-magic export -i FILE" in cli(env, "saved").stdout
    assert "No runs of any saved export yet. Run one: klaviyo-magic run NAME" in cli(env, "history").stdout


def test_every_option_is_documented_in_help(env):
    for command in ("export", "run"):
        done = cli(env, command, "--help")
        assert done.returncode == 0
        for option in ("--input", "--dry-run", "--json", "--report", "--no-progress"):
            assert option in done.stdout


@pytest.mark.parametrize("json_flag", [["--json"], []], ids=["json", "text"])
def test_a_mistyped_option_is_reported_before_the_required_one_it_left_out(env, good_csv, json_flag):
    """``--emial email`` is why --email is missing: the error names the typo and the option meant, not only
    "the following arguments are required: --email/-e"."""

    def error_of(*args: str) -> str:
        done = cli(env, "export", "-i", str(good_csv), *args, *json_flag)
        assert done.returncode == 2, done
        if json_flag:
            assert done.stderr == "" and len(done.stdout.splitlines()) == 1
            return json.loads(done.stdout)["error"]
        assert done.stdout == "" and done.stderr.startswith("usage: klaviyo-magic export")
        return done.stderr.splitlines()[-1].removeprefix("klaviyo-magic export: error: ")

    assert error_of("--emial", "email", "-l", "Y6nRLr") == "unrecognized arguments: --emial (did you mean --email?)"
    assert error_of("--emial=email", "-l", "Y6nRLr") == "unrecognized arguments: --emial=email (did you mean --email?)"
    assert error_of("--emial", "email") == (
        "unrecognized arguments: --emial (did you mean --email?); the following arguments are required: --list/-l"
    )
    assert error_of("-e", "email", "-l", "Y6nRLr", "--propeties", "zip") == (
        "unrecognized arguments: --propeties zip (did you mean --properties?)"
    )
    assert error_of("--frobnicate") == (  # nothing close: no guess, and what is missing is still said
        "unrecognized arguments: --frobnicate; the following arguments are required: --email/-e, --list/-l"
    )
    # Nothing mistyped: argparse's own words, as before.
    assert error_of("-l", "Y6nRLr") == "the following arguments are required: --email/-e"


def test_mistyped_commands_get_a_did_you_mean(env, good_csv):
    for args, meant in (
        (("exprot", "-i", str(good_csv), "-e", "email", "-l", "Y6nRLr"), "'export'"),
        (("conection", "list"), "'connection'"),
        (("connection", "tset"), "'test'"),
        (("connection", "lst"), "'list'"),
        (("connection", "list", "--jsn"), "--json"),
        (("run", "weekly", "--dry-rn"), "--dry-run"),
    ):
        done = cli(env, *args)
        assert (done.returncode, done.stdout) == (2, ""), args
        last = done.stderr.splitlines()[-1]
        assert last.endswith(f"(did you mean {meant}?)"), (args, last)


@pytest.mark.parametrize(
    "properties", [["--properties", "first_name, zip"], ["-p", "first_name,", "zip"], ["-p", "first_name", ",zip"]],
    ids=["quoted", "split-after-comma", "split-before-comma"],
)  # fmt: skip
def test_properties_with_a_space_after_the_comma(env, sandbox, good_csv, properties):
    list_id = sandbox.create_list("Spaces")
    done = cli(env, "export", "-i", str(good_csv), "-e", "email", "-l", list_id, *properties, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["sent"] == 2
    sandbox.wait_for_jobs()
    ada = sandbox.find_profile("ada@example.com")
    assert (ada["first_name"], ada["location"]["zip"]) == ("Ada", "02139")
    assert ada["properties"] == {}  # "zip", not " zip": Klaviyo's field, not a custom property


def test_a_saved_export_of_a_file_variable_runs_from_the_cli(
    ipython_shell, sandbox, klaviyo_home, tmp_path, monkeypatch
):
    """A notebook that names its segment by file (``vip = Path("vip.parquet")``) saves the file with the export,
    so that the cron job, with no notebook, reads the same file."""
    from pathlib import Path

    monkeypatch.setenv("SB_KEY", KEY)
    ipython_shell.run_cell(
        f"%klaviyo_connection add sb --api-key-env SB_KEY --base-url {sandbox.url} --accept-privacy-terms"
    )
    list_id = sandbox.create_list("From a file")
    pd.DataFrame({"email": ["ada@example.com", "bob@example.com"], "plan": ["gold", "free"]}).to_parquet(
        tmp_path / "vip.parquet"
    )
    monkeypatch.chdir(tmp_path)
    ipython_shell.user_ns["vip"] = Path("vip.parquet")  # relative: saved absolute, for a cron job started elsewhere
    try:
        ipython_shell.run_cell(f"%klaviyo_export vip --email email --list {list_id} -c sb -p plan --save weekly")
    finally:
        del ipython_shell.user_ns["vip"]
    assert saved.get("weekly").files == {"vip": str(tmp_path / "vip.parquet")}
    env = {**os.environ, "KLAVIYO_MAGIC_HOME": str(klaviyo_home), "SB_KEY": KEY}
    done = subprocess.run([CLI, "run", "weekly", "--json"], env=env, cwd="/", capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 2
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == {"ada@example.com", "bob@example.com"}


def test_a_stopped_run_gives_scripts_the_line_that_continues_it(env, sandbox, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(25_000)))
    list_id = sandbox.create_list("Stopped")
    sandbox.fail_next("POST /api/profile-bulk-import-jobs", count=5, status=403, after=1)  # after the first job
    words = ["export", "-i", str(rows), "-e", "email", "-l", list_id, "--json"]
    done = cli(env, *words)
    outcome = json.loads(done.stdout)
    assert done.returncode == 3 and outcome["sent"] == 10_000 and outcome["not_sent"] == 15_000
    assert outcome["resume"] == "klaviyo-magic " + shlex.join(words) + " --resume"
    sandbox.reset_faults()  # whatever refused the key was fixed
    resumed = json.loads(subprocess.run(outcome["resume"].replace("klaviyo-magic", shlex.quote(CLI), 1), shell=True,
                                        env=env, capture_output=True, text=True, timeout=120).stdout)  # fmt: skip
    assert resumed["exit_code"] == 0 and resumed["sent"] == 25_000 and "resume" not in resumed


def test_help_lists_every_exit_code(env):
    for command in ([], ["export"], ["run"]):
        done = cli(env, *command, "--help")
        assert done.returncode == 0
        text = " ".join(done.stdout.split())  # argparse wraps the text to the terminal's width
        assert "exit 0 all sent, 1 some rows not sent, 2 usage error, 3 Klaviyo or network error, 130 interrupted" in (
            text
        ), command
