"""Store records rendered as JSON:API resource objects, with absolute links (§1.2, §2)."""

from __future__ import annotations

from typing import Any

from .profiles import render_attributes
from .store import JobView, ListRecord

JOBS = "/api/profile-bulk-import-jobs"


def relationship(base_url: str, owner: str, name: str, data: Any = None, *, related_only: bool = False) -> dict:
    links = {"related": f"{base_url}{owner}/{name}"}
    if not related_only:
        links = {"self": f"{base_url}{owner}/relationships/{name}", **links}
    return {"links": links} if data is None else {"data": data, "links": links}


def account(base_url: str, record: dict[str, Any]) -> dict[str, Any]:
    attributes = {key: value for key, value in record.items() if key != "id"}
    return {
        "type": "account",
        "id": record["id"],
        "attributes": attributes,
        "links": {"self": f"{base_url}/api/accounts/{record['id']}"},
    }


def list_resource(base_url: str, record: ListRecord, profile_count: int | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": record.name,
        "created": record.created,
        "updated": record.updated,
        "opt_in_process": record.opt_in_process,
    }
    if profile_count is not None:
        attributes["profile_count"] = profile_count
    owner = f"/api/lists/{record.id}"
    return {
        "type": "list",
        "id": record.id,
        "attributes": attributes,
        "relationships": {name: relationship(base_url, owner, name) for name in ("profiles", "tags", "flow-triggers")},
        "links": {"self": f"{base_url}{owner}"},
    }


def profile_resource(base_url: str, record: dict[str, Any], joined_group_at: str | None = None) -> dict[str, Any]:
    attributes = render_attributes(record)
    if joined_group_at is not None:
        attributes["joined_group_at"] = joined_group_at
    owner = f"/api/profiles/{record['id']}"
    return {
        "type": "profile",
        "id": record["id"],
        "attributes": attributes,
        "relationships": {name: relationship(base_url, owner, name) for name in ("lists", "segments")},
        "links": {"self": f"{base_url}{owner}"},
    }


def identifier(kind: str, resource_id: str) -> dict[str, str]:
    return {"type": kind, "id": resource_id}


def job_resource(base_url: str, job: JobView) -> dict[str, Any]:
    owner = f"{JOBS}/{job.id}"
    return {
        "type": "profile-bulk-import-job",
        "id": job.id,
        "attributes": {
            "status": job.status,
            "created_at": job.created_at,
            # total_count counts profiles, not profiles x lists: §2.5 leaves it unconfirmed (docs/sandbox.md).
            "total_count": job.total_count,
            "completed_count": job.completed_count,
            "failed_count": job.failed_count,
            "completed_at": job.completed_at,
            "expires_at": None,
            "started_at": job.started_at,
        },
        "relationships": {
            "lists": relationship(base_url, owner, "lists", [identifier("list", i) for i in job.list_ids]),
            "profiles": relationship(base_url, owner, "profiles"),
            "import-errors": relationship(base_url, owner, "import-errors", related_only=True),
        },
        "links": {"self": f"{base_url}{owner}"},
    }


def import_error_resource(error: dict[str, Any]) -> dict[str, Any]:
    attributes = {key: value for key, value in error.items() if key != "id"}
    return {"type": "import-error", "id": error["id"], "attributes": attributes}
