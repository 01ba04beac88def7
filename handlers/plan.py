"""The plan: which requests a message makes, and how it ends. Pure.

    admit(inbound, policy, now)  -> Job | Done     validate, allow-list, ids
    next_step(job, history)      -> Send | Done    the next request, or the outcome

The handler's loop and `python -m handlers check` both drive this module, so what
`check` prints is what the function sends. `history` is every exchange so far,
oldest first; the answer depends on nothing else, which is what lets the tests
walk each mode through each kind of reply without a socket.

Modes:
- replace: one PATCH with the message's conditions. A 412 that this message's own
  earlier write could explain (a redelivery, or a retried attempt) is checked
  with one GET: values in place -> applied by an earlier delivery.
- merge: GET, merge the update into what was read, PATCH the changed top-level
  properties guarded by the read ETag; on 412 read again, at most
  `merge_max_rounds` rounds.
- dry run: one GET; report what would change and whether the conditions hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import MISSING
from pydantic_core import from_json

from handlers.contract import JobUpdateMessage, check_ocp_date, given, is_job_id, parse_message
from handlers.endpoints import resolve_endpoint
from handlers.errors import EndpointError, InvalidMessage, Problem
from handlers.lineage import jitter
from handlers.outcomes import (
    Outcome,
    Result,
    Write,
    already_in_place,
    changes,
    evaluate_conditions,
    merge,
    mergeable,
)
from handlers.redaction import request_strings, without_echoes
from handlers.wire import (
    BatchError,
    BatchReply,
    BatchRequest,
    Sent,
    StatusClass,
    build_request,
    client_request_id_for,
)
from handlers.wire_formats import parse_http_date

__all__ = [
    "CopyPolicy",
    "Done",
    "Exchange",
    "Inbound",
    "Job",
    "Policy",
    "Purpose",
    "Send",
    "Settle",
    "admit",
    "budget_spent",
    "dead_letter_reason",
    "identity_hint",
    "internal_error",
    "next_step",
]


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the plan needs from a Service Bus message."""

    body: bytes
    message_id: str  # a scheduled copy's original id (handlers/lineage.py)
    delivery_count: int = 1
    enqueued_at: datetime | None = None  # for a copy: when the original was enqueued
    copy: int = 0  # scheduled copies before this one (0: the original message)
    # The id events and client-request-ids derive from: the message id, or for a
    # message without one, a digest of its body (stable across redeliveries).
    key: str = field(init=False)

    def __post_init__(self) -> None:
        key = self.message_id or "sha256:" + hashlib.sha256(self.body).hexdigest()
        object.__setattr__(self, "key", key)


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings the plan reads, fixed for the process."""

    allowed_endpoints: frozenset[str]
    default_endpoint: str | None  # where a message without `endpoint` goes
    api_version: str
    merge_max_rounds: int = 5
    max_delivery_count: int = 10
    copies: CopyPolicy | None = None  # retries off the lock; None: redelivery only


@dataclass(frozen=True, slots=True)
class CopyPolicy:
    """Retries off the lock: a transient failure schedules a copy of the message."""

    budget_seconds: float = 900.0  # from the original's enqueue time, across copies
    max_copies: int = 50
    first_backoff_seconds: float = 5.0  # without Retry-After: 5 s, 10 s, 20 s ... (jittered)
    max_backoff_seconds: float = 300.0


class Settle(StrEnum):
    """How the host settles the message once the plan is done."""

    complete = "complete"  # publish the event; the host completes the message
    retry = "retry"  # no event; RetryLater: the host abandons, Service Bus redelivers
    reschedule = "reschedule"  # no event; schedule a copy `delay` from now, complete this one
    give_up = "give-up"  # publish `given-up`, then the message goes to the DLQ


class Purpose(StrEnum):
    write = "write"  # the PATCH
    read = "read"  # merge and dry-run GET
    verify = "verify"  # replace: after a 412 that our own earlier write could explain


@dataclass(frozen=True, slots=True)
class Send:
    request: BatchRequest
    purpose: Purpose
    changes: Mapping[str, Any] = field(default_factory=dict)  # what this PATCH changes (merge)


@dataclass(frozen=True, slots=True)
class Exchange:
    step: Send
    sent: Sent


@dataclass(frozen=True, slots=True)
class Done:
    result: Result
    settle: Settle = Settle.complete
    delay_seconds: float = 0.0  # reschedule: when the copy is due


@dataclass(frozen=True, slots=True)
class Job:
    """An admitted message: everything the steps need, computed once."""

    message: JobUpdateMessage
    inbound: Inbound
    policy: Policy
    endpoint: str
    client_request_id: str
    now: datetime
    update: dict[str, Any]  # the update body as JSON values

    @property
    def mode(self) -> str:
        return "dry-run" if self.message.options.dry_run else self.message.mode


# --- Admission ---------------------------------------------------------------------


def admit(inbound: Inbound, policy: Policy, now: datetime) -> Job | Done:
    """A valid, allow-listed message becomes a Job; anything else is `rejected`."""
    try:
        message = parse_message(inbound.body)
        check_ocp_date(message, now)
    except InvalidMessage as invalid:
        job_id, endpoint_hint = identity_hint(inbound.body)
        endpoint = _listed_or_none(endpoint_hint, policy) if job_id else None
        return Done(
            Result(Outcome.rejected, job_id=job_id, endpoint=endpoint, problems=tuple(invalid.problems))
        )
    try:
        endpoint = resolve_endpoint(
            message.target_endpoint, policy.allowed_endpoints, policy.default_endpoint
        )
    except EndpointError as bad:
        path = "$.jobUrl" if message.job_url is not MISSING else "$.endpoint"
        problem = Problem(path, "endpoint_not_allowed", str(bad))
        return Done(Result(Outcome.rejected, job_id=message.target_job_id, problems=(problem,)))
    return Job(
        message=message,
        inbound=inbound,
        policy=policy,
        endpoint=endpoint,
        client_request_id=given(message.options.client_request_id) or client_request_id_for(inbound.key),
        now=now,
        update=message.update.body(),
    )


def identity_hint(body: bytes) -> tuple[str | None, str | None]:
    """Best-effort (jobId, endpoint) of an invalid message, so its event can still
    name the job. Never raises; only a well-formed id (it reaches log lines)."""
    try:  # pydantic's parser: bounded depth, so no nesting can exhaust a small stack
        data = from_json(body.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    job_id, endpoint = data.get("jobId"), data.get("endpoint")
    return (
        job_id if isinstance(job_id, str) and is_job_id(job_id) else None,
        endpoint if isinstance(endpoint, str) else None,
    )


def _listed_or_none(requested: str | None, policy: Policy) -> str | None:
    try:
        return resolve_endpoint(requested, policy.allowed_endpoints, policy.default_endpoint)
    except EndpointError:
        return None


# --- Steps -------------------------------------------------------------------------


def next_step(job: Job, history: tuple[Exchange, ...] = ()) -> Send | Done:
    """The next request for this job, or how the message ends."""
    if history and history[-1].sent.failure is not None:
        return _transient(job, history)
    if job.message.options.dry_run:
        return _dry_run(job, history)
    if job.message.mode == "merge":
        return _merge(job, history)
    return _replace(job, history)


def _replace(job: Job, history: tuple[Exchange, ...]) -> Send | Done:
    conditions = job.message.conditions
    if not history:
        return Send(_request(job, "PATCH", job.update, conditions.headers()), Purpose.write)
    patch = history[0]
    if len(history) == 1:
        reply = _reply(patch)
        status = reply.status_class
        conditioned = bool(conditions.model_fields_set)
        if status is StatusClass.ok:
            delta = {name: {"to": value} for name, value in job.update.items()}
            return _finish(
                job,
                history,
                Outcome.applied,
                patch,
                changes=delta,
                write=Write.this_delivery,
                conditions_met=True if conditioned else None,
            )
        if status is StatusClass.precondition_failed and _own_write_may_explain(job, history):
            return Send(_request(job, "GET"), Purpose.verify)
        return _final(job, history, patch)
    got = history[1]
    reply = _reply(got)
    read = reply.json() if reply.ok else None
    if read is not None and already_in_place(read, job.update, replace_nested=True):
        return _in_place_after_412(job, history, got, decisive_412=patch)
    # A real conflict: report the PATCH's 412, not the read's reply.
    return _final(job, history, patch)


def _merge(job: Job, history: tuple[Exchange, ...]) -> Send | Done:
    own_etag = given(job.message.conditions.if_match)
    if not history or (
        history[-1].step.purpose is Purpose.write
        and _reply(history[-1]).status_class is StatusClass.precondition_failed
    ):
        if history and own_etag is not None and not _own_write_may_explain(job, history):
            # The message pins the version: a 412 nothing of ours explains is final.
            return _final(job, history, history[-1])
        rounds = sum(1 for x in history if x.step.purpose is Purpose.read)
        if rounds >= job.policy.merge_max_rounds:
            # Every round's write lost a race: report the last 412.
            return _final(job, history, history[-1], conditions_met=False if own_etag else None)
        return Send(_request(job, "GET"), Purpose.read)
    last = history[-1]
    if last.step.purpose is Purpose.write:  # 2xx or a final refusal
        reply = _reply(last)
        if reply.ok:
            return _finish(
                job,
                history,
                Outcome.applied,
                last,
                changes=last.step.changes,
                write=Write.this_delivery,
                conditions_met=True if own_etag else None,
            )
        return _final(job, history, last)
    reply = _reply(last)  # the read
    if not reply.ok:
        return _final(job, history, last)
    current = reply.json()
    if current is None or not mergeable(current):
        return _unreadable(job, history, last)
    if not reply.etag:
        # Without the read's ETag the write could not be guarded against a lost update.
        error = BatchError("MissingETag", "the job read returned no ETag; merge will not write unguarded")
        return _finish(job, history, Outcome.failed, last, error=error, write=Write.none)
    merged = merge(current, job.update)
    if own_etag is not None and not evaluate_conditions(job.message.conditions, reply.etag, None):
        if _own_write_may_explain(job, history) and already_in_place(current, merged):
            return _in_place_after_412(job, history, last, decisive_412=None)
        # Found on the read: no write is sent that Batch would refuse with 412.
        return _finish(job, history, Outcome.precondition_failed, last, **_READ_MISMATCH, write=Write.none)
    diff = changes(current, merged)
    if not diff:
        own = _own_write_may_explain(job, history)
        return _finish(
            job,
            history,
            Outcome.applied,
            last,
            in_place=True,
            write=Write.earlier_delivery if own else Write.none,
            conditions_met=True if own_etag else None,
        )
    body = {name: merged[name] for name in diff}
    etag = reply.etag
    assert etag  # checked above
    return Send(_request(job, "PATCH", body, {"If-Match": _quoted(etag)}), Purpose.write, changes=diff)


# A message ifMatch found stale on a merge read: no request got a 412, so no HTTP status.
_READ_MISMATCH: dict[str, Any] = {
    "http_status": None,
    "error": BatchError("ConditionNotMet", "ifMatch does not match the job's ETag (read)"),
    "conditions_met": False,
}


def _quoted(etag: str) -> str:
    """The read ETag as an If-Match value, quoted as the SDK sends it (Batch answers
    with bare ETags). Sent back as read: it is Batch's own token."""
    return etag if len(etag) >= 2 and etag[0] == etag[-1] == '"' else f'"{etag}"'


def _dry_run(job: Job, history: tuple[Exchange, ...]) -> Send | Done:
    if not history:
        return Send(_request(job, "GET"), Purpose.read)
    got = history[0]
    reply = _reply(got)
    if not reply.ok:
        return _final(job, history, got)
    merging = job.message.mode == "merge"
    current = reply.json()
    if current is None or (merging and not mergeable(current)):
        return _unreadable(job, history, got)
    wanted = merge(current, job.update) if merging else job.update
    return _finish(
        job,
        history,
        Outcome.dry_run,
        got,
        changes=changes(current, wanted, replace_nested=not merging),
        conditions_met=evaluate_conditions(job.message.conditions, reply.etag, reply.last_modified),
    )


def _transient(job: Job, history: tuple[Exchange, ...]) -> Done:
    last = history[-1]
    result = _result(job, history, Outcome.given_up, last)
    if last.sent.reply is None:  # no attempt got a reply: say why instead
        # A transport's text may quote what it was sending: scrubbed like Batch's.
        why = _scrubbed(last.sent.failure or "no reply", _sent_strings(job, last.step.request))
        result = replace(result, error=BatchError("NoReply", why))
    retry_after = last.sent.reply.retry_after if last.sent.reply is not None else None
    return _give_up_or_retry(result, job.inbound, job.policy, job.now, retry_after)


def internal_error(inbound: Inbound, policy: Policy, exc: BaseException, now: datetime) -> Done:
    """An unforeseen exception takes the transient road: a bug must not lose a message."""
    error = BatchError("InternalError", f"{type(exc).__name__} in the job-update function")
    job_id, _ = identity_hint(inbound.body)
    result = Result(Outcome.given_up, job_id=job_id, error=error, scheduled_copies=inbound.copy)
    return _give_up_or_retry(result, inbound, policy, now, None)


def _unreadable(job: Job, history: tuple[Exchange, ...], read: Exchange) -> Done:
    """A 200 read whose body is not a job: nothing can be merged into it or compared."""
    error = BatchError(
        "UnreadableJob",
        "the job read returned a body that is not a job: not a JSON object, nested too deep, "
        "a non-finite number, or metadata that is not name/value pairs",
    )
    return _finish(job, history, Outcome.failed, read, error=error, write=Write.none)


def _give_up_or_retry(
    result: Result, inbound: Inbound, policy: Policy, now: datetime, retry_after: float | None
) -> Done:
    """Transient: try again later, by redelivery or by a scheduled copy, until the
    deliveries (or the copies' attempt budget) run out; then give up."""
    if inbound.delivery_count >= policy.max_delivery_count:
        return Done(result, Settle.give_up)
    copies = policy.copies
    if copies is None:
        return Done(result, Settle.retry)
    ceiling = min(copies.max_backoff_seconds, copies.first_backoff_seconds * 2 ** min(inbound.copy, 30))
    # Retry-After is Batch's own word; else exponential backoff, jittered per message.
    delay = (
        retry_after if retry_after is not None else ceiling * (0.5 + jitter(inbound.key, inbound.copy) / 2)
    )
    waited = _seconds_since(inbound.enqueued_at, now)
    if inbound.copy >= copies.max_copies or waited + delay > copies.budget_seconds:
        return Done(result, Settle.give_up)
    return Done(result, Settle.reschedule, delay_seconds=delay)


def budget_spent(job: Job) -> Done | None:
    """A redelivered message whose copies' budget is already spent gives up before
    calling Batch again: its `given-up` went out on the delivery that decided it (this
    one republishes the same event id, which the topic drops), and only the
    dead-letter copy failed. Without this, a new Batch reply could be a second outcome."""
    copies = job.policy.copies
    inbound = job.inbound
    if copies is None or inbound.delivery_count <= 1:
        return None
    elapsed = _seconds_since(inbound.enqueued_at, job.now)
    if inbound.copy < copies.max_copies and elapsed < copies.budget_seconds:
        return None
    error = BatchError("NoReply", "the attempt budget across scheduled copies was already spent")
    result = Result(
        Outcome.given_up,
        job_id=job.message.target_job_id,
        endpoint=job.endpoint,
        mode=job.mode,
        client_request_id=job.client_request_id,
        error=error,
        scheduled_copies=inbound.copy,
    )
    return Done(result, Settle.give_up)


def dead_letter_reason(
    result: Result, inbound: Inbound, now: datetime, attempts_before: int
) -> tuple[str, str]:
    """What the dead-letter queue says about a message given up: Batch's error code
    (or ours) as the reason; status, attempts and time waited as the description.
    Identifiers and counts only: no message text that could quote the request."""
    code = result.error.code if result.error is not None else "GivenUp"
    status = f"HTTP {result.http_status}" if result.http_status is not None else "no reply"
    waited = _seconds_since(inbound.enqueued_at, now)
    description = (
        f"given up: last {status} {code}; {attempts_before + result.attempts} Batch attempts over "
        f"{inbound.copy + 1} deliveries of scheduled copies (this one: delivery {inbound.delivery_count}); "
        f"{waited:.0f} s since the message was first enqueued"
    )
    return code, description


def _seconds_since(then: datetime | None, now: datetime) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # the host's EnqueuedTimeUtc can arrive without an offset
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())


# --- Helpers -----------------------------------------------------------------------


def _own_write_may_explain(job: Job, history: tuple[Exchange, ...]) -> bool:
    """Could this message's own earlier write have moved the ETag (or Last-Modified)?
    Only on a redelivery, or after a write that was retried (its reply may be lost)."""
    conditions = job.message.conditions
    if (
        job.message.mode != "merge"
        and conditions.if_match is MISSING
        and conditions.if_unmodified_since is MISSING
    ):
        return False  # If-None-Match / If-Modified-Since still hold after our own write
    return (
        job.inbound.delivery_count > 1
        or job.inbound.copy > 0
        or any(x.step.purpose is Purpose.write and x.sent.attempts > 1 for x in history)
    )


def _in_place_after_412(
    job: Job, history: tuple[Exchange, ...], read: Exchange, *, decisive_412: Exchange | None
) -> Done:
    """The values are in place although this delivery's condition did not hold."""
    modified = _reply(read).last_modified
    enqueued = job.inbound.enqueued_at
    if modified is not None and enqueued is not None:
        if enqueued.tzinfo is None:  # the host's EnqueuedTimeUtc can arrive without an offset
            enqueued = enqueued.replace(tzinfo=UTC)
        try:
            before_message = parse_http_date(modified) < enqueued.replace(microsecond=0)
        except ValueError:
            before_message = False
        if before_message:
            # Last written before this message existed: not ours. The condition failed.
            failed = {"conditions_met": False} if decisive_412 is not None else _READ_MISMATCH
            return _finish(
                job,
                history,
                Outcome.precondition_failed,
                decisive_412 or read,
                **failed,
                in_place=True,
                write=Write.none,
            )
    # Batch cannot say who wrote; our earlier delivery or attempt can explain it.
    return _finish(
        job,
        history,
        Outcome.applied,
        read,
        in_place=True,
        write=Write.earlier_delivery,
        conditions_met=None,
    )


def _final(job: Job, history: tuple[Exchange, ...], decisive: Exchange, **fields: Any) -> Done:
    """A 412 or a refusal: precondition-failed or failed, nothing written."""
    reply = _reply(decisive)
    if reply.status_class is StatusClass.precondition_failed:
        fields.setdefault("conditions_met", False if job.message.conditions.model_fields_set else None)
        return _finish(job, history, Outcome.precondition_failed, decisive, write=Write.none, **fields)
    return _finish(job, history, Outcome.failed, decisive, write=Write.none, **fields)


def _finish(
    job: Job, history: tuple[Exchange, ...], outcome: Outcome, decisive: Exchange, **fields: Any
) -> Done:
    return Done(_result(job, history, outcome, decisive, **fields))


def _result(
    job: Job, history: tuple[Exchange, ...], outcome: Outcome, decisive: Exchange, **fields: Any
) -> Result:
    """The outcome record, from the one exchange that decided it (and no other)."""
    reply = decisive.sent.reply
    values: dict[str, Any] = {
        "job_id": job.message.target_job_id,
        "endpoint": job.endpoint,
        "mode": job.mode,
        "client_request_id": job.client_request_id,
        "attempts": sum(x.sent.attempts for x in history),
        "scheduled_copies": job.inbound.copy,
        "flow_wait_ms": _flow_wait_ms(history),
    }
    if reply is not None:
        ok = reply.ok
        values["http_status"] = reply.status
        values["error"] = None if ok else _unechoed(reply.error(), job, decisive.step.request)
        values["request_id"] = reply.request_id
        values["client_request_id"] = reply.client_request_id or job.client_request_id
        values["etag"] = reply.etag if ok else None
        values["last_modified"] = reply.last_modified if ok else None
    values.update(fields)  # one construction: a frozen record is built once
    return Result(outcome, **values)


def _flow_wait_ms(history: tuple[Exchange, ...]) -> float | None:
    waits = [x.sent.flow_wait for x in history if x.sent.flow_wait is not None]
    return sum(waits) * 1000 if waits else None


def _unechoed(error: BatchError | None, job: Job, request: BatchRequest) -> BatchError | None:
    """Batch's error with anything it quotes back from our request taken out: a pool
    specification's passwords (or, in merge mode, values read from the job and sent
    back) must not come back to subscribers that way."""
    if error is None:
        return error
    strings = _sent_strings(job, request)
    return BatchError(
        error.code,
        _scrubbed(error.message, strings),
        {k: _scrubbed(v, strings) for k, v in error.values.items()},
    )


def _sent_strings(job: Job, request: BatchRequest) -> frozenset[str]:
    sent = json.loads(request.body) if request.body else None
    return request_strings(job.update) | request_strings(sent)


def _scrubbed(text: str, strings: frozenset[str]) -> str:
    # Scrubbing costs (strings x text), so a huge echo is cut first. That cut can split a
    # request string, leaving a prefix no replacement finds, and replacing long strings
    # before it can pull that prefix into the final 1 KiB: so after a cut, the tail a split
    # string could have left is dropped too.
    cut = text[: 16 * _ERROR_TEXT]
    scrubbed = without_echoes(cut, strings)
    if len(cut) < len(text) and strings:
        scrubbed = scrubbed[: max(0, len(scrubbed) - (max(map(len, strings)) - 1))]
    return scrubbed[:_ERROR_TEXT]


_ERROR_TEXT = 1024  # characters of a Batch error text or value kept for the event


def _reply(exchange: Exchange) -> BatchReply:
    reply = exchange.sent.reply
    assert reply is not None  # failures (no reply) are handled before any step reads one
    return reply


def _request(
    job: Job,
    method: str,
    body: Mapping[str, Any] | None = None,
    condition_headers: Mapping[str, str] | None = None,
) -> BatchRequest:
    options = job.message.options
    return build_request(
        method,
        job.endpoint,
        job.message.target_job_id,
        api_version=job.policy.api_version,
        client_request_id=job.client_request_id,
        ocp_date=given(options.ocp_date) or job.now,
        return_client_request_id=options.return_client_request_id,
        server_timeout=given(options.timeout),
        condition_headers=condition_headers,
        # allow_nan=False: a non-finite number must never go out as invalid JSON.
        body=None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False).encode(),
    )
