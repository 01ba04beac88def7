"""``$management`` request/response operations (the ``com.microsoft:*`` operations the SDK uses).

Why a separate module: these are request -> response functions over the entity model, with
no link handling; ``broker.py`` only decodes the request message and sends the reply.
Responses follow the service: application properties ``statusCode`` / ``statusDescription``
(camelCase, unlike CBS) and ``errorCondition`` on failures, which the SDK maps to its
exception types (e.g. ``com.microsoft:message-lock-lost`` -> ``MessageLockLostError``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from proton import UNDESCRIBED as _UNDESCRIBED
from proton import Array, Data, timestamp

from .codec import ms_timestamp, parse_message
from .entities import EntityError, MessageEntity, Namespace, Settle, StoredMessage

UNDESCRIBED = cast(Any, _UNDESCRIBED)  # proton's stubs type the marker too narrowly

_DISPOSITIONS = {
    "completed": Settle.COMPLETE,
    "abandoned": Settle.ABANDON,
    "defered": Settle.DEFER,  # sic: the SDK's spelling of the service's term
    "deferred": Settle.DEFER,
    "suspended": Settle.DEAD_LETTER,
}


@dataclass
class MgmtResponse:
    status: int
    description: str
    body: Any = None
    condition: str | None = None


@dataclass
class MgmtContext:
    """What an operation may need beyond the namespace: the clock and lock owners."""

    namespace: Namespace
    address: str
    now: float
    # owner (receive link) holding ``session_id`` on this connection, if any
    session_owner: Callable[[MessageEntity, str], object | None]
    # owner to lock deferred messages for (the associated receive link)
    receive_owner: Callable[[], object]
    # whether the caller may settle or renew a lock held by ``owner``: only the receiver that
    # got the message may (the service answers message-lock-lost to any other, and to a lock
    # whose receive link is gone, e.g. after its connection dropped)
    holds: Callable[[object | None], bool]


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _ok(body: Any = None) -> MgmtResponse:
    return MgmtResponse(200, "OK", body)


def _timestamps(values: Iterable[float]) -> Array:
    return Array(UNDESCRIBED, Data.TIMESTAMP, *[timestamp(int(v * 1000)) for v in values])


def _encoded_messages(messages: list[StoredMessage], with_lock: bool) -> list[dict[str, Any]]:
    out = []
    for stored in messages:
        item: dict[str, Any] = {"message": stored.encode(with_lock=with_lock)}
        if with_lock and stored.lock_token is not None:
            item["lock-token"] = stored.lock_token
        out.append(item)
    return out


def _session_id(body: dict[str, Any]) -> str | None:
    value = body.get("session-id")
    return None if value is None else str(value)


def _owned_session(ctx: MgmtContext, entity: MessageEntity, body: dict[str, Any]) -> tuple[object, str]:
    session_id = _session_id(body)
    if session_id is None:
        raise EntityError("com.microsoft:argument-error", "session-id is required")
    owner = ctx.session_owner(entity, session_id)
    if owner is None:
        raise EntityError(
            "com.microsoft:session-lock-lost", f"The session lock has expired on the session '{session_id}'."
        )
    return owner, session_id


def _locked(ctx: MgmtContext, raw: Any) -> tuple[uuid.UUID, MessageEntity]:
    """The entity holding a lock token, or the service's lock-lost error."""
    token = _uuid(raw)
    entity = ctx.namespace.lock_index.get(token)
    if entity is None or not ctx.holds(entity.lock_owner(token)):
        raise EntityError(
            "com.microsoft:message-lock-lost",
            "The lock supplied is invalid. Either the lock expired, or the message has "
            "already been removed from the queue.",
        )
    return token, entity


def renew_lock(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    expirations = []
    for raw in _items(body.get("lock-tokens")):
        token, entity = _locked(ctx, raw)
        expirations.append(entity.renew(token, ctx.now))
    return _ok({"expirations": _timestamps(expirations)})


def update_disposition(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    status = str(body.get("disposition-status", "")).lower()
    action = _DISPOSITIONS.get(status)
    if action is None:
        raise EntityError("com.microsoft:argument-error", f"unknown disposition-status {status!r}")
    for raw in _items(body.get("lock-tokens")):
        token, entity = _locked(ctx, raw)
        reason = body.get("deadletter-reason") or None
        description = body.get("deadletter-description") or None
        entity.settle(token, action, ctx.now, reason=reason, description=description)
    return _ok()


def peek_message(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    start = int(body.get("from-sequence-number") or 0)
    count = int(body.get("message-count") or 1)
    session_id = _session_id(body)
    stored = entity.peek(start, count, session_id=session_id)
    found = [(m.sequence_number, m.encode(with_lock=False)) for m in stored]
    queue = ctx.namespace.queue_ingress(entity)
    if queue is not None:
        # Scheduled messages wait in the queue itself (a topic's wait in the topic, so peek on a
        # subscription does not show them: docs "Message browsing").
        found = sorted(found + [(m.sequence_number, m.encode()) for m in queue.scheduled(start, session_id)])
        found = found[:count]
    if not found:
        return MgmtResponse(204, "No Content")
    return _ok({"messages": [{"message": encoded} for _, encoded in found]})


def receive_by_sequence_number(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    session_id = _session_id(body)
    owner = ctx.receive_owner()
    if entity.requires_session and session_id is not None:
        owner, session_id = _owned_session(ctx, entity, body)
    peek_lock = int(body.get("receiver-settle-mode") or 0) == 1
    found = entity.receive_deferred(
        owner,
        [int(s) for s in _items(body.get("sequence-numbers"))],
        ctx.now,
        session_id=session_id,
        peek_lock=peek_lock,
    )
    return _ok({"messages": _encoded_messages(found, with_lock=peek_lock)})


def schedule_message(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    ingress = ctx.namespace.ingress_for(ctx.address)
    sequence_numbers = []
    for item in _items(body.get("messages")):
        message = parse_message(bytes(item["message"]))
        due = message.annotation("x-opt-scheduled-enqueue-time")
        at = int(due) / 1000.0 if due is not None else ctx.now
        sequence_numbers.append(ingress.schedule(message, at, ctx.now))
    return _ok({"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *sequence_numbers)})


def cancel_scheduled_message(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    ingress = ctx.namespace.ingress_for(ctx.address)
    for seq in _items(body.get("sequence-numbers")):
        ingress.cancel_scheduled(int(seq))
    return _ok()


def renew_session_lock(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    owner, session_id = _owned_session(ctx, entity, body)
    return _ok({"expiration": ms_timestamp(entity.renew_session(owner, session_id, ctx.now))})


def get_session_state(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    owner, session_id = _owned_session(ctx, entity, body)
    state = entity.get_session_state(owner, session_id, ctx.now)
    return _ok({"session-state": state})


def set_session_state(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    owner, session_id = _owned_session(ctx, entity, body)
    value = body.get("session-state")
    entity.set_session_state(owner, session_id, None if value is None else bytes(value), ctx.now)
    return _ok()


def get_message_sessions(ctx: MgmtContext, body: dict[str, Any]) -> MgmtResponse:
    entity = ctx.namespace.entity_for(ctx.address)
    ids = sorted({m.session_id for m in entity.messages.values() if m.session_id is not None})
    skip = int(body.get("skip") or 0)
    top = int(body.get("top") or len(ids) or 1)
    page = ids[skip : skip + top]
    if not page:
        return MgmtResponse(204, "No Content")
    return _ok({"skip": skip + len(page), "sessions-ids": Array(UNDESCRIBED, Data.STRING, *page)})


OPERATIONS: dict[str, Callable[[MgmtContext, dict[str, Any]], MgmtResponse]] = {
    "com.microsoft:renew-lock": renew_lock,
    "com.microsoft:update-disposition": update_disposition,
    "com.microsoft:peek-message": peek_message,
    "com.microsoft:receive-by-sequence-number": receive_by_sequence_number,
    "com.microsoft:schedule-message": schedule_message,
    "com.microsoft:cancel-scheduled-message": cancel_scheduled_message,
    "com.microsoft:renew-session-lock": renew_session_lock,
    "com.microsoft:get-session-state": get_session_state,
    "com.microsoft:set-session-state": set_session_state,
    "com.microsoft:get-message-sessions": get_message_sessions,
}

_STATUS_FOR = {
    "com.microsoft:message-lock-lost": 410,
    "com.microsoft:session-lock-lost": 410,
    "com.microsoft:message-not-found": 404,
    "amqp:not-found": 404,
    "com.microsoft:session-cannot-be-locked": 410,
    "com.microsoft:entity-disabled": 400,
    "amqp:not-allowed": 400,
}


def handle(operation: str, body: Any, ctx: MgmtContext) -> MgmtResponse:
    """Run one operation; every failure becomes a status + errorCondition, never an exception."""
    fn = OPERATIONS.get(operation)
    if fn is None:
        return MgmtResponse(
            501,
            f"Operation {operation!r} is not implemented by the local broker.",
            condition="amqp:not-implemented",
        )
    request = {str(k): v for k, v in body.items()} if isinstance(body, dict) else {}
    try:
        return fn(ctx, request)
    except EntityError as exc:
        return MgmtResponse(_STATUS_FOR.get(exc.condition, 400), exc.description, condition=exc.condition)
    except (KeyError, TypeError, ValueError) as exc:
        return MgmtResponse(400, f"Bad request: {exc}", condition="com.microsoft:argument-error")
