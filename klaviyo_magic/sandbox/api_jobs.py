"""Profile bulk-import jobs and their sub-resources (docs/klaviyo-api.md §2.5–§2.9)."""

from __future__ import annotations

from . import resources
from .context import Reply, Request, Route
from .jsonapi import invalid, not_found
from .params import Paging, requested_fields, sparse
from .store import JobView
from .validation import check_bulk_import

JOB_PAGING = Paging(default=20, maximum=100)  # §2.6, §2.8, §2.9
STATUSES = ("queued", "processing", "complete")  # the values the jobs filter allows (§2.6)
JOBS = resources.JOBS


def bulk_import_profiles(request: Request) -> Reply:
    """Validate the whole request synchronously, then accept it as a queued job: 202 (§2.5)."""
    faults = request.faults
    accepted = check_bulk_import(
        request.json(),
        request.body,
        request.store.missing_lists,
        faults.rejects if faults.rejecting else None,
    )
    job = request.store.create_job(accepted.profiles, accepted.list_ids)
    request.jobs.submit(job.id)
    return request.single(resources.job_resource(request.base_url, job), status=202)


def get_bulk_import_profiles_jobs(request: Request) -> Reply:
    query = request.query
    conditions = query.filters({"status": ("equals", "any")})
    _, descending = query.sort(("created_at",), "created_at")
    size = query.page_size(JOB_PAGING)
    jobs = request.store.all_jobs()  # in creation order; ids sort the same way
    for condition in conditions:
        if unknown := [value for value in condition.values if value not in STATUSES]:
            raise invalid(f"'{unknown[0]}' is not a valid job status.", parameter="filter")
        jobs = [job for job in jobs if job.status in condition.values]
    if descending:
        jobs.reverse()
    start = query.cursor() or 0
    fields = requested_fields(query)
    data = [sparse(resources.job_resource(request.base_url, job), fields) for job in jobs[start : start + size]]
    return request.collection(data, start + size if start + size < len(jobs) else None)


def get_bulk_import_profiles_job(request: Request) -> Reply:
    job = _job(request, "job_id")
    fields = requested_fields(request.query)
    reply = request.single(sparse(resources.job_resource(request.base_url, job), fields))
    if request.query.includes(("lists",)):
        assert reply.document is not None
        reply.document["included"] = _lists(request, job)
    return reply


def get_errors_for_bulk_import_profiles_job(request: Request) -> Reply:
    job = _job(request)
    start = request.query.cursor() or 0
    end = start + request.query.page_size(JOB_PAGING)
    errors, total = request.store.job_errors(job.id, start, end)
    fields = requested_fields(request.query)
    data = [sparse(resources.import_error_resource(error), fields) for error in errors]
    return request.collection(data, end if end < total else None)


def get_profiles_for_bulk_import_profiles_job(request: Request) -> Reply:
    page, next_start = _job_profile_page(request)
    fields = requested_fields(request.query)
    profiles = request.store.get_profiles(page)
    return request.collection(
        [sparse(resources.profile_resource(request.base_url, p), fields) for p in profiles], next_start
    )


def get_profile_ids_for_bulk_import_profiles_job(request: Request) -> Reply:
    page, next_start = _job_profile_page(request)
    return request.collection([resources.identifier("profile", pid) for pid in page], next_start)


def get_list_for_bulk_import_profiles_job(request: Request) -> Reply:
    return request.collection(_lists(request, _job(request)), None)


def get_list_ids_for_bulk_import_profiles_job(request: Request) -> Reply:
    return request.collection([resources.identifier("list", list_id) for list_id in _job(request).list_ids], None)


def _job(request: Request, parameter: str = "id") -> JobView:
    job_id = request.path_params[parameter]
    job = request.store.get_job(job_id)
    if job is None:
        raise not_found(f"A profile bulk import job with id {job_id} does not exist.")
    return job


def _job_profile_page(request: Request) -> tuple[list[str], int | None]:
    """One page of the ids of the profiles the job created or updated (each once, in import order)."""
    job = _job(request)
    start = request.query.cursor() or 0
    end = start + request.query.page_size(JOB_PAGING)
    page, total = request.store.job_profile_ids(job.id, start, end)
    return page, end if end < total else None


def _lists(request: Request, job: JobView) -> list[dict]:
    fields = requested_fields(request.query)
    records = [record for list_id in job.list_ids if (record := request.store.get_list(list_id))]
    return [sparse(resources.list_resource(request.base_url, record), fields) for record in records]


_PAGED = ("page[cursor]", "page[size]")

ROUTES = [
    Route("POST", JOBS, "bulk_import_profiles", bulk_import_profiles, ("fields[profile-bulk-import-job]",)),
    Route(
        "GET",
        JOBS,
        "get_bulk_import_profiles_jobs",
        get_bulk_import_profiles_jobs,
        ("filter", "sort", *_PAGED, "fields[profile-bulk-import-job]"),
    ),
    Route(
        "GET",
        f"{JOBS}/{{job_id}}",
        "get_bulk_import_profiles_job",
        get_bulk_import_profiles_job,
        ("include", "fields[list]", "fields[profile-bulk-import-job]"),
    ),
    Route(
        "GET",
        f"{JOBS}/{{id}}/import-errors",
        "get_errors_for_bulk_import_profiles_job",
        get_errors_for_bulk_import_profiles_job,
        (*_PAGED, "fields[import-error]"),
    ),
    Route(
        "GET",
        f"{JOBS}/{{id}}/profiles",
        "get_profiles_for_bulk_import_profiles_job",
        get_profiles_for_bulk_import_profiles_job,
        (*_PAGED, "fields[profile]"),
    ),
    Route(
        "GET",
        f"{JOBS}/{{id}}/relationships/profiles",
        "get_profile_ids_for_bulk_import_profiles_job",
        get_profile_ids_for_bulk_import_profiles_job,
        _PAGED,
    ),
    Route(
        "GET",
        f"{JOBS}/{{id}}/lists",
        "get_list_for_bulk_import_profiles_job",
        get_list_for_bulk_import_profiles_job,
        ("fields[list]",),
    ),
    Route(
        "GET",
        f"{JOBS}/{{id}}/relationships/lists",
        "get_list_ids_for_bulk_import_profiles_job",
        get_list_ids_for_bulk_import_profiles_job,
    ),
]
