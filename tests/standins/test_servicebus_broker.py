"""The local Service Bus broker, driven only through the real azure-servicebus SDK.

Each behaviour gets its own entity so tests do not see each other's leftovers, while the
broker and the ServiceBusClient are shared: the SDK needs ~0.5 s to open a link and up to
~1.3 s to close a receiver, so per-test brokers would make this file slow.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessagingEntityDisabledError,
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
)

from standins.servicebus import LocalBroker, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO / "standins" / "servicebus" / "Config.json"
WAIT = 1.0  # max_wait_time for receives that must find something
EMPTY_WAIT = 0.4  # max_wait_time for receives that must find nothing


def _queue(name: str, **props: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": props}


def _test_config() -> dict[str, Any]:
    """The checked-in Config.json plus small entities with test-friendly timings."""
    config = copy.deepcopy(json.loads(CONFIG_PATH.read_text()))
    ns = config["UserConfig"]["Namespaces"][0]
    ns["Queues"] += [
        _queue("t-basic", MaxDeliveryCount=5, LockDuration="PT30S"),
        _queue("t-abandon", MaxDeliveryCount=5, LockDuration="PT30S"),
        _queue("t-deadletter", MaxDeliveryCount=5, LockDuration="PT30S"),
        _queue("t-poison", MaxDeliveryCount=2, LockDuration="PT30S"),
        _queue("t-batch"),
        _queue("t-lock", MaxDeliveryCount=5, LockDuration="PT1S"),
        _queue("t-renew", MaxDeliveryCount=5, LockDuration="PT1S"),
        _queue("t-expiry", DeadLetteringOnMessageExpiration=True),
        _queue("t-sessions", MaxDeliveryCount=5, LockDuration="PT10S", RequiresSession=True),
        _queue("t-async"),
    ]
    ns["Topics"].append(
        {
            "Name": "t-filters",
            "Properties": {},
            "Subscriptions": [
                {
                    "Name": "in-list",
                    "Rules": [
                        {
                            "Name": "r",
                            "Properties": {
                                "FilterType": "Sql",
                                "SqlFilter": {"SqlExpression": "region IN ('eu', 'us') AND priority >= 2"},
                            },
                        }
                    ],
                },
                {
                    "Name": "null-or",
                    "Rules": [
                        {
                            "Name": "r",
                            "Properties": {
                                "FilterType": "Sql",
                                "SqlFilter": {"SqlExpression": "region IS NULL OR sys.Label = 'urgent'"},
                            },
                        }
                    ],
                },
                {
                    "Name": "not-equal",
                    "Rules": [
                        {
                            "Name": "r",
                            "Properties": {
                                "FilterType": "Sql",
                                "SqlFilter": {"SqlExpression": "region <> 'eu' AND region != 'us'"},
                            },
                        }
                    ],
                },
                {
                    "Name": "correlation",
                    "Rules": [
                        {
                            "Name": "r",
                            "Properties": {
                                "FilterType": "Correlation",
                                "CorrelationFilter": {"Label": "urgent", "Properties": {"region": "eu"}},
                            },
                        }
                    ],
                },
                {
                    "Name": "two-rules",
                    "Rules": [
                        {
                            "Name": "a",
                            "Properties": {
                                "FilterType": "Sql",
                                "SqlFilter": {"SqlExpression": "priority = 1"},
                            },
                        },
                        {
                            "Name": "b",
                            "Properties": {
                                "FilterType": "Sql",
                                "SqlFilter": {"SqlExpression": "priority = 3"},
                            },
                        },
                    ],
                },
            ],
        }
    )
    return config


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker(_test_config(), lock_check_interval=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def client(broker: LocalBroker) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(broker.connection_string) as sb:
        yield sb


def _send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


def _bodies(messages: list[Any]) -> list[str]:
    return [str(m) for m in messages]


# --------------------------------------------------------------------------- config


def test_checked_in_config_is_emulator_shaped_and_loads() -> None:
    config = load_config(CONFIG_PATH)
    assert config.name == "sbemulatorns"
    queues = {q.name: q.properties for q in config.queues}
    assert queues["job-updates"].max_delivery_count == 5
    assert queues["job-updates"].lock_duration == 30
    assert queues["job-updates"].requires_duplicate_detection
    assert queues["job-updates"].dead_lettering_on_message_expiration
    assert queues["job-updates-sessions"].requires_session
    topics = {t.name: t for t in config.topics}
    assert topics["job-outcomes"].properties.duplicate_detection_window == 300  # the emulator's maximum
    failures = {s.name: s for s in topics["job-outcomes"].subscriptions}["failures"]
    assert failures.rules[0].sql_expression == "outcome IN ('failed', 'given-up')"
    assert all(s.properties.requires_session for s in topics["job-outcomes-sessions"].subscriptions)


# --------------------------------------------------------------------------- queues


def test_send_receive_complete(client: ServiceBusClient) -> None:
    _send(
        client,
        "t-basic",
        ServiceBusMessage(
            b'{"job": 1}',
            application_properties={"outcome": "succeeded", "attempt": 3},
            message_id="basic-1",
            subject="job",
            content_type="application/json",
            correlation_id="c-1",
        ),
    )
    with client.get_queue_receiver("t-basic", max_wait_time=WAIT) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert b"".join(message.body) == b'{"job": 1}'
        assert message.message_id == "basic-1"
        assert message.subject == "job"
        assert message.content_type == "application/json"
        assert message.correlation_id == "c-1"
        assert message.application_properties[b"outcome"] == b"succeeded"
        assert message.application_properties[b"attempt"] == 3
        assert message.delivery_count == 0
        assert message.sequence_number is not None and message.sequence_number >= 1
        assert message.enqueued_time_utc is not None
        assert message.locked_until_utc is not None and message.locked_until_utc > message.enqueued_time_utc
        assert isinstance(message.lock_token, uuid.UUID)
        receiver.complete_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
        assert receiver.peek_messages(max_message_count=5) == []


def test_abandon_redelivers_with_incremented_delivery_count(client: ServiceBusClient) -> None:
    _send(client, "t-abandon", ServiceBusMessage("retry me"))
    with client.get_queue_receiver("t-abandon", max_wait_time=WAIT) as receiver:
        [first] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert first.delivery_count == 0
        receiver.abandon_message(first)
        [second] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert str(second) == "retry me"
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        receiver.complete_message(second)


def test_dead_letter_with_reason_lands_in_dead_letter_queue(client: ServiceBusClient) -> None:
    _send(client, "t-deadletter", ServiceBusMessage("poison", message_id="dl-1"))
    with client.get_queue_receiver("t-deadletter", max_wait_time=WAIT) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        receiver.dead_letter_message(message, reason="InvalidPayload", error_description="job id missing")
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
    with client.get_queue_receiver(
        "t-deadletter", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=WAIT
    ) as dead:
        [dead_lettered] = dead.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert str(dead_lettered) == "poison"
        assert dead_lettered.message_id == "dl-1"
        assert dead_lettered.dead_letter_reason == "InvalidPayload"
        assert dead_lettered.dead_letter_error_description == "job id missing"
        # DeadLetterSource is only set on messages auto-forwarded out of a dead-letter queue.
        assert dead_lettered.dead_letter_source is None
        dead.complete_message(dead_lettered)


def test_max_delivery_count_dead_letters_automatically(client: ServiceBusClient) -> None:
    _send(client, "t-poison", ServiceBusMessage("always fails"))
    with client.get_queue_receiver("t-poison", max_wait_time=WAIT) as receiver:
        for attempt in range(2):  # MaxDeliveryCount=2
            [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
            assert message.delivery_count == attempt
            receiver.abandon_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
    # The sub-queue name is matched case-insensitively, as in the service.
    with client.get_queue_receiver("t-poison/$deadletterqueue", max_wait_time=WAIT) as dead:
        [dead_lettered] = dead.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert str(dead_lettered) == "always fails"
        assert dead_lettered.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert "2 delivery attempts" in (dead_lettered.dead_letter_error_description or "")
        assert dead_lettered.delivery_count == 2
        dead.complete_message(dead_lettered)


def test_batched_sends_are_split_into_messages(client: ServiceBusClient) -> None:
    with client.get_queue_sender("t-batch") as sender:
        sender.send_messages(
            [ServiceBusMessage(f"list-{i}", application_properties={"i": i}) for i in range(3)]
        )
        batch = sender.create_message_batch()
        for i in range(2):
            batch.add_message(ServiceBusMessage(f"batch-{i}"))
        sender.send_messages(batch)
    with client.get_queue_receiver("t-batch", max_wait_time=WAIT) as receiver:
        received: list[Any] = []
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            received += receiver.receive_messages(max_message_count=5 - len(received), max_wait_time=WAIT)
        assert _bodies(received) == ["list-0", "list-1", "list-2", "batch-0", "batch-1"]
        assert [m.application_properties[b"i"] for m in received[:3]] == [0, 1, 2]
        sequence_numbers = [m.sequence_number for m in received]
        assert sequence_numbers == sorted(set(sequence_numbers))
        for message in received:
            receiver.complete_message(message)


def test_duplicate_message_id_is_dropped(client: ServiceBusClient) -> None:
    duplicate_id = f"dup-{uuid.uuid4()}"
    with client.get_queue_sender("job-updates") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id=duplicate_id))
        sender.send_messages(ServiceBusMessage("second", message_id=duplicate_id))  # accepted, dropped
        sender.send_messages(ServiceBusMessage("other", message_id=f"{duplicate_id}-b"))
    with client.get_queue_receiver("job-updates", max_wait_time=WAIT) as receiver:
        received = receiver.receive_messages(max_message_count=3, max_wait_time=WAIT)
        received += receiver.receive_messages(max_message_count=3, max_wait_time=EMPTY_WAIT)
        assert _bodies(received) == ["first", "other"]
        for message in received:
            receiver.complete_message(message)


# --------------------------------------------------------------------------- locks


def test_lock_expiry_makes_message_available_again(client: ServiceBusClient) -> None:
    _send(client, "t-lock", ServiceBusMessage("slow consumer"))
    with client.get_queue_receiver("t-lock", max_wait_time=WAIT) as receiver:
        [first] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        time.sleep(1.3)  # LockDuration PT1S
        [again] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert again.sequence_number == first.sequence_number
        assert again.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        receiver.complete_message(again)


def test_renew_lock_extends_the_lock(client: ServiceBusClient) -> None:
    _send(client, "t-renew", ServiceBusMessage("long job"))
    with client.get_queue_receiver("t-renew", max_wait_time=WAIT) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        original = message.locked_until_utc
        assert original is not None
        time.sleep(0.6)
        renewed = receiver.renew_message_lock(message)
        assert renewed > original
        time.sleep(0.7)  # past the original 1 s lock, within the renewed one
        receiver.complete_message(message)  # would raise MessageLockLostError had the lock lapsed
        assert receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []


def test_expired_messages_dead_letter_and_scheduled_messages_appear_later(client: ServiceBusClient) -> None:
    sent_at = datetime.datetime.now(datetime.UTC)
    later = sent_at + datetime.timedelta(seconds=1.5)
    with client.get_queue_sender("t-expiry") as sender:  # DeadLetteringOnMessageExpiration=true
        sender.send_messages(
            [
                ServiceBusMessage(
                    "expires", time_to_live=datetime.timedelta(seconds=1)
                ),  # SDK: whole seconds
                ServiceBusMessage("scheduled", scheduled_enqueue_time_utc=later),
            ]
        )
    delete = ServiceBusReceiveMode.RECEIVE_AND_DELETE
    # Open no receiver on the queue before the TTL passes: its link credit would fetch the message.
    time.sleep(max(0.0, 1.2 - (datetime.datetime.now(datetime.UTC) - sent_at).total_seconds()))
    with client.get_queue_receiver(
        "t-expiry", sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=delete
    ) as dead:
        [expired] = dead.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert str(expired) == "expires"
        assert expired.dead_letter_reason == "TTLExpiredException"
    with client.get_queue_receiver("t-expiry", receive_mode=delete) as receiver:
        received = receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)
        assert _bodies(received) == ["scheduled"]
        assert received[0].enqueued_time_utc is not None and received[0].enqueued_time_utc >= later


# --------------------------------------------------------------------------- topics


def test_topic_fans_out_and_sql_filter_selects_failures(client: ServiceBusClient) -> None:
    with client.get_topic_sender("job-outcomes") as sender:
        sender.send_messages(
            [
                ServiceBusMessage(
                    "ok", application_properties={"outcome": "succeeded"}, message_id=str(uuid.uuid4())
                ),
                ServiceBusMessage(
                    "boom", application_properties={"outcome": "failed"}, message_id=str(uuid.uuid4())
                ),
                ServiceBusMessage("no outcome", message_id=str(uuid.uuid4())),
                ServiceBusMessage(
                    "gave up", application_properties={"outcome": "given-up"}, message_id=str(uuid.uuid4())
                ),
            ]
        )
    with client.get_subscription_receiver("job-outcomes", "all-outcomes", max_wait_time=WAIT) as receiver:
        received = receiver.receive_messages(max_message_count=4, max_wait_time=WAIT)
        received += receiver.receive_messages(max_message_count=4, max_wait_time=EMPTY_WAIT)
        assert sorted(_bodies(received)) == ["boom", "gave up", "no outcome", "ok"]
        for message in received:
            receiver.complete_message(message)
    with client.get_subscription_receiver("job-outcomes", "failures", max_wait_time=WAIT) as receiver:
        received = receiver.receive_messages(max_message_count=3, max_wait_time=WAIT)
        received += receiver.receive_messages(max_message_count=3, max_wait_time=EMPTY_WAIT)
        assert sorted(_bodies(received)) == ["boom", "gave up"]
        for message in received:
            receiver.complete_message(message)


def test_sql_and_correlation_filters(client: ServiceBusClient, broker: LocalBroker) -> None:
    with client.get_topic_sender("t-filters") as sender:
        sender.send_messages(
            [
                ServiceBusMessage("eu-2", application_properties={"region": "eu", "priority": 2}),
                ServiceBusMessage("us-1", application_properties={"region": "us", "priority": 1}),
                ServiceBusMessage("apac-3", application_properties={"region": "apac", "priority": 3}),
                ServiceBusMessage("none-urgent", subject="urgent"),
                ServiceBusMessage(
                    "eu-urgent", subject="urgent", application_properties={"region": "eu", "priority": 0}
                ),
            ]
        )
    expected = {
        "in-list": ["eu-2"],
        "null-or": ["none-urgent", "eu-urgent"],
        "not-equal": ["apac-3"],
        "correlation": ["eu-urgent"],
        "two-rules": ["us-1", "apac-3"],
    }
    for name, bodies in expected.items():
        with client.get_subscription_receiver(
            "t-filters", name, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=WAIT
        ) as receiver:
            got = _bodies(receiver.peek_messages(max_message_count=10))
        assert got == bodies, name


# --------------------------------------------------------------------------- sessions


def test_session_entity_rejects_messages_without_session_id(client: ServiceBusClient) -> None:
    with client.get_queue_sender("job-updates-sessions") as sender:
        with pytest.raises(ServiceBusError) as excinfo:
            sender.send_messages(ServiceBusMessage("no session"))
        assert "SessionId" in str(excinfo.value)
        sender.send_messages(ServiceBusMessage("with session", session_id="s-ok"))
    with client.get_queue_receiver("job-updates-sessions", session_id="s-ok", max_wait_time=WAIT) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert message.session_id == "s-ok"
        receiver.complete_message(message)


def test_sessions_by_id_next_available_and_in_parallel(client: ServiceBusClient) -> None:
    with client.get_queue_sender("t-sessions") as sender:
        sender.send_messages(
            [ServiceBusMessage(f"{sid}-{i}", session_id=sid) for i in range(3) for sid in ("alpha", "beta")]
        )
    with client.get_queue_receiver("t-sessions", session_id="beta", max_wait_time=WAIT) as beta:
        assert beta.session.session_id == "beta"
        assert beta.session.locked_until_utc is not None
        # A second receiver cannot lock a session that is held.
        with (
            pytest.raises(SessionCannotBeLockedError),
            client.get_queue_receiver("t-sessions", session_id="beta", max_wait_time=WAIT) as clash,
        ):
            clash.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT)
        # Next-available skips the locked session and gets the other one, in parallel.
        with client.get_queue_receiver(
            "t-sessions", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT
        ) as other:
            assert other.session.session_id == "alpha"
            got: dict[str, list[str]] = {"alpha": [], "beta": []}
            for receiver in (beta, other) * 3:
                [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
                assert message.session_id == receiver.session.session_id
                got[message.session_id].append(str(message))
                receiver.complete_message(message)
            assert got == {"alpha": ["alpha-0", "alpha-1", "alpha-2"], "beta": ["beta-0", "beta-1", "beta-2"]}
            other.session.set_state(b"checkpoint-2")
            assert other.session.get_state() == b"checkpoint-2"
            before = other.session.locked_until_utc
            assert other.session.renew_lock() >= before  # type: ignore[operator]


def test_next_available_session_times_out_when_there_is_none(client: ServiceBusClient) -> None:
    started = time.monotonic()
    with (
        pytest.raises(OperationTimeoutError),
        client.get_queue_receiver(
            "t-sessions", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
        ) as receiver,
    ):
        receiver.receive_messages(max_message_count=1, max_wait_time=1)
    assert time.monotonic() - started < 15


# --------------------------------------------------------------------------- availability


def test_unavailable_entity_fails_sends_until_restored(broker: LocalBroker) -> None:
    with ServiceBusClient.from_connection_string(
        broker.connection_string, retry_total=1, retry_backoff_factor=0.05
    ) as sb:
        with sb.get_topic_sender("job-outcomes") as sender:
            sender.send_messages(ServiceBusMessage("before", message_id=str(uuid.uuid4())))
            broker.set_entity_available("job-outcomes", False)
            try:
                with pytest.raises(MessagingEntityDisabledError):
                    sender.send_messages(ServiceBusMessage("during", message_id=str(uuid.uuid4())))
                with (
                    pytest.raises(MessagingEntityDisabledError),
                    sb.get_subscription_receiver("job-outcomes", "all-outcomes") as receiver,
                ):
                    receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT)
            finally:
                broker.set_entity_available("job-outcomes", True)
            sender.send_messages(ServiceBusMessage("after", message_id=str(uuid.uuid4())))
        with sb.get_subscription_receiver(
            "job-outcomes", "all-outcomes", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        ) as receiver:
            received = receiver.receive_messages(max_message_count=3, max_wait_time=WAIT)
            received += receiver.receive_messages(max_message_count=3, max_wait_time=EMPTY_WAIT)
            assert _bodies(received) == ["before", "after"]
    assert broker.message_counts("job-outcomes/Subscriptions/all-outcomes")["active"] == 0


# --------------------------------------------------------------------------- async SDK


async def test_async_client_send_receive_complete(broker: LocalBroker) -> None:
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as sb:
        async with sb.get_queue_sender("t-async") as sender:
            await sender.send_messages([ServiceBusMessage("a1"), ServiceBusMessage("a2")])
        async with sb.get_queue_receiver("t-async", max_wait_time=WAIT) as receiver:
            received = await receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)
            assert _bodies(received) == ["a1", "a2"]
            for message in received:
                await receiver.complete_message(message)
    assert broker.message_counts("t-async") == {"active": 0, "deferred": 0, "dead_letter": 0, "scheduled": 0}


# --------------------------------------------------------------------------- lifecycle


def test_stop_leaves_no_threads_or_sockets() -> None:
    def sockets() -> int:
        fd_dir = Path("/proc/self/fd")
        count = 0
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):  # the directory's own fd is gone once listed
                count += fd.readlink().name.startswith("socket:")
        return count

    threads_before = set(threading.enumerate())
    sockets_before = sockets()
    broker = LocalBroker(CONFIG_PATH).start()
    with ServiceBusClient.from_connection_string(broker.connection_string) as sb:
        with sb.get_queue_sender("job-updates") as sender:
            sender.send_messages(ServiceBusMessage("x", message_id=str(uuid.uuid4())))
        broker.stop()  # while the client is still connected
    assert set(threading.enumerate()) - threads_before == set()
    assert sockets() <= sockets_before
