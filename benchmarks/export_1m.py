"""Benchmark: export 1,000,000 generated profiles to a rate-limited sandbox, side by side with the official SDK.

    .venv/bin/python benchmarks/export_1m.py              # 1M and 250k with klaviyo-magic, 1M with the SDK
    .venv/bin/python benchmarks/export_1m.py --rows 20000 --small-rows 0 --json

Every contender gets a fresh sandbox in its own process (``python -m klaviyo_magic.sandbox --rate-limits
klaviyo``: Klaviyo's 10/s and 150/min on bulk import, 10,000 profiles and 5 MB per request), and runs in its
own worker process, so neither the sandbox's state and rate windows nor the memory of one run leak into the
next. The worker builds the DataFrame (email, first and last name, three custom properties), records its RSS,
then times the export while a thread samples RSS every 20 ms. Afterwards the parent asks the sandbox, over
the API, how many members the list has: it must be exactly the number of rows.

Contenders:

- ``klaviyo-magic``: ``export_segment(df, email="email", list_id=..., connection=Connection.from_key(...),
  properties=[...], progress=False)``; it returns once every import job is complete.
- ``klaviyo-api SDK``: the plain script its docs suggest, ``KlaviyoAPI(key, test_host=url, max_delay=60,
  max_retries=7)``; for each 10,000-row chunk, ``df.to_dict("records")`` with NaN dropped becomes the bulk
  import body, ``Profiles.bulk_import_profiles(body)`` submits it, and ``get_bulk_import_profiles_job`` is
  polled every ``--sdk-poll`` seconds until the job is complete, one job after another.

See docs/benchmarks.md for the figures and what bounds them.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

KEY = "pk_benchmark_0123456789abcdef"  # made up: the sandbox accepts any pk_ key
REVISION = "2026-10-15"
PROPERTIES = ["first_name", "last_name", "plan", "ltv", "orders"]  # names + three custom properties
SDK_CHUNK = 10_000
OURS = "klaviyo-magic"
_CPU_CHECK_QUIET_MS = 65.0  # cpu_check() on the 2-core development machine at its usual speed
SDK = "klaviyo-api SDK"


@dataclass
class Run:
    contender: str
    rows: int
    wall_s: float | None = None
    profiles_per_s: float | None = None
    baseline_rss_mb: float | None = None  # after the DataFrame exists, before the export
    peak_extra_mb: float | None = None  # peak RSS during the export minus the baseline
    peak_source: str | None = None  # how the peak was measured
    dataframe_mb: float | None = None  # pandas' deep memory_usage of the DataFrame
    cpu_s: float | None = None  # CPU time of the exporting process during the export
    sandbox_cpu_s: float | None = None  # CPU time of the sandbox process over its whole life
    jobs: int | None = None
    retries: int | None = None  # requests our client retried (of which 429s: throttled); not known for the SDK
    throttled: int | None = None
    list_members: int | None = None  # profile_count of the list afterwards, read over the API
    ok: bool = False
    error: str | None = None


# -- the data ---------------------------------------------------------------------------------------------


def make_frame(rows: int):
    """``rows`` distinct customers: email, first_name, last_name and the custom properties plan, ltv, orders."""
    from klaviyo_magic import samples

    frame = samples.customers(rows, messy=False)[["email", *PROPERTIES]].copy()
    gc.collect()
    return frame


# -- memory -----------------------------------------------------------------------------------------------


class PeakRSS:
    """The peak RSS of this process while the ``with`` block runs.

    On Linux the kernel's own high-water mark (``VmHWM``) is reset on entry (``/proc/self/clear_refs``) and
    read on exit, which catches even millisecond-long peaks; elsewhere a thread samples RSS every
    ``interval`` seconds. ``exact`` says which one ``peak`` comes from.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.exact = False
        self.peak = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        return self._process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.rss())

    @staticmethod
    def _high_water_mark() -> int | None:
        try:
            with open("/proc/self/status") as status:
                match = re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.M)
            return int(match[1]) * 1024 if match else None
        except OSError:
            return None

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current RSS
            self.exact = self._high_water_mark() is not None
        except OSError:
            self.exact = False
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        if self.exact:
            self.peak = max(self.peak, self._high_water_mark() or 0)


# -- the contenders (run inside a worker process) ----------------------------------------------------------


def export_ours(frame, url: str, list_id: str, trace_to=None) -> dict[str, Any]:
    from klaviyo_magic import export_segment
    from klaviyo_magic.connections import Connection

    connection = Connection.from_key(KEY, base_url=url)
    retries = _RetryCounter()
    logging.getLogger("klaviyo_magic.client").addHandler(retries)
    logging.getLogger("klaviyo_magic.client").setLevel(logging.INFO)
    timeline: list[tuple[float, str, int, int]] = []
    started = time.perf_counter()

    def trace(event) -> None:
        timeline.append((time.perf_counter() - started, event.stage, event.done, event.jobs))

    result = export_segment(
        frame,
        email="email",
        list_id=list_id,
        connection=connection,
        properties=PROPERTIES,
        progress=trace if trace_to else False,
    )
    if trace_to:
        for when, stage, done, jobs in timeline:
            if stage != "sending" or jobs % 10 == 0:
                print(f"{when:7.2f}s {stage:<10} {done:>9,} profiles, {jobs} jobs", file=trace_to)
    counts = {"sent": result.sent, "skipped": result.skipped, "failed": result.failed}
    if result.sent != len(frame):
        raise RuntimeError(f"klaviyo-magic reported {counts}, expected {len(frame):,} sent")
    return {"jobs": len(result.job_ids), "retries": retries.count, "throttled": retries.throttled}


class _RetryCounter(logging.Handler):
    """Counts the retries our client logs ("... answered 429; retrying in ..."), 429s separately."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = self.throttled = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying" in message:
            self.count += 1
            self.throttled += " 429;" in message


def export_sdk(frame, url: str, list_id: str, poll: float) -> dict[str, Any]:
    """What a user of the official SDK writes: chunk, build the body from dicts, submit, poll, repeat."""
    import math

    from klaviyo_api import KlaviyoAPI

    klaviyo = KlaviyoAPI(KEY, test_host=url, max_delay=60, max_retries=7)
    custom = [column for column in PROPERTIES if column not in ("first_name", "last_name")]
    jobs = 0
    for start in range(0, len(frame), SDK_CHUNK):
        profiles = []
        for record in frame.iloc[start : start + SDK_CHUNK].to_dict("records"):
            record = {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
            attributes = {k: record[k] for k in ("email", "first_name", "last_name") if k in record}
            attributes["properties"] = {k: record[k] for k in custom if k in record}
            profiles.append({"type": "profile", "attributes": attributes})
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": profiles}},
                "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
            }
        }
        job = klaviyo.Profiles.bulk_import_profiles(body)
        job_id = job.data.id
        while True:
            status = klaviyo.Profiles.get_bulk_import_profiles_job(job_id).data.attributes.status
            if status == "complete":
                break
            if status in ("cancelled", "failed"):
                raise RuntimeError(f"SDK import job {job_id} ended as {status!r}")
            time.sleep(poll)
        jobs += 1
    return {"jobs": jobs}


def measure(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``work`` returns, with ``ok`` (or the ``error`` it raised, in one line: reported, not hidden), its
    wall time, the CPU time of this process, and the peak RSS above the RSS just before it."""
    import psutil

    process = psutil.Process()
    out: dict[str, Any] = {}
    with PeakRSS() as sampler:
        baseline = sampler.rss()
        cpu = process.cpu_times()
        started = time.perf_counter()
        try:
            out.update({"ok": True, **work()})  # unless the work says otherwise
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        wall = time.perf_counter() - started
        cpu_after = process.cpu_times()
    out.update(
        wall_s=wall,
        cpu_s=(cpu_after.user - cpu.user) + (cpu_after.system - cpu.system),
        baseline_rss_mb=baseline / 1e6,
        peak_extra_mb=(sampler.peak - baseline) / 1e6,
        peak_source="kernel high-water mark" if sampler.exact else "RSS sampled every 20 ms",
    )
    return out


def worker(args: argparse.Namespace) -> int:
    """Runs one contender against the sandbox at ``args.url``; prints one JSON line with the measurements."""
    frame = make_frame(args.rows)
    dataframe_mb = frame.memory_usage(deep=True).sum() / 1e6
    gc.collect()

    def export() -> dict[str, Any]:
        if args.worker == OURS:
            return export_ours(frame, args.url, args.list_id, sys.stderr if args.trace else None)
        return export_sdk(frame, args.url, args.list_id, args.sdk_poll)

    out: dict[str, Any] = {"dataframe_mb": dataframe_mb, **measure(export)}
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(json.dumps(out), flush=True)
    return 0


def cpu_check(jobs: int = 10) -> float:
    """Milliseconds per 10,000-profile import job of the sandbox's own work, done in this process without
    HTTP: parse the body, validate it, upsert the profiles into a fresh store and add them to a list (median
    of ``jobs``). It is the work that bounds a million-profile run on a 2-core machine, and a yardstick of how
    fast this machine does it right now: on a virtual machine whose host is busy it can take a third longer,
    or twice as long, without any process inside the machine being busy."""
    import gc as collector

    from klaviyo_magic.sandbox.jobs import CHUNK
    from klaviyo_magic.sandbox.store import Store
    from klaviyo_magic.sandbox.validation import check_bulk_import

    store = Store("CPU check")
    list_id = store.create_list("CPU check").id
    template = json.dumps(
        {
            "type": "profile",
            "attributes": {
                "email": "person{}@example.com",
                "first_name": "Ada",
                "last_name": "Park",
                "properties": {"plan": "gold", "ltv": 123.45, "orders": 7},
            },
        },
        separators=(",", ":"),
    )
    timings = []
    enabled = collector.isenabled()
    collector.disable()  # as in the served sandbox
    try:
        for number in range(jobs):
            profiles = ",".join(template.replace("{}", f"{number}.{i}") for i in range(10_000))
            body = (
                '{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":[' + profiles + "]}},"
                '"relationships":{"lists":{"data":[{"type":"list","id":"' + list_id + '"}]}}}}'
            ).encode()
            started = time.perf_counter()
            accepted = check_bulk_import(json.loads(body), body, store.missing_lists, None)
            job = store.create_job(accepted.profiles, accepted.list_ids)
            store.start_job(job.id)
            for first in range(0, job.total_count, CHUNK):
                store.import_chunk(job.id, first, first + CHUNK, None)
            store.finish_job(job.id)
            timings.append(time.perf_counter() - started)
    finally:
        if enabled:
            collector.enable()
    return sorted(timings)[len(timings) // 2] * 1000


# -- orchestration (the parent process) --------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child process: ask Linux to end it when the benchmark dies, so no sandbox is left behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the finally blocks still stop the sandbox on ordinary exits
        pass


_LISTENING = re.compile(r"listening on (http://\S+)")
_CREATED = re.compile(r"Created list '([^']+)'")


class SandboxProcess:
    """A fresh ``python -m klaviyo_magic.sandbox`` with Klaviyo's rate limits and one list, in its own process."""

    def __init__(self, rate_limits: str = "klaviyo", extra: list[str] | None = None) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe nobody reads while it runs
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klaviyo_magic.sandbox",
                "--port",
                "0",
                "--rate-limits",
                rate_limits,
                "--list",
                "Benchmark",
                *(extra or []),
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.url = self._expect(_LISTENING)
        self.list_id = self._expect(_CREATED)

    def _expect(self, pattern: re.Pattern[str]) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = pattern.search(line)
        if match is None:
            self._stderr.seek(0)
            errors = self._stderr.read()[-2000:]
            self.stop()
            raise RuntimeError(f"unexpected sandbox output {line!r}; stderr: {errors!r}")
        return match[1]

    def cpu_seconds(self) -> float | None:
        try:
            import psutil

            times = psutil.Process(self.process.pid).cpu_times()
            return times.user + times.system
        except Exception:
            return None

    def profile_count(self) -> int:
        """The list's member count, over the API like any client (``additional-fields[list]=profile_count``)."""
        found = self.get(f"/api/lists/{self.list_id}", {"additional-fields[list]": "profile_count"})
        return int(found["data"]["attributes"]["profile_count"])

    def get(self, path: str, params: dict[str, str]) -> dict:
        """``GET path`` as any client would, waiting out a 429 (the member count's bucket allows 1 a second)."""
        import requests

        headers = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": REVISION}
        for _ in range(10):
            resp = requests.get(f"{self.url}{path}", params=params, headers=headers, timeout=60)
            if resp.status_code == 429:
                time.sleep(float(resp.headers.get("Retry-After") or 1))
                continue
            resp.raise_for_status()
            return resp.json()
        raise RuntimeError(f"the sandbox kept answering 429 to GET {path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


def run_contender(contender: str, rows: int, args: argparse.Namespace) -> Run:
    run = Run(contender, rows)
    sandbox = SandboxProcess(args.rate_limits)
    try:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            contender,
            "--rows",
            str(rows),
            "--url",
            sandbox.url,
            "--list-id",
            sandbox.list_id,
            "--sdk-poll",
            str(args.sdk_poll),
            *(["--trace"] if args.trace else []),
        ]
        # klaviyo-magic journals every export under $KLAVIYO_MAGIC_HOME; keep the benchmark's out of the user's.
        with tempfile.TemporaryDirectory(prefix="klaviyo-magic-bench-") as home:
            env = {**os.environ, "KLAVIYO_MAGIC_HOME": home}
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=args.timeout,
                env=env,
                preexec_fn=_die_with_parent,
            )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if args.trace and done.stderr:
            print(done.stderr.rstrip(), flush=True)
        if done.returncode != 0 or not lines:
            run.error = f"worker exited {done.returncode}: {done.stderr.strip()[-500:]}"
            return run
        measured = json.loads(lines[-1])
        for name in (
            "wall_s",
            "baseline_rss_mb",
            "peak_extra_mb",
            "peak_source",
            "dataframe_mb",
            "cpu_s",
            "jobs",
            "retries",
            "throttled",
            "error",
        ):
            setattr(run, name, measured.get(name))
        if run.error is None and run.wall_s:
            run.profiles_per_s = rows / run.wall_s
        run.list_members = sandbox.profile_count()
        run.sandbox_cpu_s = sandbox.cpu_seconds()
        run.ok = bool(measured.get("ok")) and run.list_members == rows
        if measured.get("ok") and run.list_members != rows:
            run.error = f"the list has {run.list_members:,} members, expected {rows:,}"
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {args.timeout:.0f} s"
    finally:
        sandbox.stop()
    return run


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(runs: list[Run]) -> None:
    header = (
        f"{'contender':<16} {'rows':>9} {'wall s':>7} {'profiles/s':>10} {'peak extra MB':>13} "
        f"{'DataFrame MB':>12} {'CPU s':>6} {'sandbox CPU s':>13} {'429s':>4} {'list members':>12}  result"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        print(
            f"{run.contender:<16} {run.rows:>9,} {_fmt(run.wall_s, '.2f'):>7} "
            f"{_fmt(run.profiles_per_s, ',.0f'):>10} {_fmt(run.peak_extra_mb, ',.0f'):>13} "
            f"{_fmt(run.dataframe_mb, ',.0f'):>12} {_fmt(run.cpu_s, '.1f'):>6} "
            f"{_fmt(run.sandbox_cpu_s, '.1f'):>13} {'-' if run.throttled is None else run.throttled:>4} "
            f"{'-' if run.list_members is None else format(run.list_members, ','):>12}  "
            f"{'ok' if run.ok else 'FAILED: ' + (run.error or 'unknown')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="profiles to export (default 1,000,000)")
    parser.add_argument(
        "--small-rows",
        type=int,
        default=250_000,
        help="a second, smaller klaviyo-magic run to show how memory scales (default 250,000; 0 skips it)",
    )
    parser.add_argument("--skip-sdk", action="store_true", help="do not run the official SDK for comparison")
    parser.add_argument(
        "--sdk-poll", type=float, default=0.5, help="seconds between the SDK script's job polls (default 0.5)"
    )
    parser.add_argument(
        "--rate-limits",
        choices=("klaviyo", "off"),
        default="klaviyo",
        help="the sandbox's rate limits (default klaviyo: what the figures mean)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per contender")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    parser.add_argument(
        "--trace", action="store_true", help="print klaviyo-magic's progress timeline (sending, processing)"
    )
    parser.add_argument("--worker", choices=(OURS, SDK), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--list-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    load = os.getloadavg()[0]
    check = cpu_check()
    print(
        f"klaviyo-magic export benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"sandbox rate limits: {args.rate_limits}, load average {load:.2f}, "
        f"CPU check {check:.0f} ms (the sandbox's work per 10,000-profile job; see docs/benchmarks.md)",
        flush=True,
    )
    if load > 0.5 or check > _CPU_CHECK_QUIET_MS * 1.3:
        print(
            "note: this machine is busy (other processes, or a slow CPU check: a busy host); the figures "
            "will be slower than on a quiet machine",
            flush=True,
        )
    plan = [(OURS, args.rows)]
    if args.small_rows and args.small_rows != args.rows:
        plan.append((OURS, args.small_rows))
    if not args.skip_sdk:
        plan.append((SDK, args.rows))
    runs = []
    for contender, rows in plan:
        print(f"running {contender} with {rows:,} profiles...", flush=True)
        runs.append(run_contender(contender, rows, args))
    print()
    print_table(runs)
    sources = sorted({run.peak_source for run in runs if run.peak_source})
    print(
        "wall s: the export call only; peak extra MB: peak RSS during it minus RSS before it (DataFrame "
        f"already built), {' / '.join(sources) or 'not measured'}; CPU s: the exporting process during the "
        "export; sandbox CPU s: the sandbox process, whole life; 429s: throttled requests our client retried"
    )

    ours, sdk = runs[0], next((run for run in runs if run.contender == SDK), None)
    ratio = None
    if sdk is not None:
        if ours.ok and sdk.ok and ours.wall_s and sdk.wall_s:
            ratio = sdk.wall_s / ours.wall_s
            print(f"\nratio SDK/klaviyo-magic (wall time, {args.rows:,} profiles): {ratio:.1f}x")
        else:
            print("\nratio SDK/klaviyo-magic: n/a (a run failed, see above)")
    small = next((run for run in runs[1:] if run.contender == OURS), None)
    if small is not None and ours.ok and small.ok and ours.peak_extra_mb is not None:
        grew = ours.peak_extra_mb - (small.peak_extra_mb or 0.0)
        per_row = grew * 1e6 / (ours.rows - small.rows)
        print(
            f"extra memory {small.rows:,} -> {ours.rows:,} profiles: "
            f"{small.peak_extra_mb:,.0f} -> {ours.peak_extra_mb:,.0f} MB ({per_row:,.0f} bytes per extra row)"
        )
    if args.json:
        summary = {
            "cpus": os.cpu_count(),
            "load_average": load,
            "cpu_check_ms": check,
            "runs": [asdict(run) for run in runs],
            "ratio": ratio,
        }
        print(json.dumps(summary))
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
