"""``klaviyo-magic sandbox`` and ``python -m klaviyo_magic.sandbox``: serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
import time
from types import FrameType

from .control import Sandbox, is_loopback

DEFAULT_PORT = 8765
_COLLECT_EVERY = 60.0  # seconds between garbage collections (see run)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on (default 127.0.0.1; only loopback is allowed)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--rate-limits",
        choices=("klaviyo", "off"),
        default="klaviyo",
        help="enforce Klaviyo's per-endpoint rate limits with 429s (klaviyo, the default) or not (off)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this private key (repeatable; default: any key starting pk_); use made-up keys",
    )
    parser.add_argument(
        "--job-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds an import job waits before each status change (default 0)",
    )
    parser.add_argument(
        "--list",
        action="append",
        dest="lists",
        default=[],
        metavar="NAME",
        help="create a list with this name at start and print its id (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="print one line per request to stderr")


def run(args: argparse.Namespace) -> int:
    if not is_loopback(args.host):
        print(
            f"error: --host {args.host} is not a loopback address; the sandbox only serves this machine "
            "(use 127.0.0.1 or ::1).",
            file=sys.stderr,
        )
        return 2
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        rate_limits=args.rate_limits == "klaviyo",
        api_keys=args.api_keys,
        job_delay=args.job_delay,
        verbose=args.verbose,
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. "
            "Pick another port with --port (0 picks a free one).",
            file=sys.stderr,
        )
        return 1
    # This process exists only to serve. It keeps millions of long-lived objects and parses 10,000-profile
    # bodies that make hundreds of thousands of short-lived ones, and the cyclic garbage collector scans each
    # of them at least once: with the default gen-0 threshold (700) a million-profile run spent about a third
    # of its time collecting, with a threshold of 100,000 still 1.5 s (of about 11 s). Yet such a run leaves
    # only some 50 objects in reference cycles, so automatic collection is off and the loop below collects
    # once a minute instead.
    gc.disable()
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(
            f"Klaviyo sandbox listening on {sandbox.url} (rate limits: {args.rate_limits}) — Ctrl-C to stop",
            flush=True,
        )
        for name in args.lists:
            print(f"Created list {sandbox.create_list(name)!r}: {name}", flush=True)
        collected = time.monotonic()
        while not stop.wait(0.5):
            if time.monotonic() - collected >= _COLLECT_EVERY:
                gc.collect()
                collected = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sandbox.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m klaviyo_magic.sandbox", description="Serve the local Klaviyo-compatible sandbox."
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))
