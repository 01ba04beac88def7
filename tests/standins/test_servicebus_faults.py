"""Fault capabilities of the local broker and the Service Bus behaviours they model, driven only
through the unmodified azure-servicebus SDK: restart mid-stream (durable state, locks across
it), one entity's outage while the namespace works, the 256 KiB link limit, missing entities,
what peek shows, and per-entity lock durations.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from standins.servicebus import ConfigError, LocalBroker, load_config
from standins.servicebus.config import with_lock_durations

CONFIG_PATH = Path(__file__).resolve().parents[2] / "standins" / "servicebus" / "Config.json"
WAIT = 1.0
EMPTY_WAIT = 0.4
LIMIT = 262_144  # Standard tier max message size


def _config() -> dict[str, Any]:
    config = copy.deepcopy(json.loads(CONFIG_PATH.read_text()))
    ns = config["UserConfig"]["Namespaces"][0]
    for name, props in {
        "f-durable": {"RequiresDuplicateDetection": True, "DuplicateDetectionHistoryTimeWindow": "PT5M"},
        "f-locks": {"LockDuration": "PT3S", "MaxDeliveryCount": 5},
        "f-other": {},
        "f-peek": {},
        "f-size": {},
    }.items():
        ns["Queues"].append({"Name": name, "Properties": props})
    ns["Topics"].append(
        {"Name": "f-topic", "Properties": {}, "Subscriptions": [{"Name": "all", "Rules": []}]}
    )
    return config


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    # job-updates keeps Config.json's settings except a short lock: what e2e tests of lock
    # expiry need without a second copy of the file.
    with LocalBroker(_config(), lock_check_interval=0.05, lock_durations={"job-updates": 1.5}) as running:
        yield running


@pytest.fixture(scope="module")
def client(broker: LocalBroker) -> Iterator[ServiceBusClient]:
    # One SDK retry with a short backoff: a fault reaches the test in about a second.
    with ServiceBusClient.from_connection_string(
        broker.connection_string, retry_total=1, retry_backoff_factor=0.1
    ) as sb:
        yield sb


def _msg(body: str, **kwargs: Any) -> ServiceBusMessage:
    return ServiceBusMessage(body, message_id=kwargs.pop("message_id", str(uuid.uuid4())), **kwargs)


# --------------------------------------------------------------------------- restart


def test_restart_keeps_entity_state_and_listens_again_on_the_same_port(
    broker: LocalBroker, client: ServiceBusClient
) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with client.get_queue_sender("f-durable") as sender:
        sender.send_messages([_msg("dead", message_id="d-dead"), _msg("deferred", message_id="d-deferred")])
        sender.send_messages(_msg("active", message_id="d-active"))
        [scheduled_seq] = sender.schedule_messages(_msg("scheduled", message_id="d-scheduled"), later)
    with client.get_queue_receiver("f-durable", max_wait_time=WAIT) as receiver:
        dead, deferred = receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)
        receiver.dead_letter_message(dead, reason="Bad", error_description="kept across the restart")
        receiver.defer_message(deferred)
    port, before = broker.port, broker.message_counts("f-durable")

    back = broker.restart(down_seconds=0.5)
    with (
        ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as impatient,
        pytest.raises(ServiceBusConnectionError),  # refused while down
        impatient.get_queue_sender("f-durable") as sender,
    ):
        sender.send_messages(_msg("while down"))
    back.result(10)

    assert broker.port == port
    assert (
        broker.message_counts("f-durable")
        == before
        == {
            "active": 1,
            "deferred": 1,
            "dead_letter": 1,
            "scheduled": 1,
        }
    )
    with client.get_queue_sender("f-durable") as sender:
        sender.send_messages(_msg("again", message_id="d-active"))  # duplicate-detection history kept
        sender.send_messages(_msg("new", message_id="d-new"))
        sender.cancel_scheduled_messages(scheduled_seq)  # the scheduled message survived
    with client.get_queue_receiver("f-durable", max_wait_time=WAIT) as receiver:
        [kept] = receiver.receive_deferred_messages([deferred.sequence_number])  # type: ignore[list-item]
        assert str(kept) == "deferred"
        receiver.complete_message(kept)
        got = receiver.receive_messages(max_message_count=5, max_wait_time=WAIT)
        got += receiver.receive_messages(max_message_count=5, max_wait_time=EMPTY_WAIT)
        assert [str(m) for m in got] == ["active", "new"]  # "again" was a duplicate
        assert got[1].sequence_number > scheduled_seq  # numbering goes on
        for m in got:
            receiver.complete_message(m)
    assert broker.message_counts("f-durable")["dead_letter"] == 1


def test_a_lock_held_across_a_restart_is_lost_to_its_holder_and_lapses_into_redelivery(
    broker: LocalBroker, client: ServiceBusClient
) -> None:
    with client.get_queue_sender("f-locks") as sender:
        sender.send_messages(_msg("held", message_id="l-held"))
    old = client.get_queue_receiver("f-locks", max_wait_time=WAIT)
    with old:
        [held] = old.receive_messages(max_message_count=1, max_wait_time=WAIT)
        broker.restart(down_seconds=0.2).result(10)
        with client.get_queue_receiver("f-locks", max_wait_time=WAIT) as new:
            # Not released by the restart: still locked (LockDuration PT3S), so not receivable yet.
            assert new.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT) == []
            # Nor can any other receiver renew (or settle) the lock: it belonged to the cut link.
            with pytest.raises(MessageLockLostError):
                new.renew_message_lock(held)
            # Once the lock expires the message comes back, counted as a failed delivery.
            deadline = time.monotonic() + 15
            again: list[Any] = []
            while not again and time.monotonic() < deadline:
                again = new.receive_messages(max_message_count=1, max_wait_time=WAIT)
            [redelivered] = again
            assert redelivered.message_id == "l-held"
            assert redelivered.delivery_count == 1
            new.complete_message(redelivered)
    assert broker.message_counts("f-locks")["active"] == 0


# --------------------------------------------------------------------------- one entity down


def test_an_entity_outage_outlasts_the_sdk_retries_while_the_namespace_works(
    broker: LocalBroker, client: ServiceBusClient
) -> None:
    condition, error = "com.microsoft:server-busy", ServiceBusServerBusyError
    with client.get_topic_sender("f-topic") as sender:
        sender.send_messages(_msg("before"))
        with broker.entity_outage("f-topic", condition=condition) as outage:
            with pytest.raises(error) as raised:
                sender.send_messages(_msg("during"))
            assert f"Error condition: {condition}" in str(raised.value)
            with (
                pytest.raises(error),
                client.get_subscription_receiver("f-topic", "all") as receiver,  # receives fail too
            ):
                receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT)
            with client.get_queue_sender("f-other") as other:  # the rest of the namespace works
                other.send_messages(_msg("other"))
            assert not outage.ended
        assert outage.ended
        sender.send_messages(_msg("after"))
    with client.get_subscription_receiver(
        "f-topic", "all", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        got = receiver.receive_messages(max_message_count=5, max_wait_time=WAIT)
        got += receiver.receive_messages(max_message_count=5, max_wait_time=EMPTY_WAIT)
    assert [str(m) for m in got] == ["before", "after"]
    assert broker.message_counts("f-other")["active"] == 1


def test_a_timed_outage_ends_by_itself_and_internal_error_is_the_other_condition(
    broker: LocalBroker, client: ServiceBusClient
) -> None:
    with client.get_topic_sender("f-topic") as sender:
        sender.send_messages(_msg("warm"))  # the link is up before the outage begins
        outage = broker.entity_outage("f-topic", seconds=1.0)
        with pytest.raises(ServiceBusServerBusyError):
            sender.send_messages(_msg("during"))
        assert outage.wait(10)
        sender.send_messages(_msg("back"))
        # amqp:internal-error detaches the sender link as well; the SDK retries and then raises
        # a plain ServiceBusError carrying the condition.
        with broker.entity_outage("f-topic", condition="amqp:internal-error"):
            with pytest.raises(ServiceBusError) as raised:
                sender.send_messages(_msg("during"))
            assert not isinstance(raised.value, ServiceBusServerBusyError)
            assert "Error condition: amqp:internal-error" in str(raised.value)
        sender.send_messages(_msg("back again"))
    # warm, back, back again: nothing sent during the outages was stored
    assert broker.message_counts("f-topic/Subscriptions/all")["active"] == 3


# --------------------------------------------------------------------------- size limit


def test_a_message_over_the_link_limit_closes_the_link_and_is_not_stored(
    broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="azure.servicebus._pyamqp")
    with (
        ServiceBusClient.from_connection_string(
            broker.connection_string, retry_total=0, logging_enable=True
        ) as traced,
        traced.get_queue_sender("f-size") as sender,
    ):
        assert sender.create_message_batch().max_size_in_bytes == LIMIT  # what the attach advertises
        with pytest.raises(ServiceBusError):
            sender.send_messages(ServiceBusMessage(b"x" * (LIMIT + 1024)))
        detaches = [r.getMessage() for r in caplog.records if "DetachFrame" in r.getMessage()]
        assert any(
            "amqp:link:message-size-exceeded" in d and "exceeds the limit (262144" in d for d in detaches
        )
        caplog.clear()
        sender.send_messages(ServiceBusMessage(b"y" * (LIMIT - 4096)))  # fits: the link is re-attached
        batch = sender.create_message_batch()
        batch.add_message(ServiceBusMessage(b"z" * (LIMIT // 2)))
        with pytest.raises(MessageSizeExceededError):  # a batch is sized by the SDK before sending
            batch.add_message(ServiceBusMessage(b"z" * (LIMIT // 2)))
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as sb,
        sb.get_queue_receiver("f-size", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as r,
    ):
        got = r.receive_messages(max_message_count=5, max_wait_time=WAIT)
        got += r.receive_messages(max_message_count=5, max_wait_time=EMPTY_WAIT)
    assert [len(b"".join(m.body)) for m in got] == [LIMIT - 4096]  # the oversized one was not stored


# --------------------------------------------------------------------------- missing entities


def test_missing_entities_fail_as_the_service_fails_them(
    client: ServiceBusClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="azure.servicebus")
    # A queue or topic that does not exist: the token for it is refused ("Put token failed.
    # status-code: 404 ... could not be found"), which this SDK reports as an authentication error.
    with pytest.raises(ServiceBusAuthenticationError), client.get_queue_sender("no-such-queue") as sender:
        sender.send_messages(_msg("x"))
    assert any("status code: 404" in r.getMessage() for r in caplog.records)
    caplog.clear()
    # An entity under an existing topic that does not exist: the attach is refused with
    # amqp:not-found, for a receiver and a sender alike, and the SDK does not retry it.
    with (
        pytest.raises(MessagingEntityNotFoundError),
        client.get_subscription_receiver("f-topic", "no-such-subscription") as receiver,
    ):
        receiver.receive_messages(max_message_count=1, max_wait_time=EMPTY_WAIT)
    with (
        pytest.raises(MessagingEntityNotFoundError),
        client.get_queue_sender("f-topic/Subscriptions/all") as sender,  # not something one sends to
    ):
        sender.send_messages(_msg("x"))
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


# --------------------------------------------------------------------------- peek


def test_peek_shows_active_locked_deferred_and_scheduled_messages_with_their_state(
    client: ServiceBusClient,
) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with client.get_queue_sender("f-peek") as sender:
        sender.send_messages([_msg("locked"), _msg("deferred"), _msg("dead")])
    with client.get_queue_receiver("f-peek", max_wait_time=WAIT) as receiver:
        locked, deferred, dead = receiver.receive_messages(max_message_count=3, max_wait_time=WAIT)
        receiver.defer_message(deferred)
        receiver.dead_letter_message(dead, reason="Bad")
        with client.get_queue_sender("f-peek") as sender:
            sender.send_messages(_msg("active"))
            sender.schedule_messages(_msg("scheduled"), later)
        with client.get_queue_receiver("f-peek") as browser:  # the SDK peeks past what it received
            peeked = browser.peek_messages(max_message_count=10)
            third = peeked[2].sequence_number
            from_third = browser.peek_messages(max_message_count=10, sequence_number=third)
        assert [(str(m), m.state) for m in peeked] == [
            ("locked", ServiceBusMessageState.ACTIVE),
            ("deferred", ServiceBusMessageState.DEFERRED),
            ("active", ServiceBusMessageState.ACTIVE),
            ("scheduled", ServiceBusMessageState.SCHEDULED),
        ]  # in sequence order; the dead-lettered one is not there (it is on the dead-letter queue)
        sequence_numbers = [m.sequence_number for m in peeked]
        assert sequence_numbers == sorted(sequence_numbers)
        assert peeked[0].locked_until_utc is None  # a peek is a snapshot: lock state not observable
        assert peeked[3].scheduled_enqueue_time_utc is not None
        assert abs((peeked[3].scheduled_enqueue_time_utc - later).total_seconds()) < 1
        assert [str(m) for m in from_third] == ["active", "scheduled"]
        receiver.complete_message(locked)
    # Scheduled messages of a topic wait in the topic: a subscription's peek does not show them.
    with client.get_topic_sender("f-topic") as sender:
        sender.schedule_messages(_msg("topic-scheduled"), later)
    with client.get_subscription_receiver("f-topic", "all") as receiver:
        assert "topic-scheduled" not in [str(m) for m in receiver.peek_messages(max_message_count=10)]


# --------------------------------------------------------------------------- lock duration


def test_lock_duration_can_be_set_per_entity_from_the_constructor(client: ServiceBusClient) -> None:
    with client.get_queue_sender("job-updates") as sender:
        sender.send_messages(_msg("short lock"))
    with client.get_queue_receiver("job-updates", max_wait_time=WAIT) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert message.locked_until_utc is not None and message.enqueued_time_utc is not None
        lock = (message.locked_until_utc - message.enqueued_time_utc).total_seconds()
        assert 1.5 <= lock < 5  # Config.json says PT30S; the constructor said 1.5 s
        receiver.complete_message(message)


def test_lock_duration_overrides_name_existing_entities() -> None:
    config = load_config(CONFIG_PATH)
    short = with_lock_durations(config, {"JOB-UPDATES": 2, "job-outcomes/Subscriptions/failures": 0.5})
    assert {q.name: q.properties.lock_duration for q in short.queues}["job-updates"] == 2
    [outcomes] = [t for t in short.topics if t.name == "job-outcomes"]
    assert {s.name: s.properties.lock_duration for s in outcomes.subscriptions} == {
        "all-outcomes": 60,
        "failures": 0.5,
    }
    with pytest.raises(ConfigError, match="no-such-queue"):
        with_lock_durations(config, {"no-such-queue": 1})
    with pytest.raises(ConfigError, match="positive"):
        with_lock_durations(config, {"job-updates": 0})
