"""What every request goes through: auth, revision, media type, routing, errors, size cap, request log."""

from __future__ import annotations

import uuid

import pytest
import requests
from sandbox_support import JOBS, JSONAPI, KEY, Api

from klaviyo_magic.sandbox import Sandbox


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    """The JSON:API error shape of docs/klaviyo-api.md §4.1/§4.2a; returns the first error."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == JSONAPI
    error = response.json()["errors"][0]
    assert set(error) >= {"id", "status", "code", "title", "detail", "source", "links", "meta"}
    assert uuid.UUID(error["id"]) and error["status"] == status and error["code"] == code
    return error


# -- auth ------------------------------------------------------------------------------------------------


def test_any_pk_key_is_accepted_by_default(sb):
    for key in ("pk_abc123", "pk_another_key_9876543210"):
        assert Api(sb.url, key).get("/api/accounts").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer pk_abc123",
        "pk_abc123",
        "Klaviyo-API-Key sk_abc123",
        "Klaviyo-API-Key ",
        "Klaviyo-API-Key pk_",
    ],
)
def test_missing_or_malformed_credentials_are_401_not_authenticated(sb, authorization):
    headers = {"revision": "2026-10-15"}
    if authorization is not None:
        headers["Authorization"] = authorization
    error = assert_error(requests.get(sb.url + "/api/accounts", headers=headers), 401, "not_authenticated")
    assert error["title"] == "Authentication credentials were not provided."
    assert error["detail"] == "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."


def test_api_keys_restricts_the_accepted_keys():
    with Sandbox(rate_limits=False, api_keys=["pk_good_one_123456"]) as sb:
        assert Api(sb.url, "pk_good_one_123456").get("/api/accounts").status_code == 200
        assert_error(Api(sb.url, "pk_other_key_123456").get("/api/accounts"), 401, "not_authenticated")


def test_refused_requests_do_not_reach_the_endpoint(sb):
    list_id = sb.create_list("Untouched")
    stranger = Api(sb.url, "wrong")
    assert stranger.bulk_import([Api.profile("a@example.com")], [list_id]).status_code == 401
    assert sb.jobs() == [] and sb.profiles() == []


# -- revision --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["2026-10-15", "2026-07-15", "2026-07-15.pre", "2024-10-15", "2023-02-22"])
def test_known_revisions_are_accepted(api, revision):
    assert api.get("/api/accounts", headers={"revision": revision}).status_code == 200


def test_missing_revision_is_a_400_naming_the_header(sb):
    response = requests.get(sb.url + "/api/accounts", headers={"Authorization": f"Klaviyo-API-Key {KEY}"})
    error = assert_error(response, 400, "invalid")
    assert error["source"] == {"parameter": "revision"}


@pytest.mark.parametrize("revision", ["2026-10-16", "2031-01-15", "2026-10-15.beta"])
def test_unknown_revision_is_404_no_valid_revisions(api, revision):
    error = assert_error(api.get("/api/accounts", headers={"revision": revision}), 404, "not_found")
    assert error["detail"] == "No valid revisions found for method"


def test_malformed_revision_is_400(api):
    assert_error(api.get("/api/accounts", headers={"revision": "latest"}), 400, "invalid")


# -- media types, routing --------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [JSONAPI, "application/json", "application/json; charset=utf-8"])
def test_json_bodies_are_accepted(api, content_type):
    response = api.post(
        "/api/lists",
        {"data": {"type": "list", "attributes": {"name": "X"}}},
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Encoding": "gzip"},
    ],
)
def test_other_media_types_and_encodings_are_415(api, headers):
    response = api.post("/api/lists", {"data": {"type": "list", "attributes": {"name": "X"}}}, headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_responses_are_jsonapi_and_trailing_slashes_are_accepted(api):
    for path in ("/api/accounts", "/api/accounts/", "/api/lists/"):
        response = api.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == JSONAPI


def test_unknown_route_is_404_and_wrong_method_405(api):
    assert_error(api.get("/api/nothing-here"), 404, "not_found")
    error_response = api.send("DELETE", "/api/lists", {})
    assert_error(error_response, 405, "method_not_allowed")
    assert error_response.headers["Allow"] == "GET, POST"


def test_malformed_json_is_a_parse_error(api):
    assert_error(api.post("/api/lists", b"{not json"), 400, "parse_error")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-2.5E+400"])
def test_non_finite_number_constants_are_a_parse_error_on_every_body(sb, api, constant):
    """Python's json accepts NaN and Infinity; strict JSON, and so Klaviyo, does not. Each body is otherwise
    valid, so only the constant can make it fail, and nothing may change."""
    list_id = sb.create_list("Before")
    api.import_and_wait(sb, [Api.profile("member@example.com")], [list_id])
    member_id = sb.find_profile("member@example.com")["id"]
    profile = f'{{"type":"profile","attributes":{{"email":"new@example.com","properties":{{"score":{constant}}}}}}}'
    bulk = f'{{"data":{{"type":"profile-bulk-import-job","attributes":{{"profiles":{{"data":[{profile}]}}}}}}}}'
    new_list = f'{{"data":{{"type":"list","attributes":{{"name":"After","size":{constant}}}}}}}'
    membership = f'{{"data":[{{"type":"profile","id":"{member_id}","weight":{constant}}}]}}'
    members_path = f"/api/lists/{list_id}/relationships/profiles"
    for method, path, body in [
        ("POST", JOBS, bulk),
        ("POST", "/api/lists", new_list),
        ("POST", members_path, membership),
        ("DELETE", members_path, membership),
    ]:
        error = assert_error(api.send(method, path, body.encode()), 400, "parse_error")
        assert constant in error["detail"] and error["source"] == {"pointer": "/data"}, (method, path)
        # Without the constant the same body is accepted, so the constant alone was refused.
        assert api.send(method, path, body.replace(constant, "1").encode()).status_code < 300, (method, path)
    sb.wait_for_jobs()
    assert len(sb.jobs()) == 2 and [item["name"] for item in sb.lists()] == ["Before", "After"]
    assert sb.member_emails(list_id) == set()  # added back, then removed, by the bodies without the constant


def test_unknown_jsonapi_query_parameters_are_400(api):
    error = assert_error(api.get("/api/lists", params={"include": "profiless"}), 400, "invalid")
    assert error["source"] == {"parameter": "include"}
    assert_error(api.get("/api/accounts", params={"page[size]": "5"}), 400, "invalid")


def test_a_body_over_5_mb_is_413_and_the_connection_stays_usable(sb, api):
    list_id = sb.create_list("Big")
    padding = "x" * 500
    profiles = [Api.profile(f"p{i}@example.com", first_name=padding) for i in range(9_000)]
    document = Api.import_document(profiles, [list_id])
    response = api.post(JOBS, document)
    assert len(response.request.body) > 5_000_000
    assert_error(response, 413, "request_too_large")
    assert sb.jobs() == [] and sb.profiles() == []
    assert api.get("/api/accounts").status_code == 200  # same keep-alive session


# -- request log -----------------------------------------------------------------------------------------


def test_request_log_records_requests_without_the_key(sb, api):
    api.get("/api/lists", params={"page[size]": "3"})
    api.bulk_import([Api.profile("a@example.com")])
    requests.get(sb.url + "/api/accounts", headers={"Authorization": "Bearer secret-token-value", "revision": "x"})
    get, post, bearer = sb.requests
    assert (get.method, get.path, get.query, get.status, get.operation) == (
        "GET",
        "/api/lists",
        "page%5Bsize%5D=3",
        200,
        "get_lists",
    )
    assert post.body_bytes > 0 and post.status == 202 and post.operation == "bulk_import_profiles"
    assert get.headers["Authorization"] == "Klaviyo-API-Key pk_****cdef"
    assert bearer.headers["Authorization"] == "Bearer ****"
    assert get.time <= post.time and post.duration >= 0
    for record in sb.requests:
        assert KEY not in repr(record) and "secret-token-value" not in repr(record)
    sb.clear_log()
    assert sb.requests == []
