"""Fixtures for the sandbox's own tests: a running sandbox and a plain ``requests`` client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox_support import Api

from klaviyo_magic.sandbox import Sandbox


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(rate_limits=False) as sandbox:
        yield sandbox


@pytest.fixture
def api(sb: Sandbox) -> Iterator[Api]:
    client = Api(sb.url)
    yield client
    client.session.close()
