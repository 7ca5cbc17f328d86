"""Accounts and lists over HTTP (docs/klaviyo-api.md §2.1–§2.4); list membership is in test_members.py."""

from __future__ import annotations

from datetime import datetime

import pytest
from sandbox_support import Api


def test_accounts_is_a_one_item_array_with_the_account_attributes(sb, api):
    body = api.get("/api/accounts").json()
    (account,) = body["data"]
    assert account["type"] == "account" and account["id"] == sb.account["id"]
    attributes = account["attributes"]
    assert set(attributes) >= {"test_account", "contact_information", "timezone", "public_api_key", "locale"}
    assert attributes["contact_information"]["organization_name"] == "Sandbox Demo Co"
    assert account["links"]["self"] == f"{sb.url}/api/accounts/{account['id']}"
    single = api.get(f"/api/accounts/{account['id']}").json()["data"]
    assert single == account
    assert api.get("/api/accounts/nope00").status_code == 404


def test_list_pages_follow_absolute_next_links(sb, api):
    created = [sb.create_list(f"List {i:02}") for i in range(23)]
    first = api.get("/api/lists").json()
    assert len(first["data"]) == 10
    next_link = first["links"]["next"]
    assert next_link.startswith(sb.url + "/api/lists?") and "page%5Bcursor%5D=" in next_link
    pages, url = [], "/api/lists"
    while url:
        body = api.get(url).json()
        pages.append(len(body["data"]))
        url = body["links"]["next"]
    assert pages == [10, 10, 3]
    assert [item["id"] for item in api.collect("/api/lists")] == created  # default order: created


def test_list_page_size_is_capped_at_10(api):
    assert api.get("/api/lists", params={"page[size]": "10"}).status_code == 200
    for size in ("11", "0", "ten"):
        response = api.get("/api/lists", params={"page[size]": size})
        assert response.status_code == 400
        assert response.json()["errors"][0]["source"] == {"parameter": "page[size]"}


def test_list_filters_and_sorting(sb, api):
    for name in ("Charlie", "Alpha", "Bravo", "Alpha"):
        sb.create_list(name)
    names = lambda **params: [item["attributes"]["name"] for item in api.collect("/api/lists", **params)]  # noqa: E731
    assert names(filter='equals(name,"Alpha")') == ["Alpha", "Alpha"]
    assert names(filter="any(name,['Bravo','Charlie'])", sort="name") == ["Bravo", "Charlie"]
    assert names(sort="-name") == ["Charlie", "Bravo", "Alpha", "Alpha"]
    assert api.get("/api/lists", params={"filter": 'contains(name,"A")'}).status_code == 400
    assert api.get("/api/lists", params={"sort": "size"}).status_code == 400


def test_a_bad_cursor_is_400(api):
    response = api.get("/api/lists", params={"page[cursor]": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}


def test_create_list_returns_201_with_the_list(sb, api):
    response = api.post("/api/lists", {"data": {"type": "list", "attributes": {"name": "Newsletter"}}})
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["type"] == "list" and len(data["id"]) == 6
    assert data["attributes"]["name"] == "Newsletter" and data["attributes"]["opt_in_process"] == "single_opt_in"
    datetime.fromisoformat(data["attributes"]["created"])
    assert data["links"]["self"] == f"{sb.url}/api/lists/{data['id']}"
    assert [item["name"] for item in sb.lists()] == ["Newsletter"]


@pytest.mark.parametrize(
    "document",
    [
        {"data": {"type": "list", "attributes": {}}},
        {"data": {"type": "list", "attributes": {"name": ""}}},
        {"data": {"type": "segment", "attributes": {"name": "X"}}},
        {"data": {"type": "list", "attributes": {"name": "X", "opt_in_process": "maybe"}}},
    ],
)
def test_create_list_rejects_bad_bodies(sb, api, document):
    assert api.post("/api/lists", document).status_code == 400
    assert sb.lists() == []


def test_get_list_with_profile_count(sb, api):
    list_id = sb.create_list("Counted")
    api.import_and_wait(sb, [Api.profile(f"c{i}@example.com") for i in range(3)], [list_id])
    plain = api.get(f"/api/lists/{list_id}").json()["data"]
    assert "profile_count" not in plain["attributes"]
    counted = api.get(f"/api/lists/{list_id}", params={"additional-fields[list]": "profile_count"}).json()
    assert counted["data"]["attributes"]["profile_count"] == 3
    assert api.get("/api/lists/XXXXXX").status_code == 404
    assert api.get(f"/api/lists/{list_id}", params={"additional-fields[list]": "size"}).status_code == 400


def test_sparse_fieldsets_and_includes(sb, api):
    list_id = sb.create_list("Sparse")
    data = api.get(f"/api/lists/{list_id}", params={"fields[list]": "name"}).json()["data"]
    assert data["attributes"] == {"name": "Sparse"}
    body = api.get("/api/lists", params={"include": "tags"}).json()
    assert body["included"] == [] and body["data"][0]["relationships"]["tags"]["data"] == []
