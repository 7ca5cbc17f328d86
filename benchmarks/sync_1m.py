"""Benchmark: a 1,000,000-row saved mirror export run again after 1% of rows changed and 1% left the segment,
next to a full re-send of the same segment, against one rate-limited sandbox (issue 15).

    .venv/bin/python benchmarks/sync_1m.py                  # about 2 minutes (one wait for Klaviyo's minute)
    .venv/bin/python benchmarks/sync_1m.py --rows 50000 --pause 0   # a quick check

The sandbox runs in its own process (``python -m klaviyo_magic.sandbox --rate-limits klaviyo --verbose``) and
logs every request; the requests of each run are counted from that log. The runs, in one process and one
``$KLAVIYO_MAGIC_HOME``:

1. the first run of the saved export (``mode="mirror"``): every row is new, so every row is sent;
2. the re-run after 1% of the rows changed (their ``ltv``) and another 1% were dropped: incremental, so only
   the changed rows are sent, and the members who left are looked up in the list and removed;
3. the same segment re-sent in full (``full=True``), as a run without sync state would; it waits first until
   the 150-a-minute import budget the first run used is free again, so both re-runs meet the same limits.

Each run's wall time, import jobs, list-member reads and removal calls are printed, with the size of the sync
state and how long reading it took, and whether the list is exact afterwards: its member count, and none of the
leavers still in it, read over the API. See
docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_1m import KEY, PROPERTIES, SandboxProcess, make_frame  # noqa: E402

# One request: threads of the sandbox print at once, so lines may run together; the pattern finds each one anyway.
_REQUEST = re.compile(r"(GET|POST|DELETE|PATCH) (\S+) -> (\d+|dropped) \((\d+) ms\)")


@dataclass
class Outcome:
    run: str
    wall_s: float
    sent: int
    unchanged: int
    removed: int
    import_jobs: int
    member_reads: int
    removal_calls: int
    other_requests: int
    lookup_ms: int  # time the sandbox spent answering member reads
    list_members: int
    requests: dict[str, int] = field(default_factory=dict)


class RequestLog:
    """The sandbox's per-request lines (``--verbose``), read from its stderr file a run at a time."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.seen = 0

    def since_last(self) -> list[tuple[str, str, int]]:
        # pread: the sandbox writes through the same open file, so moving its offset would make it overwrite.
        fd = self.sandbox._stderr.fileno()
        size = os.fstat(fd).st_size
        fresh = os.pread(fd, size - self.seen, self.seen).decode(errors="replace")
        self.seen = size
        return [(m[1], m[2].split("?", 1)[0], int(m[4])) for m in _REQUEST.finditer(fresh)]


def kind(method: str, path: str) -> str:
    if method == "POST" and path.rstrip("/").endswith("/profile-bulk-import-jobs"):
        return "import job"
    if method == "GET" and re.search(r"/api/lists/[^/]+/profiles$", path):
        return "member read"
    if method == "DELETE":
        return "removal call"
    return f"{method} {re.sub(r'/[A-Za-z0-9]{6,}(?=/|$)', '/{id}', path)}"


def measure(name: str, log: RequestLog, sandbox: SandboxProcess, action) -> Outcome:
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    requests = log.since_last()
    counts = collections.Counter(kind(method, path) for method, path, _ in requests)
    lookups = sum(ms for method, path, ms in requests if kind(method, path) == "member read")
    return Outcome(
        name,
        round(wall, 2),
        result.sent,
        result.unchanged,
        result.removed,
        counts.pop("import job", 0),
        counts.pop("member read", 0),
        counts.pop("removal call", 0),
        sum(counts.values()),
        lookups,
        sandbox.profile_count(),
        dict(counts),
    )


def members_among(sandbox: SandboxProcess, emails: list[str]) -> int:
    """How many of ``emails`` are members of the list, asked over the API as any client would (100 an ask)."""
    found = 0
    for start in range(0, len(emails), 100):
        quoted = ",".join(json.dumps(e) for e in emails[start : start + 100])
        params = {"filter": f"any(email,[{quoted}])", "page[size]": "100", "fields[profile]": "email"}
        found += len(sandbox.get(f"/api/lists/{sandbox.list_id}/profiles", params)["data"])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pause", type=float, default=61.0,
                        help="seconds from the first run's start to the full re-send's (Klaviyo's import budget is "
                             "per minute; 0 for a quick check)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="also print the outcomes as JSON lines")
    args = parser.parse_args(argv)

    os.environ["KLAVIYO_MAGIC_HOME"] = home = tempfile.mkdtemp(prefix="klaviyo-magic-sync-bench-")
    from klaviyo_magic import connections
    from klaviyo_magic.export import saved
    from klaviyo_magic.export.state import StateStore

    sandbox = SandboxProcess("klaviyo", extra=["--verbose"])
    log = RequestLog(sandbox)
    try:
        os.environ["KLAVIYO_SYNC_BENCH_KEY"] = KEY
        connections.add("bench", api_key_env="KLAVIYO_SYNC_BENCH_KEY", base_url=sandbox.url, accept_privacy_terms=True)
        frame = make_frame(args.rows)
        saved.save(saved.SavedExport(name="weekly", segments=("segment",), email="email", list_id=sandbox.list_id,
                                     connection="bench", properties=tuple(PROPERTIES), mode="mirror"))  # fmt: skip
        one_percent = max(len(frame) // 100, 1)

        def _run(segment, **options):
            return saved.run("weekly", {"segment": segment}, **options)

        first = measure("first run (all new)", log, sandbox, lambda: _run(frame))
        first_started = time.monotonic() - first.wall_s
        changed = frame.iloc[one_percent:].copy()  # the first 1% left the segment
        changed.iloc[:one_percent, changed.columns.get_loc("ltv")] += 1.0  # the next 1% changed
        store, _ = StateStore.open()
        state = store.list_state(sandbox.url, sandbox.list_id, None, create=False)
        started = time.perf_counter()
        members = len(state.snapshot(fresh=True))
        read_s = time.perf_counter() - started
        store.close()
        state_bytes = sum(p.stat().st_size for p in Path(home).glob("sync.sqlite3*"))
        rerun = measure("re-run (incremental mirror)", log, sandbox, lambda: _run(changed))
        # Klaviyo's bulk-import budget is 150 a minute: let the first run's jobs age out, so that the full re-send
        # meets the same limits as the re-run did.
        leavers = frame["email"].iloc[:one_percent].tolist()
        leavers_after_rerun = members_among(sandbox, leavers)
        log.since_last()  # those reads were the check's, not the next run's
        time.sleep(max(0.0, args.pause - (time.monotonic() - first_started)))
        full = measure("re-run (full re-send)", log, sandbox, lambda: _run(changed, full=True))
        leavers_after_full = members_among(sandbox, leavers)
    finally:
        sandbox.stop()

    outcomes = [first, rerun, full]
    print(f"sync benchmark: {args.rows:,} rows; 1% changed ({one_percent:,}), 1% left ({one_percent:,})")
    header = f"{'run':<28}{'wall s':>8}{'sent':>10}{'unchanged':>11}{'removed':>9}{'import jobs':>13}"
    header += f"{'member reads':>14}{'removal calls':>15}{'other':>7}{'list members':>14}"
    print(header)
    print("-" * len(header))
    for o in outcomes:
        print(f"{o.run:<28}{o.wall_s:>8.2f}{o.sent:>10,}{o.unchanged:>11,}{o.removed:>9,}{o.import_jobs:>13}"
              f"{o.member_reads:>14}{o.removal_calls:>15}{o.other_requests:>7}{o.list_members:>14,}")  # fmt: skip
    expected = len(changed)
    # Only the first segment's emails ever went to the list, so "as many members as the second segment has, and
    # none of the leavers among them" means the members are exactly the second segment's emails.
    counts_match = all(o.list_members == n for o, n in ((first, len(frame)), (rerun, expected), (full, expected)))
    exact = counts_match and leavers_after_rerun == leavers_after_full == 0
    print(f"list exact after every run: {exact} (members counted; leavers still members after the re-runs: "
          f"{leavers_after_rerun} and {leavers_after_full} of {len(leavers):,})")  # fmt: skip
    print(f"sync state after the first run: {state_bytes / 1e6:.1f} MB for {members:,} members "
          f"({state_bytes / max(members, 1):.0f} bytes a member); read in {read_s * 1000:.0f} ms")  # fmt: skip
    print(f"member reads of the re-run: {rerun.member_reads} requests, {rerun.lookup_ms} ms answering in the sandbox")
    share = rerun.import_jobs / max(full.import_jobs, 1)
    print(f"re-run vs full re-send: {rerun.wall_s:.2f} s vs {full.wall_s:.2f} s wall; import jobs "
          f"{rerun.import_jobs} vs {full.import_jobs} ({share:.1%})")  # fmt: skip
    if args.json:
        for o in outcomes:
            print(json.dumps(asdict(o)))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
