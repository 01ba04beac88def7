"""In-memory jobs of one Batch account, with the service's update rules.

Job ids are case-preserving and case-insensitive (Batch docs: "The ID is
case-preserving and case-insensitive"), so lookups go through `casefold()`.
Everything that reads and then writes a job (conditions, state rules, merge)
runs under one lock: handlers run on the emulator's loop thread while tests seed
and inspect from theirs.

The order of checks for an update is: job exists (404), conditional headers
(412), job state (409), rules that compare with the stored job (400). The
service does not document its order; this one lets a stale If-Match fail as
412 before anything else that depends on the job's contents.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standins.batch.conditions import Conditions, Outcome
from standins.batch.durations import UNLIMITED, normalise_duration
from standins.batch.errors import BatchServiceError, invalid_property
from standins.batch.timefmt import ETagClock, format_odata_time

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting")
STATE_CONFLICTS = {
    "completed": "JobCompleted",
    "terminating": "JobBeingTerminated",
    "deleting": "JobBeingDeleted",
}
_TIME_FIELDS = ("lastModified", "creationTime", "stateTransitionTime", "previousStateTransitionTime")


@dataclass(frozen=True)
class AppliedPatch:
    """One successful Update Job call, as the service received and applied it."""

    job_id: str
    body: dict[str, Any]  # the request body as sent
    applied: dict[str, Any]  # the normalised top-level replacements
    etag_before: str
    etag_after: str
    request_id: str
    applied_at: datetime


@dataclass
class _Job:
    fields: dict[str, Any]
    patches: list[AppliedPatch] = field(default_factory=list)


@dataclass(frozen=True)
class ReadResult:
    outcome: Outcome
    job: dict[str, Any]  # snapshot with datetimes, no url


class JobStore:
    def __init__(self, etags: ETagClock | None = None) -> None:
        self._etags = etags or ETagClock()
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}

    # --- seeding and inspection ------------------------------------------------------

    def add(self, job: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._complete(job)
        key = fields["id"].casefold()
        with self._lock:
            if key in self._jobs:
                raise ValueError(f"job {fields['id']!r} already exists")
            self._jobs[key] = _Job(fields)
            return copy.deepcopy(fields)

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id.casefold())
            return copy.deepcopy(job.fields) if job else None

    def patch_log(self, job_id: str) -> list[AppliedPatch]:
        with self._lock:
            job = self._jobs.get(job_id.casefold())
            return list(job.patches) if job else []

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()

    def change(self, job_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a change as another writer would (new ETag), without validation.

        For tests: a state change (`{"state": "completed"}`) or a concurrent edit.
        """
        with self._lock:
            job = self._require(job_id)
            now = datetime.now(UTC)
            for name, value in changes.items():
                if name == "state" and value != job.fields.get("state"):
                    job.fields["previousState"] = job.fields.get("state")
                    job.fields["previousStateTransitionTime"] = job.fields.get("stateTransitionTime")
                    job.fields["stateTransitionTime"] = now
                job.fields[name] = copy.deepcopy(value)
            self._touch(job, now)
            return copy.deepcopy(job.fields)

    # --- the two operations --------------------------------------------------------

    def read(self, job_id: str, conditions: Conditions) -> ReadResult:
        with self._lock:
            job = self._require(job_id)
            outcome = conditions.evaluate(
                current_etag=job.fields["eTag"],
                last_modified=job.fields["lastModified"],
                is_write=False,
            )
            return ReadResult(outcome, copy.deepcopy(job.fields))

    def update(
        self,
        job_id: str,
        update: Mapping[str, Any],
        *,
        body: Mapping[str, Any],
        conditions: Conditions,
        request_id: str,
    ) -> dict[str, Any]:
        """Merge a validated update at the top level; return the new job snapshot."""
        with self._lock:
            job = self._require(job_id)
            fields = job.fields
            outcome = conditions.evaluate(
                current_etag=fields["eTag"], last_modified=fields["lastModified"], is_write=True
            )
            if outcome is not Outcome.PROCEED:
                raise BatchServiceError(412, "ConditionNotMet")
            state = fields["state"]
            if state in STATE_CONFLICTS:
                raise BatchServiceError(409, STATE_CONFLICTS[state])
            resolved = dict(update)
            if "poolInfo" in update:
                resolved["poolInfo"] = _resolve_pool_info(fields, update["poolInfo"])
            if (
                fields.get("onAllTasksComplete") == "terminatejob"
                and update.get("onAllTasksComplete") == "noaction"
            ):
                raise invalid_property(
                    "onAllTasksComplete",
                    "noaction",
                    "once terminatejob is set, a job cannot be changed back to noaction",
                )
            if "networkConfiguration" in update:
                resolved["networkConfiguration"] = _resolve_network_configuration(
                    fields, update["networkConfiguration"]
                )
            etag_before = fields["eTag"]
            for name, value in resolved.items():
                fields[name] = copy.deepcopy(value)
            if fields.get("metadata") == []:
                del fields["metadata"]
            now = datetime.now(UTC)
            self._touch(job, now)
            job.patches.append(
                AppliedPatch(
                    job_id=fields["id"],
                    body=copy.deepcopy(dict(body)),
                    applied=copy.deepcopy(resolved),
                    etag_before=etag_before,
                    etag_after=fields["eTag"],
                    request_id=request_id,
                    applied_at=now,
                )
            )
            return copy.deepcopy(fields)

    # --- helpers ------------------------------------------------------------------

    def _require(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id.casefold())
        if job is None:
            raise BatchServiceError(404, "JobNotFound")
        return job

    def _touch(self, job: _Job, now: datetime) -> None:
        job.fields["eTag"] = self._etags.next()
        job.fields["lastModified"] = now

    def _complete(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """A seed job with everything a real GET /jobs/{id} would show filled in."""
        job_id = job.get("id")
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise ValueError(
                "job id must be 1-64 letters, digits, hyphens or underscores, got " + repr(job_id)
            )
        state = job.get("state", "active")
        if state not in JOB_STATES:
            raise ValueError(f"job state must be one of {JOB_STATES}, got {state!r}")
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "id": job_id,
            "eTag": self._etags.next(),
            "lastModified": now,
            "creationTime": now,
            "state": state,
            "stateTransitionTime": now,
            "priority": 0,
            "maxParallelTasks": -1,
            "usesTaskDependencies": False,
            "allowTaskPreemption": False,
            "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0},
            "poolInfo": {"poolId": "pool-1"},
            "executionInfo": {"startTime": format_odata_time(now)},
            "onAllTasksComplete": "noaction",
            "onTaskFailure": "noaction",
        }
        for name, value in job.items():
            if name in _TIME_FIELDS and isinstance(value, str):
                value = _parse_time(value)
            if name == "url":
                continue  # derived from the emulator's endpoint when rendered
            fields[name] = copy.deepcopy(value)
        constraints = fields.get("constraints") or {}
        fields["constraints"] = {
            "maxWallClockTime": normalise_duration(constraints.get("maxWallClockTime", UNLIMITED)),
            "maxTaskRetryCount": constraints.get("maxTaskRetryCount", 0),
        }
        if "poolId" in fields["poolInfo"]:
            fields["executionInfo"].setdefault("poolId", fields["poolInfo"]["poolId"])
        if not fields.get("metadata"):
            fields.pop("metadata", None)
        return fields


_AUTO_POOL_RULE = (
    "only keepAlive of an auto pool specification can change, and only with poolLifetimeOption job"
)


def _resolve_pool_info(fields: Mapping[str, Any], new_pool_info: Mapping[str, Any]) -> dict[str, Any]:
    """The poolInfo the job will have, or the 409 the service answers.

    BatchJobUpdateOptions.poolInfo: "You may change the Pool for a Job only when the
    Job is disabled ... If you specify an autoPoolSpecification in the poolInfo, only
    the keepAlive property of the autoPoolSpecification can be updated, and then only
    if the autoPoolSpecification has a poolLifetimeOption of Job". So an
    autoPoolSpecification in a PATCH needs a stored auto pool with lifetime job; every
    property it states other than keepAlive must equal the stored one; the ones it
    omits keep their stored values; keepAlive is the body's (false when omitted).
    """
    if fields["state"] != "disabled":
        raise BatchServiceError(
            409,
            "OperationInvalidForCurrentState",
            values=(("Reason", "poolInfo can be changed only while the job is disabled"),),
        )
    given = new_pool_info.get("autoPoolSpecification")
    if given is None:
        return dict(new_pool_info)
    stored = fields.get("poolInfo", {}).get("autoPoolSpecification")
    if stored is None or str(stored.get("poolLifetimeOption", "")).lower() != "job":
        raise _auto_pool_conflict()
    for name, value in given.items():
        if name == "keepAlive":
            continue
        current = stored.get(name)
        if name == "poolLifetimeOption" and isinstance(current, str):
            current = current.lower()
        if value != current:
            raise _auto_pool_conflict()
    return {"autoPoolSpecification": {**copy.deepcopy(stored), "keepAlive": given["keepAlive"]}}


def _auto_pool_conflict() -> BatchServiceError:
    return BatchServiceError(409, "OperationInvalidForCurrentState", values=(("Reason", _AUTO_POOL_RULE),))


def _resolve_network_configuration(fields: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """subnetId has no default: omitted, the job keeps its subnet; with none, 400."""
    if "subnetId" in given:
        return dict(given)
    stored = fields.get("networkConfiguration") or {}
    if "subnetId" not in stored:
        raise BatchServiceError(400, "MissingRequiredProperty", values=(("PropertyName", "subnetId"),))
    return {"subnetId": stored["subnetId"], "skipWithdrawFromVNet": given["skipWithdrawFromVNet"]}


def _parse_time(text: str) -> datetime:
    # Batch writes up to 7 fractional digits; Python parses at most 6.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(trimmed).astimezone(UTC)


def render_job(fields: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The job as GET /jobs/{id} returns it (without odata.metadata)."""
    rendered: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, datetime):
            value = format_odata_time(value, digits=7)
        rendered[name] = copy.deepcopy(value)
        if name == "id":
            rendered["url"] = f"{base_url}/jobs/{fields['id']}"
    return rendered


def seed_jobs(store: JobStore, jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [store.add(job) for job in jobs]
