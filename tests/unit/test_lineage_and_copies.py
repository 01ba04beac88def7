"""Retries off the lock: a copy's lineage, the plan's reschedule/give-up decision,
and the handler scheduling copies and dead-letter copies (socket-free)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.lineage import (
    ATTEMPTS,
    COPY,
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    ORIGINAL_ENQUEUED_TIME,
    ORIGINAL_MESSAGE_ID,
    Lineage,
    copy_message_id,
    copy_properties,
    dead_letter_message_id,
    jitter,
    lineage_of,
)
from handlers.outcomes import Outcome, Result
from handlers.plan import CopyPolicy, Inbound, Policy, Settle, dead_letter_reason, internal_error
from handlers.wire import BatchError

FIRST = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ENDPOINT = "https://acct.westeurope.batch.azure.com"
COPIES = CopyPolicy(budget_seconds=900, max_copies=5, first_backoff_seconds=5, max_backoff_seconds=300)
POLICY = Policy(frozenset({ENDPOINT}), ENDPOINT, "2025-06-01", max_delivery_count=10, copies=COPIES)


def props_for(original: str, copy: int, **extra: Any) -> dict[str, Any]:
    return {
        ORIGINAL_MESSAGE_ID: original,
        COPY: copy,
        ORIGINAL_ENQUEUED_TIME: FIRST.isoformat(),
        ATTEMPTS: 7,
        **extra,
    }


# --- lineage ---------------------------------------------------------------------


def test_a_plain_message_is_its_own_original() -> None:
    lineage = lineage_of("m-1", FIRST, {"traceparent": "00-abc"})
    assert lineage == Lineage("m-1", FIRST, 0)


def test_a_copy_is_read_back_with_its_original_id_time_and_count() -> None:
    later = FIRST + timedelta(minutes=3)
    lineage = lineage_of(copy_message_id("m-1", 2), later, props_for("m-1", 2))
    assert lineage == Lineage("m-1", FIRST, 2, 7)


@pytest.mark.parametrize(
    "message_id",
    [
        "someone-else",  # not the derived id: a producer setting our property names
        copy_message_id("m-1", 3),  # the id of another copy number
        copy_message_id("m-2", 2),  # the id of another message's copy
    ],
)
def test_copy_properties_on_a_message_we_did_not_make_are_ignored(message_id: str) -> None:
    assert lineage_of(message_id, FIRST, props_for("m-1", 2)) == Lineage(message_id, FIRST, 0)


@pytest.mark.parametrize("copy", [0, -1, True, "2", 1001, None])
def test_odd_copy_counts_mean_an_original(copy: Any) -> None:
    message_id = copy_message_id("m-1", 2)
    assert lineage_of(message_id, FIRST, props_for("m-1", copy)).copy == 0


def test_a_dead_letter_copy_carries_its_reason() -> None:
    props = props_for("m-1", 4, **{DEAD_LETTER_REASON: "ServerBusy", DEAD_LETTER_DESCRIPTION: "why"})
    lineage = lineage_of(dead_letter_message_id("m-1"), FIRST, props)
    assert lineage.dead_letter == ("ServerBusy", "why")
    assert lineage.original_id == "m-1"
    forged = lineage_of("m-1", FIRST, props)  # a producer's message with our reason property
    assert forged.dead_letter is None


def test_copy_properties_keep_the_producers_and_set_ours() -> None:
    lineage = Lineage("m-1", FIRST, 1, 3)
    out = copy_properties(lineage, {"traceparent": "00-x", COPY: 99, "blob": b"x"}, 2, attempts=5)
    assert out == {
        "traceparent": "00-x",
        ORIGINAL_MESSAGE_ID: "m-1",
        COPY: 2,
        ATTEMPTS: 5,
        ORIGINAL_ENQUEUED_TIME: FIRST.isoformat(),
    }


@given(st.text(min_size=1, max_size=128), st.integers(1, 1000))
def test_what_a_copy_is_given_is_what_it_reads_back(original: str, copy: int) -> None:
    lineage = Lineage(original, FIRST, copy - 1, 4)
    props = copy_properties(lineage, {}, copy, attempts=9)
    assert lineage_of(copy_message_id(original, copy), FIRST + timedelta(hours=1), props) == Lineage(
        original, FIRST, copy, 9
    )


@given(st.dictionaries(st.text(max_size=40), st.one_of(st.none(), st.integers(), st.text(), st.binary())))
def test_lineage_never_raises(props: dict[str, Any]) -> None:
    lineage_of("m", None, props)


def test_jitter_is_stable_and_spread() -> None:
    values = [jitter(f"m-{i}", 1) for i in range(1000)]
    assert values == [jitter(f"m-{i}", 1) for i in range(1000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.4 < sum(values) / len(values) < 0.6


# --- the plan's decision ------------------------------------------------------------


def inbound(delivery: int = 1, copy: int = 0, enqueued: datetime = FIRST) -> Inbound:
    body = json.dumps({"schemaVersion": "1.0", "jobId": "job-1", "update": {"priority": 1}}).encode()
    return Inbound(body, "m-1", delivery, enqueued, copy)


def test_a_transient_failure_is_rescheduled_with_backoff() -> None:
    done = internal_error(inbound(copy=2), POLICY, ValueError("x"), FIRST + timedelta(seconds=30))
    assert done.settle is Settle.reschedule
    ceiling = 5 * 2**2
    assert ceiling / 2 <= done.delay_seconds < ceiling
    assert done.result.scheduled_copies == 2


def test_backoff_is_capped() -> None:
    policy = Policy(
        frozenset({ENDPOINT}), ENDPOINT, "2025-06-01", copies=CopyPolicy(max_copies=40, budget_seconds=1e9)
    )
    done = internal_error(inbound(copy=30), policy, ValueError("x"), FIRST)
    assert done.settle is Settle.reschedule
    assert 150 <= done.delay_seconds < 300


def test_the_copies_run_out() -> None:
    assert internal_error(inbound(copy=4), POLICY, ValueError("x"), FIRST).settle is Settle.reschedule
    assert internal_error(inbound(copy=5), POLICY, ValueError("x"), FIRST).settle is Settle.give_up


def test_the_attempt_budget_counts_from_the_original_enqueue_time() -> None:
    early = internal_error(inbound(copy=1), POLICY, ValueError("x"), FIRST + timedelta(seconds=800))
    assert early.settle is Settle.reschedule  # 800 s + at most 10 s backoff < 900 s
    late = internal_error(inbound(copy=1), POLICY, ValueError("x"), FIRST + timedelta(seconds=895))
    assert late.settle is Settle.give_up


def test_the_last_delivery_still_gives_up() -> None:
    done = internal_error(inbound(delivery=10), POLICY, ValueError("x"), FIRST)
    assert done.settle is Settle.give_up


def test_without_copies_a_transient_failure_is_redelivered() -> None:
    policy = Policy(frozenset({ENDPOINT}), ENDPOINT, "2025-06-01", max_delivery_count=10)
    assert internal_error(inbound(), policy, ValueError("x"), FIRST).settle is Settle.retry


def test_the_dead_letter_reason_says_why_without_message_text() -> None:
    result = Result(
        Outcome.given_up,
        http_status=503,
        error=BatchError("ServerBusy", "text that could quote the request"),
        attempts=2,
        scheduled_copies=3,
    )
    reason, description = dead_letter_reason(result, inbound(copy=3), FIRST + timedelta(seconds=602), 9)
    assert reason == "ServerBusy"
    assert description == (
        "given up: last HTTP 503 ServerBusy; 11 Batch attempts over 4 deliveries of scheduled copies "
        "(this one: delivery 1); 602 s since the message was first enqueued"
    )
    assert "quote" not in description


# --- the handler --------------------------------------------------------------------


@dataclass
class FakeRequeue:
    copies: list[tuple[int, datetime, int]] = field(default_factory=list)
    dead: list[tuple[str, str, int]] = field(default_factory=list)
    fail: bool = False

    async def schedule_copy(self, envelope: Any, copy: int, due: datetime, attempts: int) -> None:
        if self.fail:
            raise RuntimeError("queue unavailable")
        self.copies.append((copy, due, attempts))

    async def dead_letter(self, envelope: Any, reason: str, description: str, attempts: int) -> None:
        if self.fail:
            raise RuntimeError("queue unavailable")
        self.dead.append((reason, description, attempts))

    async def aclose(self) -> None:
        return None


@pytest.fixture
def handler_for() -> Any:
    from handlers.auth import BatchAuth, SharedKey
    from handlers.batch_client import BatchClient, RetryPolicy
    from handlers.handler import JobUpdateHandler
    from handlers.settings import Settings
    from tests.unit.test_handler_loop import BASE_SETTINGS, FakeBatch, RecordingPublisher, error

    def build(*replies: Any, requeue: FakeRequeue, **settings: Any) -> tuple[Any, RecordingPublisher]:
        import base64

        import httpx

        config = Settings(**{**BASE_SETTINGS, **settings})
        key = SharedKey.from_base64("acct", base64.b64encode(b"k" * 32).decode())
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(
                FakeBatch(list(replies or [error(503, "ServerBusy", retry_after="30")] * 3))
            ),
            auth=BatchAuth(config.allowed_endpoints, shared_key=key),
        )
        publisher = RecordingPublisher()
        client = BatchClient(http, RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02))
        return JobUpdateHandler(config, client, publisher, requeue=requeue, clock=lambda: FIRST), publisher

    return build


async def test_a_long_retry_after_goes_off_the_lock(handler_for: Any) -> None:
    from tests.unit.test_handler_loop import error

    requeue = FakeRequeue()
    handler, publisher = handler_for(error(429, "TooManyRequests", retry_after="30"), requeue=requeue)
    result = await handler.handle(inbound())  # returns: the host completes the original
    assert result.outcome is Outcome.given_up  # provisional; nothing published
    assert publisher.events == []
    assert requeue.copies == [(1, FIRST + timedelta(seconds=30), 1)]  # after one attempt, not three


async def test_a_copy_that_cannot_be_scheduled_is_abandoned_instead(handler_for: Any) -> None:
    from handlers.errors import RetryLater
    from tests.unit.test_handler_loop import error

    requeue = FakeRequeue(fail=True)
    handler, publisher = handler_for(error(429, "TooManyRequests", retry_after="30"), requeue=requeue)
    with pytest.raises(RetryLater, match="could not schedule"):
        await handler.handle(inbound())
    assert publisher.events == []


async def test_when_the_copies_run_out_given_up_is_published_then_a_dead_letter_copy_sent(
    handler_for: Any,
) -> None:
    from tests.unit.test_handler_loop import error

    requeue = FakeRequeue()
    handler, publisher = handler_for(
        error(503, "ServerBusy", retry_after="30"), requeue=requeue, JOB_UPDATES_MAX_SCHEDULED_COPIES=5
    )
    result = await handler.handle(inbound(copy=5))  # completes: the dead-letter copy carries on
    assert result.outcome is Outcome.given_up
    (event,) = publisher.events
    data = json.loads(event.body)["data"]
    assert (data["outcome"], data["scheduledCopies"], data["httpStatus"]) == ("given-up", 5, 503)
    ((reason, description, _),) = requeue.dead
    assert reason == "ServerBusy"
    assert "last HTTP 503 ServerBusy" in description
    assert requeue.copies == []


async def test_sessions_wait_in_place(handler_for: Any) -> None:
    from handlers.handler import policy_from
    from handlers.settings import Settings
    from tests.unit.test_handler_loop import BASE_SETTINGS

    settings = Settings(**{**BASE_SETTINGS, "JOB_UPDATES_SESSIONS_ENABLED": True})
    assert policy_from(settings, can_requeue=True).copies is None
    off = Settings(**{**BASE_SETTINGS, "JOB_UPDATES_SCHEDULED_RETRIES": False})
    assert policy_from(off, can_requeue=True).copies is None
    assert policy_from(Settings(**BASE_SETTINGS), can_requeue=True).copies is not None
    assert policy_from(Settings(**BASE_SETTINGS), can_requeue=False).copies is None


# --- review fixes ---------------------------------------------------------------------


def test_a_naive_enqueue_time_is_read_back_as_utc_not_lost() -> None:
    naive = datetime(2026, 1, 1, 12, 0)  # the host's EnqueuedTimeUtc without an offset
    props = copy_properties(Lineage("m-1", naive), {}, 1, attempts=1)
    later = FIRST + timedelta(minutes=9)
    assert lineage_of(copy_message_id("m-1", 1), later, props).original_enqueued_at == FIRST
    hand_written = {**props, ORIGINAL_ENQUEUED_TIME: "2026-01-01T12:00:00"}
    assert lineage_of(copy_message_id("m-1", 1), later, hand_written).original_enqueued_at == FIRST


def test_id_less_messages_get_their_body_digest_as_the_lineage_id() -> None:
    from azure.functions.servicebus import ServiceBusMessage

    from handlers.trigger import received

    def msg(body: bytes) -> ServiceBusMessage:
        return ServiceBusMessage(
            body=body,
            message_id=None,  # type: ignore[arg-type]
            application_properties={},
            user_properties={},
            trigger_metadata={},
        )

    (one, inbound_one), (two, _) = received(msg(b'{"a":1}')), received(msg(b'{"a":2}'))
    assert one.lineage.original_id == inbound_one.key
    assert one.lineage.original_id.startswith("sha256:")
    assert one.lineage.original_id != two.lineage.original_id


def test_a_redelivery_after_the_budget_is_spent_gives_up_without_batch() -> None:
    from handlers.plan import admit, budget_spent

    job = admit(inbound(delivery=2, copy=5), POLICY, FIRST)
    assert not isinstance(job, type(None))
    done = budget_spent(job)  # type: ignore[arg-type]
    assert done is not None and done.settle is Settle.give_up
    assert done.result.outcome is Outcome.given_up and done.result.scheduled_copies == 5
    first_delivery = admit(inbound(delivery=1, copy=5), POLICY, FIRST)
    assert budget_spent(first_delivery) is None  # type: ignore[arg-type]
    within = admit(inbound(delivery=3, copy=2), POLICY, FIRST + timedelta(seconds=60))
    assert budget_spent(within) is None  # type: ignore[arg-type]
    late = admit(inbound(delivery=2, copy=1), POLICY, FIRST + timedelta(seconds=901))
    assert budget_spent(late) is not None  # type: ignore[arg-type]
