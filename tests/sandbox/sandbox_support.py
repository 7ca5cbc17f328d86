"""Helpers for the sandbox's own tests: Klaviyo's headers on a ``requests`` session, request bodies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from klaviyo_magic.sandbox import Sandbox

KEY = "pk_sandbox_tests_0123456789abcdef"
REVISION = "2026-10-15"
JSONAPI = "application/vnd.api+json"
JOBS = "/api/profile-bulk-import-jobs"


class Api:
    """A ``requests`` session with Klaviyo's headers, addressed by path."""

    def __init__(self, base_url: str, key: str = KEY) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Klaviyo-API-Key {key}", "revision": REVISION, "Accept": JSONAPI}
        )

    @staticmethod
    def profile(email: str | None = None, **attributes: Any) -> dict:
        """A bulk-import profile resource."""
        if email is not None:
            attributes["email"] = email
        return {"type": "profile", "attributes": attributes}

    @staticmethod
    def import_document(profiles: list[dict], list_ids: Sequence[str] = ()) -> dict:
        data: dict = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}
        if list_ids:
            data["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in list_ids]}}
        return {"data": data}

    @staticmethod
    def pointers(response: requests.Response) -> list[str | None]:
        return [error["source"].get("pointer") for error in response.json()["errors"]]

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=30, **kwargs)

    def send(self, method: str, path: str, document: Any, **kwargs: Any) -> requests.Response:
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        headers = {"Content-Type": JSONAPI, **kwargs.pop("headers", {})}
        return self.session.request(method, self.url(path), data=data, headers=headers, timeout=30, **kwargs)

    def post(self, path: str, document: Any, **kwargs: Any) -> requests.Response:
        return self.send("POST", path, document, **kwargs)

    def bulk_import(self, profiles: list[dict], list_ids: Sequence[str] = (), **kwargs: Any) -> requests.Response:
        return self.post(JOBS, self.import_document(profiles, list_ids), **kwargs)

    def import_and_wait(self, sb: Sandbox, profiles: list[dict], list_ids: Sequence[str] = ()) -> dict:
        response = self.bulk_import(profiles, list_ids)
        assert response.status_code == 202, response.text
        sb.wait_for_jobs(timeout=30)
        return self.get(f"{JOBS}/{response.json()['data']['id']}").json()["data"]

    def collect(self, path: str, **params: Any) -> list[dict]:
        """Every item of a paged collection, following links.next."""
        items: list[dict] = []
        url: str | None = path
        while url:
            response = self.get(url, params=params)
            assert response.status_code == 200, response.text
            items += response.json()["data"]
            url, params = response.json()["links"]["next"], {}
        return items
