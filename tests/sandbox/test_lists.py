"""Accounts, lists and list membership over HTTP (klaviyo-api.md §2.1–§2.4, §2.10, §2.11)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

import pytest
from sandbox_support import Api


def member_ids(api: Api, list_id: str, **params: str) -> list[str]:
    return [item["id"] for item in api.collect(f"/api/lists/{list_id}/relationships/profiles", **params)]


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


# -- membership ------------------------------------------------------------------------------------------


def test_add_and_remove_members_by_profile_id(sb, api):
    list_id = sb.create_list("Members")
    job = api.import_and_wait(sb, [Api.profile(f"m{i}@example.com") for i in range(5)])
    ids = [item["id"] for item in api.collect(f"/api/profile-bulk-import-jobs/{job['id']}/relationships/profiles")]
    body = {"data": [{"type": "profile", "id": pid} for pid in ids]}
    response = api.post(f"/api/lists/{list_id}/relationships/profiles", body)
    assert response.status_code == 204 and response.content == b""
    assert sb.member_emails(list_id) == {f"m{i}@example.com" for i in range(5)}
    remove = {"data": [{"type": "profile", "id": pid} for pid in ids[:2]]}
    assert api.send("DELETE", f"/api/lists/{list_id}/relationships/profiles", remove).status_code == 204
    assert member_ids(api, list_id) == ids[2:]


def test_membership_calls_take_at_most_1000_ids_and_only_known_ones(sb, api):
    list_id = sb.create_list("Strict")
    job = api.import_and_wait(sb, [Api.profile("known@example.com")])
    known = api.get(f"/api/profile-bulk-import-jobs/{job['id']}/relationships/profiles").json()["data"][0]["id"]
    too_many = {"data": [{"type": "profile", "id": known}] * 1001}
    for method in ("POST", "DELETE"):
        assert api.send(method, f"/api/lists/{list_id}/relationships/profiles", too_many).status_code == 400
    unknown = {"data": [{"type": "profile", "id": known}, {"type": "profile", "id": "01NOPE"}]}
    response = api.post(f"/api/lists/{list_id}/relationships/profiles", unknown)
    assert response.status_code == 404 and Api.pointers(response) == ["/data/1/id"]
    assert sb.member_emails(list_id) == set()  # all or nothing
    assert api.post("/api/lists/XXXXXX/relationships/profiles", {"data": []}).status_code == 404


def test_members_page_in_joining_order_with_joined_group_at(sb, api):
    list_id = sb.create_list("Paged")
    api.import_and_wait(sb, [Api.profile(f"p{i:03}@example.com") for i in range(45)], [list_id])
    first = api.get(f"/api/lists/{list_id}/profiles").json()
    assert len(first["data"]) == 20  # default page size
    member = first["data"][0]
    assert member["type"] == "profile" and member["attributes"]["email"] == "p000@example.com"
    datetime.fromisoformat(member["attributes"]["joined_group_at"])
    members = api.collect(f"/api/lists/{list_id}/profiles", **{"page[size]": "100"})
    assert [m["attributes"]["email"] for m in members] == [f"p{i:03}@example.com" for i in range(45)]
    newest_first = api.collect(f"/api/lists/{list_id}/profiles", sort="-joined_group_at")
    assert [m["id"] for m in newest_first] == [m["id"] for m in reversed(members)]
    assert api.get(f"/api/lists/{list_id}/profiles", params={"page[size]": "101"}).status_code == 400


def test_member_pages_skip_removed_members_and_readd_at_the_end(sb, api):
    list_id = sb.create_list("Churn")
    api.import_and_wait(sb, [Api.profile(f"r{i}@example.com") for i in range(6)], [list_id])
    ids = member_ids(api, list_id)
    path = f"/api/lists/{list_id}/relationships/profiles"
    api.send("DELETE", path, {"data": [{"type": "profile", "id": ids[0]}, {"type": "profile", "id": ids[3]}]})
    api.post(path, {"data": [{"type": "profile", "id": ids[0]}, {"type": "profile", "id": ids[1]}]})
    expected = [ids[1], ids[2], ids[4], ids[5], ids[0]]
    assert member_ids(api, list_id, **{"page[size]": "2"}) == expected
    assert [m["id"] for m in sb.list_members(list_id)] == expected


def test_member_filters_on_email_and_phone(sb, api):
    list_id = sb.create_list("Filtered")
    api.import_and_wait(
        sb,
        [
            Api.profile("a@example.com"),
            Api.profile("b@example.com", phone_number="+15005550006"),
            Api.profile("c@example.com"),
        ],
        [list_id],
    )
    api.import_and_wait(sb, [Api.profile("outsider@example.com")])
    emails = lambda filter_: [  # noqa: E731
        m["attributes"]["email"] for m in api.collect(f"/api/lists/{list_id}/profiles", filter=filter_)
    ]
    assert emails('equals(email,"B@example.com")') == ["b@example.com"]
    assert emails('any(email,["c@example.com","a@example.com","outsider@example.com"])') == [
        "a@example.com",
        "c@example.com",
    ]
    assert emails('equals(phone_number,"+15005550006")') == ["b@example.com"]
    assert emails('equals(email,"a@example.com"),equals(phone_number,"+15005550006")') == []


def test_list_page_links_continue_the_same_query(sb, api):
    list_id = sb.create_list("Links")
    api.import_and_wait(sb, [Api.profile(f"l{i}@example.com") for i in range(5)], [list_id])
    body = api.get(f"/api/lists/{list_id}/profiles", params={"page[size]": "2", "sort": "-joined_group_at"}).json()
    query = urlsplit(body["links"]["next"]).query
    assert "page%5Bsize%5D=2" in query and "sort=-joined_group_at" in query
