"""The broker's indexes (standins/servicebus/structures.py) and the entity built on them,
each against a plain list/dict model run through the same random operation sequence."""

from __future__ import annotations

import uuid

from hypothesis import example, given, settings
from hypothesis import strategies as st

from standins.servicebus.codec import AmqpMessage
from standins.servicebus.config import EntityProperties
from standins.servicebus.entities import MessageEntity, Settle, StoredMessage, TickResult
from standins.servicebus.structures import DueHeap, DuplicateWindow, ReadyQueue

SESSIONS = [None, "a", "b", "c"]

ready_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.sampled_from(SESSIONS)),
        st.tuples(st.just("discard"), st.integers(0, 40), st.none()),
        st.tuples(st.just("pop"), st.none(), st.sampled_from(SESSIONS)),
        st.tuples(st.just("first"), st.none(), st.sampled_from(SESSIONS)),
        st.tuples(st.just("sessions"), st.none(), st.none()),
    ),
    max_size=300,
)


@given(ready_ops)
@settings(max_examples=300)
def test_ready_queue_matches_a_list_model(ops: list[tuple[str, int | None, str | None]]) -> None:
    queue = ReadyQueue()
    model: dict[int, str | None] = {}  # seq -> session; order by sorting
    for op, seq, session in ops:
        if op == "add":
            assert seq is not None
            if seq not in model:  # a number is ready once, with one session
                model[seq] = session
                queue.add(seq, session)
        elif op == "discard":
            assert seq is not None
            model.pop(seq, None)
            queue.discard(seq)
        elif op in ("pop", "first"):
            candidates = sorted(s for s, sid in model.items() if session is None or sid == session)
            expected = candidates[0] if candidates else None
            got = queue.pop(session) if op == "pop" else queue.first(session)
            assert got == expected
            if op == "pop" and expected is not None:
                del model[expected]
        else:
            firsts: dict[str, int] = {}
            for s, sid in sorted(model.items()):
                if sid is not None:
                    firsts.setdefault(sid, s)
            assert queue.sessions_in_order() == sorted(firsts, key=lambda k: firsts[k])
        assert len(queue) == len(model) and list(queue) == sorted(model)
        assert all((s in queue) for s in model)


due_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 15), st.floats(0, 100)),
        st.tuples(st.just("discard"), st.integers(0, 15), st.just(0.0)),
        st.tuples(st.just("pop"), st.just(0), st.floats(0, 100)),
    ),
    max_size=300,
)


@given(due_ops)
# A re-push at the same due time must leave the older entry stale (found by CI).
@example([("push", 1, 0.0), ("push", 0, 0.0), ("push", 1, 0.0), ("pop", 0, 0.0)])
@settings(max_examples=300)
def test_due_heap_matches_a_dict_model(ops: list[tuple[str, int, float]]) -> None:
    heap: DueHeap[int] = DueHeap()
    model: dict[int, tuple[float, int]] = {}  # key -> (due, push order)
    for n, (op, key, value) in enumerate(ops):
        if op == "push":
            heap.push(key, value)
            model[key] = (value, n)
        elif op == "discard":
            heap.discard(key)
            model.pop(key, None)
        else:
            due = sorted((t, order, k) for k, (t, order) in model.items() if t <= value)
            assert heap.pop_due(value) == [k for _, _, k in due]
            for _, _, k in due:
                del model[k]
        assert len(heap) == len(model)


@given(
    st.floats(1, 50),
    st.lists(st.tuples(st.floats(0, 20), st.sampled_from(["x", "y", "z", "w"])), max_size=200),
)
def test_duplicate_window_matches_the_rebuilt_dict(window: float, sends: list[tuple[float, str]]) -> None:
    """The old implementation, rebuilt per send, is the reference: same answers."""
    fast = DuplicateWindow(window)
    seen: dict[str, float] = {}
    now = 0.0
    for step, message_id in sends:
        now += step  # the broker's clock moves forward
        seen = {k: t for k, t in seen.items() if now - t < window}
        expected = message_id in seen
        if not expected:
            seen[message_id] = now
        assert fast.seen(message_id, now) is expected
    assert len(fast) <= len(seen) + 4


# --- the entity: peek-lock FIFO, abandon, lock expiry, TTL, dead-letter --------------------

entity_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 3)),
        st.tuples(st.just("receive"), st.integers(1, 3)),
        st.tuples(st.sampled_from(["complete", "abandon", "release", "defer"]), st.integers(0, 5)),
        st.tuples(st.just("wait"), st.integers(1, 40)),
    ),
    max_size=120,
)


class _Model:
    """A list-based model of a non-session queue with the service's rules."""

    def __init__(self, props: EntityProperties) -> None:
        self.props = props
        self.stored: dict[int, dict[str, object]] = {}  # seq -> {count, expires, locked_until, deferred}
        self.dead: list[tuple[int, str]] = []

    def ready(self, now: float) -> list[int]:
        return sorted(s for s, m in self.stored.items() if m["locked_until"] is None and not m["deferred"])

    def fail(self, seq: int) -> None:
        m = self.stored[seq]
        m["count"] = int(str(m["count"])) + 1
        m["locked_until"] = None
        if int(str(m["count"])) >= self.props.max_delivery_count:
            del self.stored[seq]
            self.dead.append((seq, "MaxDeliveryCountExceeded"))

    def expire(self, seq: int) -> None:
        del self.stored[seq]
        self.dead.append((seq, "TTLExpiredException"))

    def tick(self, now: float) -> None:
        for seq in sorted(self.stored):
            m = self.stored.get(seq)
            if m is not None and m["locked_until"] is not None and float(str(m["locked_until"])) <= now:
                self.fail(seq)
        for seq in self.ready(now):
            if float(str(self.stored[seq]["expires"])) <= now:
                self.expire(seq)

    def receive(self, now: float) -> int | None:
        for seq in self.ready(now):
            if float(str(self.stored[seq]["expires"])) <= now:
                self.expire(seq)
                continue
            self.stored[seq]["locked_until"] = now + self.props.lock_duration
            return seq
        return None


@given(entity_ops)
@settings(max_examples=200, deadline=None)
def test_entity_delivers_the_same_messages_in_the_same_order_as_a_list_model(
    ops: list[tuple[str, int]],
) -> None:
    props = EntityProperties(
        lock_duration=30.0,
        max_delivery_count=3,
        dead_lettering_on_message_expiration=True,
        default_message_ttl=100.0,
    )
    entity = MessageEntity("q", props, {})
    model = _Model(props)
    owner = object()
    now, seq = 1000.0, 0
    held: list[tuple[int, uuid.UUID]] = []  # (seq, token) this receiver holds, oldest first
    for op, n in ops:
        if op == "send":
            for _ in range(n):
                seq += 1
                entity.enqueue(StoredMessage(seq, AmqpMessage(), enqueued_at=now, expires_at=now + 100.0))
                model.stored[seq] = {
                    "count": 0,
                    "expires": now + 100.0,
                    "locked_until": None,
                    "deferred": False,
                }
        elif op == "receive":
            for _ in range(n):
                got = entity.acquire(owner, now)
                expected = model.receive(now)
                assert (got.sequence_number if got else None) == expected
                if got is not None:
                    assert got.lock_token is not None
                    held.append((got.sequence_number, got.lock_token))
        elif op == "wait":
            now += n
            entity.tick(now, TickResult())
            model.tick(now)
            held = [
                (s, t) for s, t in held if s in model.stored and model.stored[s]["locked_until"] is not None
            ]
        elif held:
            s, token = held.pop(n % len(held))
            entity.settle(token, Settle(op), now)
            if op == "complete":
                del model.stored[s]
            elif op == "abandon":
                model.fail(s)
            elif op == "release":
                model.stored[s]["locked_until"] = None
            else:
                model.stored[s]["locked_until"] = None
                model.stored[s]["deferred"] = True
        assert sorted(entity.messages) == sorted(model.stored)
        assert entity.dead_letter is not None
        dead = sorted(
            (m.sequence_number, str(m.message.application_properties.get("DeadLetterReason")))
            for m in entity.dead_letter.messages.values()
        )
        assert dead == sorted(model.dead)
        assert entity.locked_count == len(held)
        assert [m.sequence_number for m in entity.peek(0, 1000)] == sorted(model.stored)
