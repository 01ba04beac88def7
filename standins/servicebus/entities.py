"""Broker state: queues, topics, subscriptions, dead-letter sub-queues, locks and sessions.

Why a pure state machine: everything here is plain Python driven by explicit ``now``
arguments and called only from the reactor thread, so the Service Bus semantics
(peek-lock, delivery counts, automatic dead-lettering, session locks, duplicate detection,
TTL) live in one place that knows nothing about AMQP framing. ``broker.py`` translates
link events into these calls.

Delivery-count convention: the AMQP header ``delivery-count`` is the number of *failed*
prior deliveries (0 on the first delivery), which is what ``ServiceBusReceivedMessage.
delivery_count`` shows. Abandon and lock expiry count a failure; ``released`` does not.
Once the count reaches the entity's ``MaxDeliveryCount`` the message is moved to the
dead-letter sub-queue with reason ``MaxDeliveryCountExceeded`` (the service's behaviour).
"""

from __future__ import annotations

import enum
import heapq
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .codec import AmqpMessage, ms_timestamp
from .config import EntityProperties, NamespaceConfig
from .filters import MessageView, RuleFilter, compile_rules
from .structures import DueHeap, DuplicateWindow, ReadyQueue

DLQ_SUFFIX = "$deadletterqueue"

REASON_MAX_DELIVERY = "MaxDeliveryCountExceeded"
REASON_TTL = "TTLExpiredException"


class EntityError(Exception):
    """A request the service would refuse; ``condition`` is the AMQP error symbol it uses."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class Settle(enum.Enum):
    COMPLETE = "complete"
    ABANDON = "abandon"
    DEFER = "defer"
    DEAD_LETTER = "dead-letter"
    RELEASE = "release"


# x-opt-message-state values (ServiceBusMessageState in the SDK).
STATE_ACTIVE = 0
STATE_DEFERRED = 1
STATE_SCHEDULED = 2


@dataclass(eq=False, slots=True)
class StoredMessage:
    sequence_number: int
    message: AmqpMessage
    enqueued_at: float
    expires_at: float | None
    delivery_count: int = 0
    deferred: bool = False
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    owner: object | None = None

    @property
    def session_id(self) -> str | None:
        return self.message.session_id

    def broker_annotations(self, *, with_lock: bool = True) -> dict[str, Any]:
        """The ``x-opt-*`` annotations the SDK reads on a received message.

        ``with_lock=False`` for peek: the service returns a snapshot in which the lock state
        of a locked message is not observable (docs: "Message browsing", locked messages).
        """
        annotations: dict[str, Any] = {
            "x-opt-sequence-number": int(self.sequence_number),
            "x-opt-enqueued-time": ms_timestamp(self.enqueued_at),
            "x-opt-message-state": STATE_DEFERRED if self.deferred else STATE_ACTIVE,
        }
        if with_lock and self.locked_until is not None:
            annotations["x-opt-locked-until"] = ms_timestamp(self.locked_until)
        if with_lock and self.lock_token is not None:
            annotations["x-opt-lock-token"] = self.lock_token
        return annotations

    def encode(self, *, with_lock: bool = True) -> bytes:
        return self.message.encode(
            delivery_count=self.delivery_count, annotations=self.broker_annotations(with_lock=with_lock)
        )


@dataclass(eq=False, slots=True)
class ScheduledMessage:
    """A message accepted for later enqueue: it has its sequence number already (the one
    ``schedule_messages`` returns), and peek on a queue shows it with state Scheduled."""

    sequence_number: int
    message: AmqpMessage
    due: float
    accepted_at: float

    @property
    def session_id(self) -> str | None:
        return self.message.session_id

    def encode(self) -> bytes:
        return self.message.encode(
            delivery_count=0,
            annotations={
                "x-opt-sequence-number": int(self.sequence_number),
                "x-opt-enqueued-time": ms_timestamp(self.accepted_at),
                "x-opt-scheduled-enqueue-time": ms_timestamp(self.due),
                "x-opt-message-state": STATE_SCHEDULED,
            },
        )


@dataclass(eq=False)
class SessionState:
    session_id: str
    state: bytes | None = None
    owner: object | None = None
    locked_until: float = 0.0

    def held_by_other(self, owner: object, now: float) -> bool:
        return self.owner is not None and self.owner != owner and self.locked_until > now


@dataclass
class TickResult:
    """What changed during a timer tick, so the broker knows whom to notify."""

    lost_sessions: list[tuple[MessageEntity, object, str]] = field(default_factory=list)
    available: set[MessageEntity] = field(default_factory=set)


class MessageEntity:
    """Something receivers attach to: a queue, a subscription, or a dead-letter sub-queue."""

    def __init__(
        self,
        path: str,
        props: EntityProperties,
        lock_index: dict[uuid.UUID, MessageEntity],
        *,
        is_dead_letter: bool = False,
    ) -> None:
        self.path = path
        self.props = props
        self.is_dead_letter = is_dead_letter
        self.requires_session = props.requires_session and not is_dead_letter
        self._locks = lock_index
        self.messages: dict[int, StoredMessage] = {}
        # Indexes over ``messages`` so no per-message operation scans the backlog:
        self._ready = ReadyQueue()  # deliverable, by sequence number (and session)
        self._by_token: dict[uuid.UUID, StoredMessage] = {}  # by lock token (few: in flight)
        self._expiry: DueHeap[int] = DueHeap()  # TTL of ready messages, by sequence number
        self.sessions: dict[str, SessionState] = {}
        self.dead_letter: MessageEntity | None = None
        if not is_dead_letter:
            self.dead_letter = MessageEntity(
                f"{path}/$DeadLetterQueue", props, lock_index, is_dead_letter=True
            )

    def __repr__(self) -> str:
        return f"MessageEntity({self.path!r})"

    # --- counts (diagnostics) ----------------------------------------------------
    @property
    def active_count(self) -> int:
        return sum(1 for m in self.messages.values() if not m.deferred)

    @property
    def locked_count(self) -> int:
        return len(self._by_token)

    def clear(self) -> None:
        """Drop every stored message (a bench between runs; no Service Bus operation)."""
        for stored in list(self.messages.values()):
            self._clear_lock(stored)
        self.messages.clear()
        self._ready.clear()
        self._expiry.clear()

    # --- enqueue -----------------------------------------------------------------
    def enqueue(self, stored: StoredMessage) -> None:
        self.messages[stored.sequence_number] = stored
        if not stored.deferred:
            self._add_ready(stored)

    def _add_ready(self, stored: StoredMessage) -> None:
        self._ready.add(stored.sequence_number, stored.session_id)
        if stored.expires_at is not None:
            self._expiry.push(stored.sequence_number, stored.expires_at)

    def _make_ready(self, stored: StoredMessage) -> None:
        self._clear_lock(stored)
        if stored.deferred:
            return
        self._add_ready(stored)

    def _clear_lock(self, stored: StoredMessage) -> None:
        if stored.lock_token is not None:
            self._locks.pop(stored.lock_token, None)
            self._by_token.pop(stored.lock_token, None)
        stored.lock_token = None
        stored.locked_until = None
        stored.owner = None

    def _remove(self, stored: StoredMessage) -> None:
        self._clear_lock(stored)
        self.messages.pop(stored.sequence_number, None)
        self._ready.discard(stored.sequence_number)
        self._expiry.discard(stored.sequence_number)

    # --- receive -----------------------------------------------------------------
    def has_ready(self, session_id: str | None = None) -> bool:
        if session_id is None:
            return bool(self._ready)
        return self._ready.has_session(session_id)

    def acquire(
        self, owner: object, now: float, *, session_id: str | None = None, peek_lock: bool = True
    ) -> StoredMessage | None:
        """Take the next available message (of ``session_id`` on session entities)."""
        if self.requires_session and session_id is None:
            return None
        while (seq := self._ready.pop(session_id if self.requires_session else None)) is not None:
            stored = self.messages[seq]
            self._expiry.discard(seq)
            if self._expire_if_due(stored, now):
                continue
            if not peek_lock:
                self._remove(stored)
                return stored
            self._lock(stored, owner, now, session_id)
            return stored
        return None

    def _lock(self, stored: StoredMessage, owner: object, now: float, session_id: str | None) -> None:
        stored.lock_token = uuid.uuid4()
        stored.owner = owner
        if self.requires_session and session_id is not None:
            stored.locked_until = self.sessions[session_id].locked_until
        else:
            stored.locked_until = now + self.props.lock_duration
        self._locks[stored.lock_token] = self
        self._by_token[stored.lock_token] = stored

    def receive_deferred(
        self,
        owner: object,
        sequence_numbers: Iterable[int],
        now: float,
        *,
        session_id: str | None = None,
        peek_lock: bool = True,
    ) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        for seq in sequence_numbers:
            stored = self.messages.get(int(seq))
            if stored is None or not stored.deferred or stored.lock_token is not None:
                raise EntityError(
                    "com.microsoft:message-not-found",
                    f"Failed to lock one or more specified messages: sequence number {seq}.",
                )
            if self.requires_session and stored.session_id != session_id:
                raise EntityError(
                    "com.microsoft:message-not-found", f"Deferred message {seq} belongs to another session."
                )
            found.append(stored)
        for stored in found:
            if peek_lock:
                self._lock(stored, owner, now, session_id)
            else:
                self._remove(stored)
        return found

    def peek(self, from_sequence: int, count: int, *, session_id: str | None = None) -> list[StoredMessage]:
        """Stored messages from ``from_sequence`` on, in sequence order: active, locked and
        deferred alike (the service's peek shows all three; dead-lettered ones only on the
        dead-letter queue)."""
        # O(n log count) per peek, and peek is not on the per-message path.
        candidates = (
            m
            for seq, m in self.messages.items()
            if seq >= from_sequence and (session_id is None or m.session_id == session_id)
        )
        return heapq.nsmallest(count, candidates, key=lambda m: m.sequence_number)

    def lock_owner(self, token: uuid.UUID) -> object | None:
        """Who holds the lock ``token`` (the receive link it was delivered on), if anyone."""
        stored = self._by_token.get(token)
        return stored.owner if stored is not None else None

    # --- settle ------------------------------------------------------------------
    def settle(
        self,
        token: uuid.UUID,
        action: Settle,
        now: float,
        *,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        """Apply a settlement; raises ``message-lock-lost`` if the lock is gone."""
        stored = self._locked(token, now)
        if action is Settle.COMPLETE:
            self._remove(stored)
        elif action is Settle.RELEASE:
            self._make_ready(stored)
        elif action is Settle.ABANDON:
            self._fail_delivery(stored, now)
        elif action is Settle.DEFER:
            self._clear_lock(stored)
            stored.deferred = True
        elif action is Settle.DEAD_LETTER:
            self.dead_letter_message(stored, reason, description)

    def _locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        stored = self._by_token.get(token)
        if stored is not None:
            lapsed = stored.locked_until is not None and stored.locked_until <= now
            if not (lapsed and not self.requires_session):
                return stored
            self._fail_delivery(stored, now)
        raise EntityError(
            "com.microsoft:message-lock-lost",
            "The lock supplied is invalid. Either the lock expired, or the message has already "
            "been removed from the queue.",
        )

    def renew(self, token: uuid.UUID, now: float) -> float:
        stored = self._locked(token, now)
        stored.locked_until = now + self.props.lock_duration
        return stored.locked_until

    def _fail_delivery(self, stored: StoredMessage, now: float) -> None:
        """Abandon or lock expiry: count the failed delivery, dead-letter past the maximum."""
        stored.delivery_count += 1
        if self.dead_letter is not None and stored.delivery_count >= self.props.max_delivery_count:
            self.dead_letter_message(
                stored,
                REASON_MAX_DELIVERY,
                f"Message could not be consumed after {self.props.max_delivery_count} delivery attempts.",
            )
            return
        self._make_ready(stored)

    def dead_letter_message(self, stored: StoredMessage, reason: str | None, description: str | None) -> None:
        if self.dead_letter is None:
            self._make_ready(stored)  # a dead-letter queue has no dead-letter queue: keep it
            return
        self._remove(stored)
        message = stored.message.copy()
        if reason is not None:
            message.set_application_property("DeadLetterReason", reason)
        if description is not None:
            message.set_application_property("DeadLetterErrorDescription", description)
        self.dead_letter.enqueue(
            StoredMessage(
                sequence_number=stored.sequence_number,
                message=message,
                enqueued_at=stored.enqueued_at,
                expires_at=None,
                delivery_count=stored.delivery_count,
            )
        )

    def _expire_if_due(self, stored: StoredMessage, now: float) -> bool:
        if stored.expires_at is None or stored.expires_at > now or stored.lock_token is not None:
            return False
        if self.props.dead_lettering_on_message_expiration and self.dead_letter is not None:
            self.dead_letter_message(stored, REASON_TTL, "The message expired and was dead lettered.")
        else:
            self._remove(stored)
        return True

    # --- sessions ----------------------------------------------------------------
    def lock_session(self, owner: object, session_id: str | None, now: float) -> SessionState | None:
        """Lock ``session_id`` (any session may be locked), or the next unlocked session with
        messages when ``session_id`` is None; None means nothing is available yet."""
        if session_id is None:
            for candidate in self._ready.sessions_in_order():
                state = self.sessions.get(candidate)
                if state is None or not state.held_by_other(owner, now):
                    session_id = candidate
                    break
            else:
                return None
        state = self.sessions.setdefault(session_id, SessionState(session_id))
        if state.held_by_other(owner, now):
            raise EntityError(
                "com.microsoft:session-cannot-be-locked",
                f"The requested session '{session_id}' cannot be accepted. It may be locked by "
                "another receiver.",
            )
        state.owner = owner
        state.locked_until = now + self.props.lock_duration
        return state

    def renew_session(self, owner: object, session_id: str, now: float) -> float:
        state = self._owned_session(owner, session_id, now)
        state.locked_until = now + self.props.lock_duration
        for stored in self._by_token.values():
            if stored.owner == owner and stored.session_id == session_id:
                stored.locked_until = state.locked_until
        return state.locked_until

    def _owned_session(self, owner: object, session_id: str, now: float) -> SessionState:
        state = self.sessions.get(session_id)
        if state is None or state.owner != owner or state.locked_until <= now:
            raise EntityError(
                "com.microsoft:session-lock-lost",
                f"The session lock has expired on the session '{session_id}'.",
            )
        return state

    def get_session_state(self, owner: object, session_id: str, now: float) -> bytes | None:
        return self._owned_session(owner, session_id, now).state

    def set_session_state(self, owner: object, session_id: str, value: bytes | None, now: float) -> None:
        self._owned_session(owner, session_id, now).state = value

    def release_session(self, owner: object, now: float) -> None:
        """Receiver gone: unlock its sessions; messages it held return (a failed delivery)."""
        for state in self.sessions.values():
            if state.owner == owner:
                state.owner = None
                state.locked_until = 0.0
        for stored in list(self._by_token.values()):
            if stored.owner == owner and self.requires_session:
                self._fail_delivery(stored, now)

    def session_held_by(self, owner: object, now: float) -> str | None:
        for state in self.sessions.values():
            if state.owner == owner and state.locked_until > now:
                return state.session_id
        return None

    # --- timers ------------------------------------------------------------------
    def tick(self, now: float, result: TickResult) -> None:
        # Locks are held only by messages in flight and TTLs sit in a heap: a tick costs what
        # is locked or due, not what is stored.
        changed = False
        for state in self.sessions.values():
            if state.owner is not None and state.locked_until <= now:
                result.lost_sessions.append((self, state.owner, state.session_id))
                owner, state.owner = state.owner, None
                for stored in list(self._by_token.values()):
                    if stored.owner == owner and stored.session_id == state.session_id:
                        self._fail_delivery(stored, now)
                        changed = True
        if not self.requires_session:
            for stored in list(self._by_token.values()):
                until = stored.locked_until
                if until is not None and until <= now:
                    self._fail_delivery(stored, now)
                    changed = True
        for seq in self._expiry.pop_due(now):
            ready = self.messages.get(seq)
            if ready is not None and seq in self._ready:
                self._ready.discard(seq)
                if not self._expire_if_due(ready, now):
                    self._ready.add(seq, ready.session_id)
                changed = True
        if self._ready and changed:
            result.available.add(self)
        if self.dead_letter is not None:
            self.dead_letter.tick(now, result)


class Ingress:
    """The part of a queue or topic that accepts sends: numbering, duplicate detection,
    session-id checks, TTL and scheduled enqueue, then routing to message entities."""

    def __init__(
        self,
        name: str,
        props: EntityProperties,
        route: Callable[[AmqpMessage], list[tuple[MessageEntity, float]]],
    ) -> None:
        self.name = name
        self.props = props
        self._route = route
        self._next_sequence = 1
        self._seen = DuplicateWindow(props.duplicate_detection_window)
        self._scheduled: dict[int, ScheduledMessage] = {}
        self._due: DueHeap[int] = DueHeap()  # scheduled sequence numbers by enqueue time
        self.available = True
        self.unavailable_condition = "com.microsoft:entity-disabled"

    def _sequence(self) -> int:
        seq = self._next_sequence
        self._next_sequence += 1
        return seq

    def _is_duplicate(self, message: AmqpMessage, now: float) -> bool:
        if not self.props.requires_duplicate_detection or message.message_id is None:
            return False
        return self._seen.seen(message.message_id, now)

    def check(self, messages: list[AmqpMessage]) -> None:
        """Refuse the whole transfer the way the service does before storing anything."""
        for message in messages:
            if message.session_id is None and any(
                target.requires_session for target, _ in self._route(message)
            ):
                raise EntityError(
                    "amqp:not-allowed",
                    "The SessionId was not set on a message, and it cannot be sent to the entity. Entities "
                    "that have session support enabled can only receive messages that have the SessionId "
                    f"set to a valid value. Entity: '{self.name}'.",
                )

    def send(self, messages: list[AmqpMessage], now: float) -> set[MessageEntity]:
        """Store (or schedule) the messages; returns the entities that gained messages."""
        self.check(messages)
        touched: set[MessageEntity] = set()
        for message in messages:
            if self._is_duplicate(message, now):
                continue
            scheduled = message.annotation("x-opt-scheduled-enqueue-time")
            seq = self._sequence()
            if scheduled is not None and int(scheduled) / 1000.0 > now:
                self._add_scheduled(ScheduledMessage(seq, message, int(scheduled) / 1000.0, now))
                continue
            touched |= self._deliver(seq, message, now)
        return touched

    def schedule(self, message: AmqpMessage, at: float, now: float) -> int:
        self.check([message])
        seq = self._sequence()
        # Duplicate detection applies when a message is scheduled, too: the service
        # still answers with a sequence number, but keeps only the first message
        # (Azure/azure-service-bus#265).
        if not self._is_duplicate(message, now):
            self._add_scheduled(ScheduledMessage(seq, message, at, now))
        return seq

    def _add_scheduled(self, item: ScheduledMessage) -> None:
        self._scheduled[item.sequence_number] = item
        self._due.push(item.sequence_number, item.due)

    @property
    def scheduled_count(self) -> int:
        return len(self._scheduled)

    def scheduled(self, from_sequence: int, session_id: str | None = None) -> list[ScheduledMessage]:
        """Scheduled messages from ``from_sequence`` on, in sequence order (for peek)."""
        return [
            item
            for seq, item in sorted(self._scheduled.items())
            if seq >= from_sequence and (session_id is None or item.session_id == session_id)
        ]

    def cancel_scheduled(self, sequence_number: int) -> None:
        self._due.discard(int(sequence_number))
        if self._scheduled.pop(int(sequence_number), None) is None:
            raise EntityError(
                "com.microsoft:message-not-found",
                f"The scheduled message with sequence number {sequence_number} was not found.",
            )

    def _deliver(self, seq: int, message: AmqpMessage, now: float) -> set[MessageEntity]:
        touched: set[MessageEntity] = set()
        for target, entity_ttl in self._route(message):
            ttls = [t for t in (message.ttl_seconds, self.props.default_message_ttl, entity_ttl) if t]
            target.enqueue(
                StoredMessage(
                    sequence_number=seq,
                    # Shared, not copied, across subscriptions: a stored message is never changed
                    # in place (dead-lettering copies it first), and a copy per subscription
                    # was most of the memory per stored event.
                    message=message,
                    enqueued_at=now,
                    expires_at=now + min(ttls) if ttls else None,
                )
            )
            touched.add(target)
        return touched

    def tick(self, now: float, result: TickResult) -> None:
        # Only the due ones (a heap by due time); entities order them by sequence number.
        for seq in self._due.pop_due(now):
            item = self._scheduled.pop(seq)
            result.available |= self._deliver(seq, item.message, now)


@dataclass
class Subscription:
    name: str
    entity: MessageEntity
    filters: list[RuleFilter]

    def matches(self, message: AmqpMessage) -> bool:
        view = MessageView(system=message.system_view(), user=message.application_properties)
        return any(f.matches(view) for f in self.filters)


class Topic:
    def __init__(self, name: str, props: EntityProperties, subscriptions: list[Subscription]) -> None:
        self.name = name
        self.subscriptions = {s.name.lower(): s for s in subscriptions}
        self.ingress = Ingress(name, props, self._route)

    def _route(self, message: AmqpMessage) -> list[tuple[MessageEntity, float]]:
        return [
            (s.entity, s.entity.props.default_message_ttl)
            for s in self.subscriptions.values()
            if s.matches(message)
        ]


class Namespace:
    """All entities of the (single) namespace, addressed the way AMQP link addresses do."""

    def __init__(self, config: NamespaceConfig) -> None:
        self.name = config.name
        self.lock_index: dict[uuid.UUID, MessageEntity] = {}
        self.queues: dict[str, tuple[MessageEntity, Ingress]] = {}
        self.topics: dict[str, Topic] = {}
        for q in config.queues:
            entity = MessageEntity(q.name, q.properties, self.lock_index)
            ingress = Ingress(
                q.name, q.properties, (lambda e: lambda _m: [(e, e.props.default_message_ttl)])(entity)
            )
            self.queues[q.name.lower()] = (entity, ingress)
        for t in config.topics:
            subs = [
                Subscription(
                    s.name,
                    MessageEntity(f"{t.name}/Subscriptions/{s.name}", s.properties, self.lock_index),
                    compile_rules(s.rules),
                )
                for s in t.subscriptions
            ]
            self.topics[t.name.lower()] = Topic(t.name, t.properties, subs)

    @staticmethod
    def _segments(address: str) -> list[str]:
        path = address.split("://", 1)[1].split("/", 1)[1] if "://" in address else address
        return [p for p in path.strip("/").split("/") if p]

    def has_top_level(self, address: str) -> bool:
        """Whether the queue or topic an address (or CBS audience) starts with exists; a bare
        namespace audience (no path) counts as existing."""
        if "://" in address:
            rest = address.split("://", 1)[1]
            address = rest.split("/", 1)[1] if "/" in rest else ""
        parts = self._segments(address)
        if not parts:
            return True
        key = parts[0].lower()
        return key in self.queues or key in self.topics

    def ingress_for(self, address: str) -> Ingress:
        """The queue or topic a sender link targets."""
        parts = self._segments(address)
        if parts and parts[-1].lower() == "$management":
            parts = parts[:-1]
        if len(parts) == 1:
            key = parts[0].lower()
            if key in self.queues:
                return self.queues[key][1]
            if key in self.topics:
                return self.topics[key].ingress
        raise EntityError(
            "amqp:not-found",
            f"The messaging entity '{address}' could not be found. To know more visit "
            "https://aka.ms/sbResourceMgrExceptions.",
        )

    def entity_for(self, address: str) -> MessageEntity:
        """The queue, subscription or dead-letter sub-queue a receiver (or $management) targets."""
        parts = self._segments(address)
        if parts and parts[-1].lower() == "$management":
            parts = parts[:-1]
        dead_letter = bool(parts) and parts[-1].lower() == DLQ_SUFFIX
        if dead_letter:
            parts = parts[:-1]
        entity: MessageEntity | None = None
        if len(parts) == 1 and parts[0].lower() in self.queues:
            entity = self.queues[parts[0].lower()][0]
        elif len(parts) == 3 and parts[1].lower() == "subscriptions" and parts[0].lower() in self.topics:
            sub = self.topics[parts[0].lower()].subscriptions.get(parts[2].lower())
            entity = sub.entity if sub else None
        if entity is None:
            raise EntityError(
                "amqp:not-found",
                f"The messaging entity '{address}' could not be found. To know more visit "
                "https://aka.ms/sbResourceMgrExceptions.",
            )
        if dead_letter:
            assert entity.dead_letter is not None
            return entity.dead_letter
        return entity

    def queue_ingress(self, entity: MessageEntity) -> Ingress | None:
        """The queue's own ingress when ``entity`` is a queue (not a subscription or a DLQ)."""
        if entity.is_dead_letter:
            return None
        pair = self.queues.get(entity.path.lower())
        return pair[1] if pair is not None and pair[0] is entity else None

    def ingress_of(self, entity: MessageEntity) -> Ingress:
        """The queue/topic a message entity belongs to (for availability checks)."""
        top = entity.path.split("/", 1)[0].lower()
        if top in self.queues:
            return self.queues[top][1]
        return self.topics[top].ingress

    def all_entities(self) -> list[MessageEntity]:
        entities = [e for e, _ in self.queues.values()]
        for topic in self.topics.values():
            entities.extend(s.entity for s in topic.subscriptions.values())
        return entities

    def all_ingresses(self) -> list[Ingress]:
        return [i for _, i in self.queues.values()] + [t.ingress for t in self.topics.values()]

    def tick(self, now: float) -> TickResult:
        result = TickResult()
        for ingress in self.all_ingresses():
            ingress.tick(now, result)
        for entity in self.all_entities():
            entity.tick(now, result)
        return result
