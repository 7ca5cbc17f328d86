"""Reading profiles: identifier filters, paging and single lookups (klaviyo-api.md §2.13)."""

from __future__ import annotations

from sandbox_support import Api


def emails(api: Api, **params: str) -> list[str]:
    return [item["attributes"]["email"] for item in api.collect("/api/profiles", **params)]


def test_profiles_filter_by_identifiers(sb, api):
    api.import_and_wait(
        sb,
        [
            Api.profile("a@example.com", external_id="ext-a"),
            Api.profile("b@example.com", phone_number="+447700900123"),
            Api.profile("c@example.com"),
        ],
    )
    assert emails(api, filter='equals(email,"A@example.com")') == ["a@example.com"]
    assert emails(api, filter='any(email,["c@example.com","a@example.com","nobody@example.com"])') == [
        "c@example.com",
        "a@example.com",
    ]
    assert emails(api, filter='equals(phone_number,"+447700900123")') == ["b@example.com"]
    assert emails(api, filter="equals(external_id,'ext-a')") == ["a@example.com"]
    profile_id = api.collect("/api/profiles", filter='equals(email,"c@example.com")')[0]["id"]
    assert emails(api, filter=f'equals(id,"{profile_id}")') == ["c@example.com"]
    assert emails(api, filter=f'and(equals(id,"{profile_id}"),equals(email,"a@example.com"))') == []
    assert emails(api, filter='equals(email,"nobody@example.com")') == []
    assert api.get("/api/profiles", params={"filter": 'equals(first_name,"A")'}).status_code == 400
    assert api.get("/api/profiles", params={"filter": "equals(email,"}).status_code == 400


def test_profiles_page_in_creation_order(sb, api):
    api.import_and_wait(sb, [Api.profile(f"p{i:02}@example.com") for i in range(30)])
    assert emails(api, **{"page[size]": "7"}) == [f"p{i:02}@example.com" for i in range(30)]
    assert emails(api, sort="-created") == [f"p{i:02}@example.com" for i in reversed(range(30))]
    assert len(api.get("/api/profiles").json()["data"]) == 20
    assert api.get("/api/profiles", params={"page[size]": "101"}).status_code == 400
    assert api.get("/api/profiles", params={"sort": "email"}).status_code == 400


def test_get_one_profile(sb, api):
    api.import_and_wait(sb, [Api.profile("one@example.com", first_name="One", properties={"k": "v"})])
    profile_id = sb.find_profile("one@example.com")["id"]
    data = api.get(f"/api/profiles/{profile_id}").json()["data"]
    assert data["type"] == "profile" and data["id"] == profile_id
    assert data["attributes"]["first_name"] == "One" and data["attributes"]["properties"] == {"k": "v"}
    assert data["attributes"]["phone_number"] is None and data["links"]["self"].endswith(profile_id)
    assert api.get("/api/profiles/01NOSUCHPROFILE").status_code == 404
