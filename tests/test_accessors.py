"""``df.klaviyo.export(...)`` on pandas and Polars frames: registered by ``import klaviyo_magic`` in either import
order without importing either library, calling export_segment with all its keyword arguments, over real HTTP."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pandas as pd
import polars as pl
import pytest

import klaviyo_magic
from klaviyo_magic.accessors import KlaviyoAccessor
from klaviyo_magic.connections import Connection
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_accessor_tests_0123456789abcdef"

REPORT = """
import sys
registered = [hasattr(frame, "klaviyo") for frame in (pd.DataFrame, pl.DataFrame, pl.LazyFrame)]
hooks = [type(f).__name__ for f in sys.meta_path if type(f).__module__ == "klaviyo_magic.accessors"]
print(registered, hooks, type(pd.__spec__.loader).__name__, type(pl.__loader__).__name__)
"""


def run(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    "imports",
    [
        "import klaviyo_magic\nimport pandas as pd, polars as pl",
        "import pandas as pd, polars as pl\nimport klaviyo_magic",
    ],
    ids=["package-first", "libraries-first"],
)
def test_the_namespace_is_registered_whatever_the_import_order(imports):
    # Every frame has .klaviyo, the import hook is gone once both libraries have it, and they keep their own loaders.
    assert run(imports + REPORT) == "[True, True, True] [] SourceFileLoader SourceFileLoader"


def test_importing_the_package_imports_neither_library_and_waits_for_them():
    script = "import sys, klaviyo_magic\nprint(sorted({'pandas', 'polars'} & set(sys.modules)), [type(f).__name__ "
    script += "for f in sys.meta_path if type(f).__module__ == 'klaviyo_magic.accessors'])"
    assert run(script) == "[] ['_RegisterAfterImport']"
    # With only pandas imported later, the hook keeps waiting for Polars (and costs nothing meanwhile).
    script = "import klaviyo_magic, pandas as pd, sys\nprint(hasattr(pd.DataFrame, 'klaviyo'), 'polars' in sys.modules)"
    assert run(script) == "True False"


def test_the_method_takes_every_keyword_of_export_segment():
    method = inspect.signature(KlaviyoAccessor.export).parameters
    engine = inspect.signature(klaviyo_magic.export_segment).parameters
    assert list(method)[1:] == list(engine)[1:]  # self / segments, then the same keywords in the same order
    for name in list(engine)[1:]:
        assert (method[name].kind, method[name].default) == (engine[name].kind, engine[name].default), name


@pytest.fixture
def sb(klaviyo_home):
    with Sandbox(rate_limits=False) as sandbox:
        yield sandbox


def test_pandas_and_polars_frames_export_themselves(sb):
    conn = Connection.from_key(KEY, base_url=sb.url, name="sandbox")
    customers = pd.DataFrame({"email": [f"p{i}@example.com" for i in range(30)], "ltv": [i * 100.0 for i in range(30)]})
    segments = {
        "pandas": customers[customers.ltv > 500],
        "polars": pl.from_pandas(customers).filter(pl.col("ltv") > 500),
        "polars-lazy": pl.from_pandas(customers).lazy().filter(pl.col("ltv") > 500),
    }
    expected = {f"p{i}@example.com" for i in range(6, 30)}
    for name, vip in segments.items():
        list_id = sb.create_list(name)
        assert vip.klaviyo.export(email="email", list_id=list_id, connection=conn, dry_run=True).would_send == 24
        result = vip.klaviyo.export(email="email", list_id=list_id, connection=conn, properties=["ltv"])
        assert result.sent == 24 and len(result.report) == 24, name
        sb.wait_for_jobs()
        assert sb.member_emails(list_id) == expected, name
    assert sb.find_profile("p7@example.com")["properties"] == {"ltv": 700.0}
    assert "klaviyo: .export(email=..., list_id=...)" in repr(segments["pandas"].klaviyo)
