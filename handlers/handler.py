"""The handler loop: one queue message in, one outcome out.

    admit  ->  while the plan says Send: send it, add the exchange  ->  publish  ->  settle

Every decision is the plan's (`plan.py`); this loop only does the I/O between
them: the Batch calls, the publish, the log line. Settling follows `Done.settle`:
return (the host completes the message), or raise `RetryLater` (the host abandons
it and Service Bus redelivers it; on the last delivery `given-up` is published
first, so the outcome stream stays complete). With explicit settlement
(`JOB_UPDATES_SETTLEMENT=actions`) the same points call `settlement.settle(...)`
(`settlement.py`): complete, or dead-letter with the plan's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from handlers import telemetry
from handlers.batch_client import BatchClient
from handlers.errors import PublisherClosed, RetryLater
from handlers.events import OutcomeEvent, account_of, build_event
from handlers.lineage import Lineage
from handlers.outcomes import Result
from handlers.plan import (
    CopyPolicy,
    Done,
    Exchange,
    Inbound,
    Job,
    Policy,
    Settle,
    admit,
    budget_spent,
    dead_letter_reason,
    internal_error,
    next_step,
)
from handlers.publisher import Publisher
from handlers.redaction import redact_text
from handlers.requeue import Envelope, Requeue
from handlers.settings import Settings
from handlers.settlement import Settlement

__all__ = ["Inbound", "JobUpdateHandler", "RetryLater", "policy_from"]

log = logging.getLogger("handlers.job_update")

PUBLISH_RETRY_FIRST_WAIT = 1.0
# The log line's outcome for settlements that publish nothing (yet).
_LOGGED = {Settle.retry: "transient", Settle.reschedule: "rescheduled"}
PUBLISH_RETRY_MAX_WAIT = 10.0


def policy_from(settings: Settings, *, can_requeue: bool = False) -> Policy:
    copies = None
    if can_requeue and settings.scheduled_retries and not settings.sessions_enabled:
        copies = CopyPolicy(
            budget_seconds=settings.attempt_budget_seconds, max_copies=settings.max_scheduled_copies
        )
    return Policy(
        allowed_endpoints=settings.allowed_endpoints,
        default_endpoint=settings.endpoint_when_unnamed,
        api_version=settings.api_version,
        merge_max_rounds=settings.merge_max_rounds,
        max_delivery_count=settings.max_delivery_count,
        copies=copies,
    )


class JobUpdateHandler:
    """Drives the plan for one message: send what it asks, publish how it ends."""

    def __init__(
        self,
        settings: Settings,
        batch: BatchClient,
        publisher: Publisher,
        *,
        requeue: Requeue | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.policy = policy_from(settings, can_requeue=requeue is not None)
        self.batch = batch
        self.publisher = publisher
        self.requeue = requeue
        self.clock = clock

    async def handle(
        self, inbound: Inbound, envelope: Envelope | None = None, settlement: Settlement | None = None
    ) -> Result:
        """Returns: the host completes the message. Raises RetryLater: it abandons it.
        With `settlement` (explicit settlement) the handler completes or dead-letters
        through it; what raises is abandoned by the caller (`settlement.run_settled`)."""
        if not telemetry.ENABLED:  # the one check per message: off, no span exists
            return await self._handle(inbound, envelope, settlement, None)
        with telemetry.handling_span(
            message_id=inbound.key,
            delivery_count=inbound.delivery_count,
            copy=inbound.copy,
            queue=self.settings.job_updates_queue,
            properties=envelope.application_properties if envelope is not None else None,
        ) as trace:
            return await self._handle(inbound, envelope, settlement, trace)

    async def _handle(
        self,
        inbound: Inbound,
        envelope: Envelope | None,
        settlement: Settlement | None,
        trace: telemetry.HandlingTrace | None,
    ) -> Result:
        started = time.perf_counter()
        try:
            done = await self._run(inbound)
        except Exception as unexpected:  # a bug or an unforeseen reply: same road as a transient
            log.exception("job-update handling failed unexpectedly (messageId=%s)", redact_text(inbound.key))
            done = internal_error(inbound, self.policy, unexpected, self.clock())
        duration_ms = (time.perf_counter() - started) * 1000
        if trace is not None:  # first: the log line below then carries the job id too
            result = done.result
            trace.finish(
                outcome=_LOGGED.get(done.settle, result.outcome.value),
                job_id=result.job_id,
                account=account_of(result.endpoint),
                attempts=result.attempts,
                error_code=result.error.code if result.error else None,
                http_status=result.http_status,
                duration_s=duration_ms / 1000,
            )
        self._log(done, inbound, duration_ms)
        if done.settle is Settle.reschedule:
            await self._schedule_copy(done, inbound, envelope or _envelope_of(inbound))
            if settlement is not None:
                await settlement.settle(Settle.reschedule)
            return done.result  # the copy carries the message on; this one is complete
        if done.settle is not Settle.retry:
            last = inbound.delivery_count >= self.policy.max_delivery_count
            if trace is None:
                event = build_event(done.result, inbound.key, duration_ms=duration_ms, now=self.clock())
                await self._publish(event, last=last)
            else:
                await self._publish_traced(done.result, inbound.key, duration_ms, last=last)
        if done.settle is Settle.complete:
            if settlement is not None:
                await settlement.settle(Settle.complete)
            return done.result
        reason = done.result.error.code if done.result.error else done.result.outcome.value
        if done.settle is Settle.give_up:
            if settlement is not None:  # the DLQ entry itself says why: no dead-letter copy
                why, description = dead_letter_reason(
                    done.result, inbound, self.clock(), envelope.lineage.attempts if envelope else 0
                )
                await settlement.settle(Settle.give_up, reason=why, description=description)
                return done.result
            if self.requeue is not None:
                await self._dead_letter(done, inbound, envelope or _envelope_of(inbound))
                return done.result
            raise RetryLater(f"gave up on delivery {inbound.delivery_count}: {reason}")
        raise RetryLater(reason)

    async def _schedule_copy(self, done: Done, inbound: Inbound, envelope: Envelope) -> None:
        assert self.requeue is not None  # the plan reschedules only when a requeue exists
        due = self.clock() + timedelta(seconds=done.delay_seconds)
        attempts = envelope.lineage.attempts + done.result.attempts
        try:
            await self.requeue.schedule_copy(envelope, inbound.copy + 1, due, attempts)
        except Exception as exc:
            # Not scheduled: fall back to redelivery (the original is abandoned).
            log.warning("scheduling a retry copy failed (%s); abandoning instead", type(exc).__name__)
            raise RetryLater("could not schedule a retry copy") from exc

    async def _dead_letter(self, done: Done, inbound: Inbound, envelope: Envelope) -> None:
        assert self.requeue is not None
        reason, description = dead_letter_reason(
            done.result, inbound, self.clock(), envelope.lineage.attempts
        )
        attempts = envelope.lineage.attempts + done.result.attempts
        try:
            await self.requeue.dead_letter(envelope, reason, description, attempts)
        except Exception as exc:
            # The given-up event is out; without the copy, redelivery runs the message again.
            log.warning("sending the dead-letter copy failed (%s); abandoning instead", type(exc).__name__)
            raise RetryLater("could not send the dead-letter copy") from exc

    async def _publish_traced(self, result: Result, key: str, duration_ms: float, *, last: bool) -> None:
        """The publish inside its span; the event carries that span's context out."""
        with telemetry.publish_span(topic=self.settings.outcome_topic) as span:
            context = telemetry.trace_headers(span)
            event = build_event(result, key, duration_ms=duration_ms, now=self.clock(), trace_context=context)
            telemetry.name_message(span, event.id)
            await self._publish(event, last=last)

    async def _publish(self, event: OutcomeEvent, *, last: bool) -> None:
        """Publish; on the last delivery, keep trying for `publish_hold_seconds`.

        Before the last delivery a failed publish raises: the message is abandoned
        and redelivered, and the redelivery publishes (the event id is stable, so
        the topic drops a copy that did land). On the last delivery an abandon
        would dead-letter the message with no event, so the publish is retried
        here, holding the lock, until the topic is back or the hold runs out.
        """
        hold_until = time.monotonic() + self.settings.publish_hold_seconds
        wait = PUBLISH_RETRY_FIRST_WAIT
        while True:
            try:
                await self.publisher.publish([event])
                return
            except Exception as exc:
                # A closed publisher (shutting down) will not come back: no hold in place.
                if not last or isinstance(exc, PublisherClosed) or time.monotonic() + wait > hold_until:
                    if last:
                        log.error(
                            "job-update outcome=unpublished jobId=%s messageId=%s: the outcome event could "
                            "not be published on the last delivery; the message is dead-lettered without it",
                            event.job_id,
                            redact_text(event.source_message_id),
                        )
                    raise RetryLater(f"publishing the outcome failed: {type(exc).__name__}") from exc
                log.warning("publishing the outcome failed on the last delivery; retrying in %.1f s", wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, PUBLISH_RETRY_MAX_WAIT)

    async def _run(self, inbound: Inbound) -> Done:
        job = admit(inbound, self.policy, self.clock())
        if isinstance(job, Done):
            return job
        spent = budget_spent(job)
        if spent is not None:
            return spent
        return await self._drive(job)

    async def _drive(self, job: Job) -> Done:
        deadline = time.monotonic() + self.settings.retry_budget_seconds
        # With copies, a long wait is spent off the lock; without, inside the budget.
        max_wait = self.settings.offlock_wait_seconds if self.policy.copies is not None else None
        history: tuple[Exchange, ...] = ()
        while True:
            step = next_step(job, history)
            if isinstance(step, Done):
                return step
            sent = await self.batch.send(step.request, deadline=deadline, max_wait=max_wait)
            history = (*history, Exchange(step, sent))

    def _log(self, done: Done, inbound: Inbound, duration_ms: float) -> None:
        # One line per message; infra's alert queries parse these key=value pairs.
        if not log.isEnabledFor(logging.INFO):
            return  # skip the argument work (redaction) when nobody listens
        result = done.result
        log.info(
            "job-update outcome=%s jobId=%s httpStatus=%s errorCode=%s attempts=%d messageId=%s "
            "durationMs=%.1f",
            _LOGGED.get(done.settle, result.outcome.value),
            result.job_id,
            result.http_status,
            result.error.code if result.error else None,
            result.attempts,
            redact_text(inbound.key),
            duration_ms,
        )


def _envelope_of(inbound: Inbound) -> Envelope:
    """For callers without the received message (tests, tools): the body and lineage."""
    return Envelope(inbound.body, Lineage(inbound.key, inbound.enqueued_at, inbound.copy))
