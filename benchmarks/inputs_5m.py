"""Benchmark: 5,000,000 rows of a Parquet dataset exported through Polars lazy and through Spark local mode to a
sandbox with Klaviyo's rate limits, next to Klaviyo's own floor, with the exporting process's peak memory at
1,000,000 and at 5,000,000 rows (issue 16).

    .venv/bin/python benchmarks/inputs_5m.py            # about 20 minutes (four runs, each input also read alone)
    .venv/bin/python benchmarks/inputs_5m.py --rows 200000 --small-rows 50000 --only polars   # a quick check

The dataset (email, first and last name, plan, ltv, orders: the 1M benchmark's columns) is written once, as
Parquet files of 250,000 rows, under a temporary directory. Each run gets a fresh sandbox in its own process
(``python -m klaviyo_magic.sandbox --rate-limits klaviyo``: 10 import jobs a second, 150 a minute, 10,000
profiles a job) and runs in a worker process of its own, which opens the input lazily (``pl.scan_parquet`` or
``spark.read.parquet``: nothing is read yet), records its RSS, then exports while the kernel's high-water mark
(or a 20 ms sampler) catches the peak. Spark's JVM is a process of its own: the figure is the Python driver's.

Next to each export, the same input is read alone in a worker of its own, chunk by chunk as the export reads it,
with nothing checked or sent: its peak (``reading alone MB``) is the DataFrame library's own cost, which the
memory growth is split by.

Klaviyo's floor for N profiles is when its limits let the last of the ceil(N / 10,000) import jobs start: 150 jobs
in each minute, at most 10 a second. See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_1m import KEY, PROPERTIES, SandboxProcess, cpu_check, make_frame, measure  # noqa: E402

FILE_ROWS = 250_000


def floor_seconds(profiles: int, per_job: int = 10_000, per_second: int = 10, per_minute: int = 150) -> float:
    """When Klaviyo's bulk-import limits let the last job start, the first one starting at 0."""
    last = math.ceil(profiles / per_job) - 1
    return 60.0 * (last // per_minute) + (last % per_minute) / per_second


def write_dataset(directory: Path, rows: int) -> Path:
    """``rows`` customers as Parquet files of ``FILE_ROWS`` rows; returns the glob that reads them all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    frame = make_frame(rows)
    for number, start in enumerate(range(0, rows, FILE_ROWS)):
        table = pa.Table.from_pandas(frame.iloc[start : start + FILE_ROWS], preserve_index=False)
        pq.write_table(table, directory / f"part-{number:04d}.parquet")
    return directory / "*.parquet"


# -- the worker (one run, in its own process) -------------------------------------------------------------


def open_input(kind: str, pattern: str) -> tuple[Any, Any]:
    """The lazy input, and what must stay alive while it is read (the Spark session)."""
    if kind == "polars":
        import polars as pl

        return pl.scan_parquet(pattern), None
    from pyspark.sql import SparkSession

    # Spark's Python workers (which pack each partition's rows as Arrow batches for the export) run the Python
    # that PYSPARK_PYTHON names, else `python3` on the PATH, which may lack pyarrow; the spark.pyspark.python
    # setting does not reach them when the driver is this process.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("klaviyo-magic-benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark.read.parquet(str(Path(pattern).parent)), spark


def read_alone(segment: Any) -> dict[str, Any]:
    """The baseline: the same input read chunk by chunk exactly as the export reads it, each chunk dropped after
    a short pause (a consumer slower than the library, as the rate-limited export is), nothing checked or sent.
    Its peak is what the DataFrame library's own reading costs (Polars reads files ahead, for one)."""
    from klaviyo_magic.export.sources import open_source

    source = open_source(0, segment)
    rows = 0
    for frame, _ in source.chunks(["email", *PROPERTIES]):
        rows += len(frame)
        time.sleep(0.02)
    return {"read_rows": rows}


def worker(args: argparse.Namespace) -> int:
    from klaviyo_magic import export_segment
    from klaviyo_magic.connections import Connection

    os.environ["KLAVIYO_MAGIC_HOME"] = tempfile.mkdtemp(prefix="klaviyo-magic-inputs-bench-")
    segment, keep_alive = open_input(args.worker, args.input)

    def work() -> dict[str, Any]:
        if args.read_alone:
            return read_alone(segment)
        result = export_segment(segment, email="email", list_id=args.list_id, properties=PROPERTIES,
                                connection=Connection.from_key(KEY, base_url=args.url), progress=False,
                                max_profiles=10**9)  # above the default 1M cap on purpose  # fmt: skip
        return {"sent": result.sent, "jobs": len(result.job_ids), "total_rows": result.total_rows, "ok": result.ok}

    out = measure(work)
    del keep_alive
    print(json.dumps(out), flush=True)
    return 0


# -- the parent --------------------------------------------------------------------------------------------


def read_baseline(kind: str, pattern: Path) -> float | None:
    """Peak extra MB of reading the input alone (see ``read_alone``), in a worker process of its own."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--input", str(pattern), "--read-alone"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1]) if lines else {}
    return out.get("peak_extra_mb") if out.get("ok") else None


def run(kind: str, pattern: Path, rows: int) -> dict[str, Any]:
    reading = read_baseline(kind, pattern)
    sandbox = SandboxProcess("klaviyo")
    try:
        command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--input", str(pattern),
                   "--url", sandbox.url, "--list-id", sandbox.list_id]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        out: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": done.stderr.strip()[-500:]}
        out["list_members"] = sandbox.profile_count() if "error" not in out else None
    finally:
        sandbox.stop()
    out.update(kind=kind, rows=rows, floor_s=floor_seconds(rows), reading_alone_mb=reading)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000, help="the smaller size, for memory growth")
    parser.add_argument("--only", choices=("polars", "spark"), action="append", help="run only these inputs")
    parser.add_argument("--json", action="store_true", help="also print each run as a JSON line")
    parser.add_argument("--worker", choices=("polars", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--list-id", help=argparse.SUPPRESS)
    parser.add_argument("--read-alone", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    kinds = args.only or ["polars", "spark"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"klaviyo-magic inputs benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
          f"{load:.2f}, CPU check {cpu_check():.0f} ms (see docs/benchmarks.md)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="klaviyo-magic-inputs-") as root:
        sizes = sorted({args.small_rows, args.rows})
        datasets = {rows: write_dataset(Path(root) / f"rows-{rows}", rows) for rows in sizes}
        runs = [run(kind, datasets[rows], rows) for kind in kinds for rows in sizes]
    header = f"{'input':<8}{'rows':>11}{'wall s':>9}{'floor s':>9}{'wall/floor':>11}{'peak extra MB':>15}"
    header += f"{'reading alone MB':>18}{'CPU s':>8}{'jobs':>6}{'list members':>14}  result"
    print(header)
    print("-" * len(header))
    for r in runs:
        ratio = r.get("wall_s", float("nan")) / max(r["floor_s"], 1e-9)
        status = "ok" if r.get("ok") and r.get("list_members") == r["rows"] else r.get("error", "list not exact")
        print(f"{r['kind']:<8}{r['rows']:>11,}{r.get('wall_s', float('nan')):>9.1f}{r['floor_s']:>9.1f}{ratio:>11.2f}"
              f"{r.get('peak_extra_mb', float('nan')):>15.0f}{_mb(r.get('reading_alone_mb')):>18}"
              f"{r.get('cpu_s', float('nan')):>8.1f}"
              f"{r.get('jobs', 0):>6}{r.get('list_members') or 0:>14,}  {status}")  # fmt: skip
    for kind in kinds:
        small = next((r for r in runs if r["kind"] == kind and r["rows"] == sizes[0]), None)
        big = next((r for r in runs if r["kind"] == kind and r["rows"] == sizes[-1]), None)
        if small and big and "peak_extra_mb" in small and "peak_extra_mb" in big and len(sizes) > 1:
            growth = big["peak_extra_mb"] - small["peak_extra_mb"]
            per_row = growth * 1e6 / (sizes[-1] - sizes[0])
            print(f"{kind}: peak memory growth {sizes[0]:,} -> {sizes[-1]:,} rows: {growth:.0f} MB "
                  f"({per_row:.0f} bytes per extra row)")  # fmt: skip
            if small.get("reading_alone_mb") is not None and big.get("reading_alone_mb") is not None:
                # The two peaks need not coincide (Polars reads ahead early in a run, before the export's own
                # memory has grown), so the difference is what the export adds beyond the library at most.
                library = big["reading_alone_mb"] - small["reading_alone_mb"]
                ours = max(growth - library, 0.0)
                per_row = ours * 1e6 / (sizes[-1] - sizes[0])
                print(f"{kind}: reading the input alone grows {library:.0f} MB over the same rows; the export "
                      f"beyond that: {ours:.0f} MB ({per_row:.0f} bytes per extra row)")  # fmt: skip
    if args.json:
        for r in runs:
            print(json.dumps(r))
    return 0 if all(r.get("ok") and r.get("list_members") == r["rows"] for r in runs) else 1


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    sys.exit(main())
