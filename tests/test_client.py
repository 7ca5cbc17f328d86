"""KlaviyoClient over real HTTP against the sandbox: headers, paging, retries and error translation."""

from __future__ import annotations

import time

import pytest

from klaviyo_magic.client import KlaviyoClient, RetryPolicy
from klaviyo_magic.connections import DEFAULT_REVISION, Connection
from klaviyo_magic.errors import (
    AuthenticationError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from klaviyo_magic.sandbox import Sandbox

KEY = "pk_client_tests_SECRETSECRET1234"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def sb():
    with Sandbox(rate_limits=False, api_keys=[KEY]) as sandbox:
        yield sandbox


def client_for(sb, key=KEY, **kwargs) -> KlaviyoClient:
    return KlaviyoClient(Connection.from_key(key, base_url=sb.url, name="test-conn"), **kwargs)


def test_sends_auth_revision_and_jsonapi_headers(sb):
    with client_for(sb) as client:
        account = client.get_account()
    assert account["type"] == "account"
    record = sb.requests[-1]
    assert record.headers["revision"] == DEFAULT_REVISION
    assert record.headers["Accept"] == "application/vnd.api+json"
    assert KEY not in repr(record) and record.headers["Authorization"].startswith("Klaviyo-API-Key pk_")


def test_pages_through_all_lists(sb):
    ids = {sb.create_list(f"List {i}") for i in range(23)}
    with client_for(sb) as client:
        seen = [item["id"] for item in client.iter_lists()]
    assert sorted(seen) == sorted(ids)
    assert len([r for r in sb.requests if r.path.startswith("/api/lists")]) == 3  # 10 + 10 + 3


def test_create_list_and_get_it(sb):
    with client_for(sb) as client:
        created = client.create_list("Fresh")
        assert client.get_list(created["id"])["attributes"]["name"] == "Fresh"


def test_refused_key_is_explained_without_the_key(sb):
    with (
        client_for(sb, key="pk_not_allowed_ZZZZZZZZ9999") as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.get_account()
    text = str(caught.value) + repr(caught.value)
    assert "401 from Klaviyo while checking the API key" in text and "test-conn" in text
    assert "pk_not_allowed_ZZZZZZZZ9999" not in text
    assert caught.value.status == 401 and caught.value.code == "not_authenticated"


def test_unknown_list_is_not_found(sb):
    with client_for(sb) as client, pytest.raises(NotFoundError) as caught:
        client.get_list("XXXXXX")
    assert caught.value.status == 404 and "looking up list 'XXXXXX'" in str(caught.value)


def test_validation_errors_are_not_retried(sb):
    with client_for(sb, retry=FAST) as client, pytest.raises(ValidationError) as caught:
        client.create_list("")
    assert caught.value.status == 400
    assert len([r for r in sb.requests if r.method == "POST"]) == 1


def test_server_errors_are_retried_then_raised(sb):
    sb.fail_next("GET /api/accounts", count=5, status=503)
    with client_for(sb, retry=FAST) as client, pytest.raises(ServerError) as caught:
        client.get_account()
    assert "after 3 attempts" in str(caught.value)
    assert [r.status for r in sb.requests] == [503, 503, 503]


def test_retry_after_is_honoured(sb):
    sb.fail_next("GET /api/accounts", count=1, status=429, retry_after=1)
    with client_for(sb, retry=FAST) as client:
        started = time.monotonic()
        client.get_account()
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in sb.requests] == [429, 200]


def test_rate_limit_error_after_exhausting_retries(sb):
    sb.fail_next("GET /api/accounts", count=5, status=429, retry_after=0)
    with client_for(sb, retry=FAST) as client, pytest.raises(RateLimitError) as caught:
        client.get_account()
    assert caught.value.retry_after == 0


def test_timeouts_and_drops_become_network_errors(sb):
    sb.delay_next("GET /api/accounts", 1.0, count=3)
    with client_for(sb, retry=FAST, timeout=(2.0, 0.2)) as client, pytest.raises(NetworkError) as caught:
        client.get_account()
    assert "timed out while checking the API key" in str(caught.value)
    sb.reset_faults()
    sb.drop_next("GET /api/accounts", count=1)
    with client_for(sb, retry=FAST) as client:
        assert client.get_account()["type"] == "account"


def test_repr_hides_the_key(sb):
    client = client_for(sb)
    assert KEY not in repr(client) and "test-conn" in repr(client)
    client.close()
