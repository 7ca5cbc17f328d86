"""Smoke test of benchmarks/export_1m.py: it runs end to end at a small size and prints what it promises.

The script starts its own sandboxes (Klaviyo's rate limits on) and worker processes, exactly as in a full
run; only the sizes are small. No timing is asserted: a shared CI machine says nothing about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "export_1m.py"

pytest.importorskip("klaviyo_api")
pytest.importorskip("psutil")


def run_benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240, check=False
    )


def test_benchmark_runs_both_contenders_and_prints_the_ratio():
    done = run_benchmark("--rows", "20000", "--small-rows", "10000", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "rate limits: klaviyo" in out
    table = [
        line
        for line in out.splitlines()
        if line.startswith(("klaviyo-magic ", "klaviyo-api SDK ")) and "benchmark:" not in line
    ]
    assert len(table) == 3 and all(line.endswith("ok") for line in table), out
    assert "ratio SDK/klaviyo-magic (wall time, 20,000 profiles):" in out
    assert "extra memory 10,000 -> 20,000 profiles" in out

    report = json.loads(out.strip().splitlines()[-1])
    runs = {(run["contender"], run["rows"]): run for run in report["runs"]}
    assert set(runs) == {("klaviyo-magic", 20000), ("klaviyo-magic", 10000), ("klaviyo-api SDK", 20000)}
    for (_, rows), run in runs.items():
        assert run["ok"] and run["error"] is None
        assert run["list_members"] == rows  # read back from the sandbox over the API
        assert run["wall_s"] > 0 and run["peak_extra_mb"] is not None
        assert run["jobs"] == rows // 10_000
    assert runs[("klaviyo-magic", 20000)]["throttled"] == 0  # paced under the limits, not bounced off them
    assert report["ratio"] == pytest.approx(
        runs[("klaviyo-api SDK", 20000)]["wall_s"] / runs[("klaviyo-magic", 20000)]["wall_s"]
    )


def test_benchmark_can_skip_the_sdk():
    done = run_benchmark("--rows", "5000", "--small-rows", "0", "--skip-sdk")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klaviyo-api SDK" not in done.stdout
    assert "ratio" not in done.stdout
    assert any(line.startswith("klaviyo-magic ") and line.endswith(" ok") for line in done.stdout.splitlines())


def test_sync_benchmark_runs_and_checks_the_list_is_exact():
    """benchmarks/sync_1m.py at a small size: three runs, their requests counted, and the list checked exact."""
    script = SCRIPT.with_name("sync_1m.py")
    done = subprocess.run([sys.executable, str(script), "--rows", "20000", "--pause", "0", "--json"],
                          capture_output=True, text=True, timeout=240, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "list exact after every run: True (members counted; leavers still members after the re-runs: 0 and 0" in out
    first, rerun, full = (json.loads(line) for line in out.strip().splitlines()[-3:])
    assert (first["sent"], first["list_members"], first["import_jobs"]) == (20_000, 20_000, 2)
    assert (rerun["sent"], rerun["unchanged"], rerun["removed"], rerun["list_members"]) == (200, 19_600, 200, 19_800)
    # Member reads: each run's one of the list's newest member, and the re-run's lookups of its 200 leavers.
    assert (rerun["import_jobs"], rerun["member_reads"], rerun["removal_calls"]) == (1, 1 + 2, 1)
    assert (full["sent"], full["removed"], full["import_jobs"], full["member_reads"]) == (19_800, 0, 2, 1)
    assert "bytes a member" in out and "re-run vs full re-send:" in out


def test_inputs_benchmark_runs_and_reports_floor_and_memory():
    """benchmarks/inputs_5m.py at a small size, Polars only (Spark's start alone would take most of a minute)."""
    script = SCRIPT.with_name("inputs_5m.py")
    done = subprocess.run([sys.executable, str(script), "--rows", "40000", "--small-rows", "20000", "--only", "polars",
                           "--json"], capture_output=True, text=True, timeout=240, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["kind"], r["rows"]) for r in runs] == [("polars", 20_000), ("polars", 40_000)]
    for run in runs:
        assert run["ok"] and run["sent"] == run["list_members"] == run["rows"] and run["jobs"] == run["rows"] // 10_000
        assert run["floor_s"] > 0 and run["peak_extra_mb"] is not None and run["reading_alone_mb"] is not None
    assert "polars: peak memory growth 20,000 -> 40,000 rows:" in done.stdout
    assert "the export beyond that:" in done.stdout
