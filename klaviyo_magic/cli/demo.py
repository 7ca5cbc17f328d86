"""``klaviyo-magic demo``: export a sample segment to an embedded sandbox, so anyone can see it work.

Nothing leaves the machine: the sandbox runs in this process on 127.0.0.1, the connection profile lives in a
temporary directory, and the API key is a made-up ``pk_`` key read from an environment variable.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from .parsing import EXIT_OK, EXIT_ROWS

DEMO_KEY_VAR = "KLAVIYO_DEMO_API_KEY"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the generated customer table (default 20000)")
    parser.add_argument(
        "--rate-limits",
        choices=("klaviyo", "off"),
        default="klaviyo",
        help="apply Klaviyo's real rate limits in the sandbox (default) or switch them off",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")


@contextmanager
def _temporary_env(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(args: argparse.Namespace) -> int:
    from .. import connections, samples
    from ..export import export_segment
    from ..sandbox import Sandbox

    customers = samples.customers(args.rows)
    vip = customers[customers["ltv"] > 500]
    print(f"Generated {len(customers):,} customers; the segment `ltv > 500` has {len(vip):,} rows.")
    with (
        tempfile.TemporaryDirectory(prefix="klaviyo-magic-demo-") as home,
        _temporary_env(KLAVIYO_MAGIC_HOME=home, **{DEMO_KEY_VAR: "pk_demo_" + secrets.token_hex(16)}),
        Sandbox(rate_limits=args.rate_limits == "klaviyo") as sandbox,
    ):
        print(f"Started a Klaviyo sandbox at {sandbox.url} (rate limits: {args.rate_limits}).")
        list_id = sandbox.create_list("VIP customers")
        connections.add("demo", api_key_env=DEMO_KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)
        result = export_segment(
            vip,
            email="email",
            list_id=list_id,
            connection="demo",
            properties=["first_name", "last_name", "city", "plan", "ltv"],
            progress=not args.no_progress,
        )
        print(result.summary(where="the table below"))
        if len(result.problems):
            print("\nRows not sent, with the reason:")
            print(result.problems.head(10).to_string(index=False))
        members = len(sandbox.member_emails(list_id))
        print(f"\nThe sandbox's list '{list_id}' now has {members:,} members.")
    return EXIT_OK if result.ok else EXIT_ROWS
