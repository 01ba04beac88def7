"""What happened to a message: the outcome record and the pure comparisons behind it.

`Result` is immutable: the plan builds it once, from the exchange that decided the
outcome, so nothing from an earlier round (a 412 merge round, a retried 503) can
leak into it. Comparing a job with what a message asks for, and evaluating
preconditions locally (dry runs), are pure functions over data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from handlers.contract import Conditions, given
from handlers.errors import Problem
from handlers.wire import BatchError
from handlers.wire_formats import MAX_TICKS, bare_etag, canonical_duration, format_duration, parse_http_date

__all__ = [
    "Outcome",
    "Result",
    "Write",
    "already_in_place",
    "changes",
    "evaluate_conditions",
    "merge",
]


class Outcome(StrEnum):
    applied = "applied"  # the job holds the requested values (see Result.write for who wrote them)
    dry_run = "dry-run"
    precondition_failed = "precondition-failed"  # a condition did not hold; nothing written
    rejected = "rejected"  # the message is invalid: nothing was sent
    failed = "failed"  # Batch refused the request (400/401/403/404/409/413 ...)
    given_up = "given-up"  # transient failures outlasted the retries on the last delivery


class Write(StrEnum):
    """Whether the values in place are known to be this message's write."""

    this_delivery = "this-delivery"  # this delivery's PATCH got 200
    # Values in place, and this message's earlier delivery (or a retried attempt whose
    # reply was lost) can explain the 412 or the moved ETag. Batch cannot say who wrote.
    earlier_delivery = "earlier-delivery"
    none = "none"  # this message wrote nothing


@dataclass(frozen=True, slots=True)
class Result:
    """Everything the outcome event reports about one message."""

    outcome: Outcome
    job_id: str | None = None
    endpoint: str | None = None
    mode: str | None = None
    http_status: int | None = None
    error: BatchError | None = None
    problems: tuple[Problem, ...] = ()
    request_id: str | None = None
    client_request_id: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 0
    changes: Mapping[str, Any] = field(default_factory=dict)
    write: Write | None = None  # None where nothing could be written (rejected, dry run)
    # Did the message's own conditions hold? True/False when Batch or a read said so;
    # None when there were none, or when it cannot be known (a 412 that our own
    # earlier write would also cause). Dry runs: would they hold now.
    conditions_met: bool | None = None
    in_place: bool = False  # the job already held every requested value (nothing to write)
    scheduled_copies: int = 0  # copies scheduled before this delivery (retries off the lock)
    # Time this delivery waited for its Batch account under flow control (a slot, a
    # Retry-After pause); None when flow control is off or nothing was sent.
    flow_wait_ms: float | None = None


# --- Comparing a job with an update ------------------------------------------------

_DURATION_KEYS = frozenset({"maxWallClockTime"})


def _normalise(value: Any, key: str = "") -> Any:
    """Canonical form for comparison: durations as ISO, enums lower-case."""
    if isinstance(value, dict):
        return {k: _normalise(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str):
        if key in _DURATION_KEYS:
            try:
                return canonical_duration(value)
            except ValueError:
                return value
        if key in {"onAllTasksComplete", "poolLifetimeOption"}:
            return value.lower()
    return value


def _contains(current: Any, wanted: Any) -> bool:
    """True when every field in `wanted` is present in `current` with the same value."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_contains(current.get(k), v) for k, v in wanted.items())
    return bool(current == wanted)


# What a replace-mode PATCH leaves in a nested object it names: Batch resets the
# fields the object omits to these (the documented defaults). poolInfo and
# networkConfiguration have no documented reset values: compared field by field.
_REPLACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "constraints": {"maxWallClockTime": format_duration(MAX_TICKS), "maxTaskRetryCount": 0},
}


def _same(name: str, old: Any, new: Any, *, replace_nested: bool) -> bool:
    defaults = _REPLACE_DEFAULTS.get(name)
    if replace_nested and defaults is not None and isinstance(new, dict):
        return bool(old == _normalise({**defaults, **new}))
    return _contains(old, new)


def already_in_place(job: dict[str, Any], body: dict[str, Any], *, replace_nested: bool = False) -> bool:
    """Does the job already hold what the update would leave? (a redelivery after success)"""
    current, wanted = _normalise(job), _normalise(body)
    return all(_same(k, current.get(k), v, replace_nested=replace_nested) for k, v in wanted.items())


def changes(job: dict[str, Any], body: dict[str, Any], *, replace_nested: bool = False) -> dict[str, Any]:
    """Top-level properties the update would change: {name: {"from": old, "to": new}}.

    With `replace_nested` (replace mode), a nested object counts as changed unless the
    stored one equals it with Batch's reset values for the fields it leaves out.
    """
    current, wanted = _normalise(job), _normalise(body)
    return {
        name: {"from": job.get(name), "to": body[name]}
        for name, new in wanted.items()
        if not _same(name, current.get(name), new, replace_nested=replace_nested)
    }


def mergeable(job: dict[str, Any]) -> bool:
    """Can `merge` read this job? Its metadata must be name/value pairs, as Batch's
    contract says; a read holding anything else (a proxy's or a broken reply) is not a
    job to merge into, and must end as a failure, not as an exception and a redelivery."""
    metadata = job.get("metadata")
    return not isinstance(metadata, list) or all(
        isinstance(item, dict) and isinstance(item.get("name"), str) and "value" in item for item in metadata
    )


def merge(job: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge mode: apply only the named nested fields onto the job's current values.

    Objects merge field by field (recursively); metadata merges by name (upsert,
    keeping order); poolInfo switching between poolId and autoPoolSpecification
    replaces it; scalars and other lists replace. Returns the full new values
    of the top-level properties the update names. The job must be `mergeable`.
    """
    merged: dict[str, Any] = {}
    for name, new in update.items():
        old = job.get(name)
        if name == "poolInfo" and isinstance(old, dict) and set(new) != set(old):
            # poolId and autoPoolSpecification are one choice: switching replaces it whole.
            merged[name] = new
        elif name == "metadata" and isinstance(old, list):
            by_name = {item["name"]: item["value"] for item in old}
            by_name.update({item["name"]: item["value"] for item in new})
            merged[name] = [{"name": k, "value": v} for k, v in by_name.items()]
        elif isinstance(new, dict) and isinstance(old, dict):
            merged[name] = _merge_objects(old, new)
        else:
            merged[name] = new
    return merged


def _merge_objects(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        out[key] = (
            _merge_objects(old[key], value)
            if isinstance(value, dict) and isinstance(old.get(key), dict) and key != "pool"
            else value
        )
    return out


def evaluate_conditions(conditions: Conditions, etag: str | None, last_modified: str | None) -> bool | None:
    """Would Batch's preconditions hold against this ETag / Last-Modified? (dry runs)

    None when the message has none. Both headers of an allowed pair must hold.
    """
    if not conditions.model_fields_set:
        return None
    current = bare_etag(etag) if etag else None
    if_match, if_none_match = given(conditions.if_match), given(conditions.if_none_match)
    unmodified_since, modified_since = (
        given(conditions.if_unmodified_since),
        given(conditions.if_modified_since),
    )
    modified: datetime | None = None
    if unmodified_since is not None or modified_since is not None:
        try:  # only a date condition reads Last-Modified; an odd one means "unknown"
            modified = parse_http_date(last_modified) if last_modified else None
        except ValueError:
            modified = None
        if modified is None:
            return None
    held = True
    if if_match is not None:
        held &= if_match == "*" or bare_etag(if_match) == current
    if if_none_match is not None:
        held &= if_none_match != "*" and bare_etag(if_none_match) != current
    if unmodified_since is not None and modified is not None:
        held &= modified <= unmodified_since
    if modified_since is not None and modified is not None:
        held &= modified > modified_since
    return held
