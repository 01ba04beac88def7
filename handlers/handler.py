"""The handler: one queue message in, one outcome out.

    parse + validate  ->  resolve endpoint  ->  apply (replace | merge | dry run)
        ->  outcome event published  ->  return (host completes the message)

Transient failures raise `RetryLater` so the host abandons the message and
Service Bus redelivers it; on the last delivery a `given-up` event is
published first, so the outcome stream stays complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from handlers.batch_client import (
    AttemptsExhausted,
    BatchClient,
    BatchError,
    BatchReply,
    Sent,
    build_request,
    client_request_id_for,
)
from handlers.contract import (
    InvalidMessage,
    JobUpdateMessage,
    Problem,
    check_ocp_date,
    is_job_id,
    parse_message,
)
from handlers.endpoints import EndpointError, resolve_endpoint
from handlers.events import build_event
from handlers.outcomes import (
    Outcome,
    Result,
    already_in_place,
    changes,
    classify,
    evaluate_conditions,
    may_be_our_own_write,
    merge,
)
from handlers.publisher import Publisher
from handlers.redaction import redact_text
from handlers.settings import Settings
from handlers.wire_formats import parse_etag

log = logging.getLogger("handlers.job_update")


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the handler needs from a Service Bus message."""

    body: bytes
    message_id: str
    delivery_count: int = 1


class RetryLater(Exception):
    """Raised to the host: abandon the message so Service Bus redelivers it."""


class _Transient(Exception):
    def __init__(self, result: Result, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.result = result


class JobUpdateHandler:
    """Composes validation, the Batch client and the publisher for one message."""

    def __init__(
        self,
        settings: Settings,
        batch: BatchClient,
        publisher: Publisher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.batch = batch
        self.publisher = publisher
        self.clock = clock

    async def handle(self, inbound: Inbound) -> Result:
        message_id = inbound.message_id or "sha256:" + hashlib.sha256(inbound.body).hexdigest()
        started = time.perf_counter()
        try:
            result = await self.apply(inbound)
        except _Transient as transient:
            await self._retry_later(inbound, message_id, started, transient.result, transient)
        except Exception as unexpected:  # a bug or an unforeseen reply: same road as a transient
            log.exception("job-update handling failed unexpectedly (messageId=%s)", redact_text(message_id))
            error = BatchError("InternalError", f"{type(unexpected).__name__} in the job-update function")
            failed = Result(Outcome.given_up, job_id=_identity_hint(inbound.body)[0], error=error)
            await self._retry_later(inbound, message_id, started, failed, unexpected)
        result.duration_ms = (time.perf_counter() - started) * 1000
        await self.publisher.publish([build_event(result, message_id, now=self.clock())])
        self._log(result, message_id, started)
        return result

    async def _retry_later(
        self, inbound: Inbound, message_id: str, started: float, result: Result, cause: BaseException
    ) -> NoReturn:
        """Abandon for redelivery; on the last delivery publish `given-up` first."""
        last = inbound.delivery_count >= self.settings.max_delivery_count
        self._log(result, message_id, started, transient=not last)
        if not last:
            raise RetryLater(str(cause)) from cause
        result.outcome = Outcome.given_up
        result.duration_ms = (time.perf_counter() - started) * 1000
        await self.publisher.publish([build_event(result, message_id, now=self.clock())])
        raise RetryLater(f"gave up on delivery {inbound.delivery_count}: {cause}") from cause

    async def apply(self, inbound: Inbound) -> Result:
        """Decide and carry out the update; never publishes."""
        try:
            message = parse_message(inbound.body)
            check_ocp_date(message, self.clock())
            endpoint = resolve_endpoint(
                message.endpoint, self.settings.allowed_endpoints, self.settings.endpoint_when_unnamed
            )
        except InvalidMessage as invalid:
            job_id, endpoint_hint = _identity_hint(inbound.body)
            return Result(
                Outcome.rejected,
                job_id=job_id,
                endpoint=self._endpoint_or_none(endpoint_hint) if job_id else None,
                problems=invalid.problems,
            )
        except EndpointError as bad_endpoint:
            problem = Problem("$.endpoint", "endpoint_not_allowed", str(bad_endpoint))
            return Result(Outcome.rejected, job_id=message.job_id, problems=[problem])

        result = Result(
            Outcome.applied,
            job_id=message.target_job_id,
            endpoint=endpoint,
            mode="dry-run" if message.options.dry_run else message.mode,
            client_request_id=message.options.client_request_id or client_request_id_for(inbound.message_id),
        )
        deadline = time.monotonic() + self.settings.retry_budget_seconds
        try:
            if message.options.dry_run:
                await self._dry_run(message, result, deadline)
            elif message.mode == "merge":
                await self._merge(message, result, inbound, deadline)
            else:
                await self._replace(message, result, inbound, deadline)
        except AttemptsExhausted as exhausted:
            result.attempts += exhausted.attempts
            if exhausted.last.reply is not None:
                result.note_reply(exhausted.last.reply)
            raise _Transient(result, exhausted) from exhausted
        return result

    # --- the three ways to apply ----------------------------------------------------

    async def _replace(
        self, message: JobUpdateMessage, result: Result, inbound: Inbound, deadline: float
    ) -> None:
        body = message.update.body()
        sent = await self._send(message, result, "PATCH", deadline, body=body)
        result.outcome = classify(sent.reply)
        if result.outcome is Outcome.applied:
            result.changes = {name: {"to": value} for name, value in body.items()}
        elif (
            result.outcome is Outcome.precondition_failed
            and message.conditions.if_match is not None
            and may_be_our_own_write(inbound.delivery_count, sent.attempts)
        ):
            await self._maybe_already_applied(message, result, body, deadline)

    async def _merge(
        self, message: JobUpdateMessage, result: Result, inbound: Inbound, deadline: float
    ) -> None:
        wanted = message.update.body()
        own_etag = message.conditions.if_match
        suspect_own_write = inbound.delivery_count > 1
        for _round in range(self.settings.merge_max_rounds):
            got = await self._send(message, result, "GET", deadline)
            if not got.reply.ok:
                result.outcome = classify(got.reply)
                return
            job, etag = got.reply.json(), got.reply.etag
            merged = merge(job, wanted)
            if own_etag is not None and not evaluate_conditions(message.conditions, etag, None):
                if suspect_own_write and already_in_place(job, merged):
                    self._already(result, got.reply)
                else:
                    # Found on the read: no write is sent that Batch would refuse with 412.
                    result.outcome = Outcome.precondition_failed
                    result.http_status = None
                    result.error = BatchError(
                        "ConditionNotMet", "ifMatch does not match the job's ETag (read)"
                    )
                return
            diff = changes(job, merged)
            if not diff:
                self._already(result, got.reply)
                return
            body = {name: merged[name] for name in diff}
            # Quoted, as the SDK sends it (Batch answers with bare ETags).
            guard = parse_etag(etag) if etag else "*"
            sent = await self._send(message, result, "PATCH", deadline, body=body, if_match=guard)
            result.outcome = classify(sent.reply)
            if result.outcome is Outcome.applied:
                result.changes = diff
                return
            if result.outcome is not Outcome.precondition_failed:
                return
            # 412: someone else wrote between our read and our write, or (after a
            # retry) our own write landed and its reply was lost. Read again.
            suspect_own_write = suspect_own_write or sent.attempts > 1
        result.outcome = Outcome.precondition_failed

    async def _dry_run(self, message: JobUpdateMessage, result: Result, deadline: float) -> None:
        got = await self._send(message, result, "GET", deadline)
        if not got.reply.ok:
            result.outcome = classify(got.reply)
            return
        job = got.reply.json()
        body = message.update.body()
        merging = message.mode == "merge"
        result.outcome = Outcome.dry_run
        result.changes = changes(job, merge(job, body) if merging else body, replace_nested=not merging)
        result.conditions_met = evaluate_conditions(
            message.conditions, got.reply.etag, got.reply.last_modified
        )

    # --- helpers --------------------------------------------------------------------

    async def _send(
        self,
        message: JobUpdateMessage,
        result: Result,
        method: str,
        deadline: float,
        *,
        body: dict[str, Any] | None = None,
        if_match: str | None = None,
    ) -> Sent:
        assert result.endpoint is not None and result.client_request_id is not None
        request = build_request(
            method,
            result.endpoint,
            message.target_job_id,
            api_version=self.settings.api_version,
            client_request_id=result.client_request_id,
            options=message.options,
            conditions=message.conditions if method == "PATCH" else None,
            body=body,
            if_match=if_match,
            now=self.clock(),
        )
        sent = await self.batch.send(request, deadline=deadline)
        result.attempts += sent.attempts
        result.note_reply(sent.reply)
        return sent

    async def _maybe_already_applied(
        self, message: JobUpdateMessage, result: Result, body: dict[str, Any], deadline: float
    ) -> None:
        conflict = (result.http_status, result.error, result.request_id)
        got = await self._send(message, result, "GET", deadline)
        if got.reply.ok and already_in_place(got.reply.json(), body):
            self._already(result, got.reply)
        else:
            # A real conflict: report the PATCH's 412, not the read's reply.
            result.outcome = Outcome.precondition_failed
            result.http_status, result.error, result.request_id = conflict

    def _endpoint_or_none(self, requested: str | None) -> str | None:
        try:
            return resolve_endpoint(
                requested, self.settings.allowed_endpoints, self.settings.endpoint_when_unnamed
            )
        except EndpointError:
            return None

    @staticmethod
    def _already(result: Result, reply: BatchReply) -> None:
        result.outcome = Outcome.applied
        result.already_applied = True
        result.error = None
        result.http_status = reply.status

    def _log(self, result: Result, message_id: str, started: float, *, transient: bool = False) -> None:
        # One line per message; infra's alert queries parse these key=value pairs.
        if not log.isEnabledFor(logging.INFO):
            return  # skip the argument work (redaction) when nobody listens
        log.info(
            "job-update outcome=%s jobId=%s httpStatus=%s errorCode=%s attempts=%d messageId=%s "
            "durationMs=%.1f",
            "transient" if transient else result.outcome.value,
            result.job_id,
            result.http_status,
            result.error.code if result.error else None,
            result.attempts,
            redact_text(message_id),
            (time.perf_counter() - started) * 1000,
        )


def _identity_hint(body: bytes) -> tuple[str | None, str | None]:
    """Best-effort (jobId, endpoint) from an invalid message, so its event can
    still name the job. Only a well-formed id: it reaches log lines alerts parse."""
    try:
        data = json.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    job_id, endpoint = data.get("jobId"), data.get("endpoint")
    return (
        job_id if isinstance(job_id, str) and is_job_id(job_id) else None,
        endpoint if isinstance(endpoint, str) else None,
    )
