"""The AMQP 1.0 side: a python-qpid-proton reactor that speaks Service Bus to the real SDK.

Why proton: it implements AMQP framing, sessions, flow control and SASL correctly, so this
module only has to add what Service Bus layers on top (CBS, ``$management``, lock tokens as
delivery tags, session filters, the settlement echo of SDK >= 7.15). All broker state lives
in :mod:`entities` and is touched only on the reactor thread; other threads talk to it
through :class:`_Inbox` (a pipe the reactor selects on), so no locks are needed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proton import Condition, Delivery, Endpoint, Event, Handler, Link, Message, Terminus, int32, symbol
from proton.reactor import Container

from standins import StartStop

from . import mgmt
from .codec import DecodeError, dotnet_ticks, split_batch
from .config import NamespaceConfig, load_config, with_lock_durations
from .entities import EntityError, Ingress, MessageEntity, Namespace, Settle

log = logging.getLogger("standins.servicebus")


class _QuietDisconnects(logging.Filter):
    """proton logs every client that hangs up mid-write (the SDK does on close) as an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        noise = (
            "Couldn't send: BrokenPipe",
            "Couldn't send: ConnectionReset",
            "Couldn't recv: ConnectionReset",
        )
        return not record.getMessage().startswith(noise)


logging.getLogger("proton").addFilter(_QuietDisconnects())

SESSION_FILTER = "com.microsoft:session-filter"
LOCKED_UNTIL_UTC = "com.microsoft:locked-until-utc"
OPERATION_TIMEOUT = "com.microsoft:timeout"
MAX_MESSAGE_SIZE = 262_144  # Standard tier: advertised on sender links and enforced on transfers
INCOMING_CREDIT = 100
DEFAULT_SESSION_WAIT = 60.0
DEFAULT_CONFIG = Path(__file__).with_name("Config.json")
_SESSION_LOCK_REFUSALS = frozenset({"com.microsoft:session-cannot-be-locked", OPERATION_TIMEOUT})
NOT_FOUND_HINT = "To know more visit https://aka.ms/sbResourceMgrExceptions."
# What the service says with each condition it uses when an entity cannot serve requests.
OUTAGE_TEXT = {
    "com.microsoft:server-busy": (
        "The request was terminated because the entity is being throttled. Error code : 50009. "
        "Please wait 2 seconds and try again."
    ),
    "amqp:internal-error": "The service was unable to process the request; please retry the operation.",
    "com.microsoft:entity-disabled": "Messaging entity '{name}' is currently disabled.",
}


@dataclass(eq=False)
class _LinkState:
    """Per-link bookkeeping, attached to the proton link as ``link.sb``."""

    link: Link
    kind: str  # "cbs-in" | "mgmt-in" | "send" | "receive" | "reply"
    address: str
    entity: MessageEntity | None = None
    ingress: Ingress | None = None
    peek_lock: bool = True
    session_id: str | None = None
    wants_session: bool = False  # attach is waiting for a session (next-available)
    session_deadline: float = 0.0
    opened: bool = False


class _Inbox:
    """Cross-thread call queue: a pipe the reactor selects on, plus a queue of callables."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._closed = False
        self._transport = None  # proton's IOHandler looks for this on every selectable

    def fileno(self) -> int:
        return self._read

    def submit(self, fn: Callable[[], None]) -> None:
        self._calls.put(fn)
        with contextlib.suppress(OSError):
            os.write(self._write, b"!")

    def on_selectable_init(self, event: Event) -> None:
        selectable: Any = event.context
        selectable.reading = True
        selectable.update()

    def on_selectable_readable(self, event: Event) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read, 4096)
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                break
            fn()

    def close(self) -> None:
        """Called by proton when the selectable is finalised; also safe to call again."""
        if not self._closed:
            self._closed = True
            for fd in (self._read, self._write):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Proton does not catch handler exceptions: one bad frame would kill the reactor thread.
    Log it instead, so a broker bug shows up as a failed operation, not a dead broker."""

    def wrapper(self: Any, event: Event) -> None:
        try:
            fn(self, event)
        except Exception:
            log.exception("error handling %s", event.type)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class _Later(Handler):
    """A one-shot reactor timer that runs ``fn`` (proton delivers timers to a handler)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn

    def on_timer_task(self, event: Event) -> None:
        try:
            self.fn()
        except Exception:
            log.exception("local Service Bus broker timer failed")


class _BrokerHandler(Handler):
    """Reactor event handler: link routing, CBS, transfers, settlement, management, timers."""

    def __init__(self, namespace: Namespace, host: str, port: int, tick_interval: float) -> None:
        super().__init__()
        self.ns = namespace
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self.links: dict[int, _LinkState] = {}
        self._keys = itertools.count(1)
        self._tags = itertools.count(1)
        self.acceptor: Any = None
        self.container: Container | None = None
        self.connections: list[Any] = []
        self.stopping = False
        self.down = False  # between restart()'s drop and the listener coming back
        self._timer: Any = None
        self._later: list[Any] = []
        self.pending_restarts: list[Future[None]] = []  # failed by shutdown() if still waiting
        self._delivery_ids: dict[Any, int] = {}  # per session: what the SDK numbers deliveries as

    # ------------------------------------------------------------------ lifecycle
    @_guarded
    def on_timer_task(self, event: Event) -> None:
        if self.stopping:
            return
        self.tick()
        assert self.container is not None
        self._timer = self.container.schedule(self.tick_interval, self)

    @_guarded
    def on_connection_bound(self, event: Event) -> None:
        # The SDK only speaks SASL ANONYMOUS; without a SASL layer it cannot connect.
        sasl = _req(event.transport).sasl()
        sasl.allowed_mechs("ANONYMOUS")

    @_guarded
    def on_connection_remote_open(self, event: Event) -> None:
        conn = _req(event.connection)
        if self.stopping or self.down:
            conn.close()
            return
        conn.container = f"standins-servicebus-{uuid.uuid4().hex[:8]}"
        conn.open()
        self.connections.append(conn)

    @_guarded
    def on_session_remote_open(self, event: Event) -> None:
        _req(event.session).open()

    @_guarded
    def on_session_remote_close(self, event: Event) -> None:
        _req(event.session).close()

    @_guarded
    def on_connection_remote_close(self, event: Event) -> None:
        conn = _req(event.connection)
        self._drop_connection(conn)
        conn.close()

    @_guarded
    def on_transport_closed(self, event: Event) -> None:
        if event.connection is not None:
            self._drop_connection(event.connection)

    def _drop_connection(self, conn: Any) -> None:
        for state in [s for s in self.links.values() if s.link.connection == conn]:
            self._forget(state)
        for session in [s for s in self._delivery_ids if s.connection == conn]:
            del self._delivery_ids[session]
        if conn in self.connections:
            self.connections.remove(conn)

    @staticmethod
    def _cut(conn: Any) -> None:
        """Close the socket under ``conn`` without an AMQP close: what a crashed node does."""
        transport = conn.transport
        if transport is None:
            return
        transport.close_head()
        transport.close_tail()
        selectable = getattr(transport, "_selectable", None)
        if selectable is not None:
            selectable.terminate()
            selectable.update()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        assert self.container is not None
        self._later.append(self.container.schedule(delay, _Later(fn)))

    def go_down(self) -> None:
        """Stop listening and cut every connection; entity state stays (it is durable)."""
        self.down = True
        if self.acceptor is not None:
            self.acceptor.close()
            self.acceptor = None
        for conn in list(self.connections):
            self._drop_connection(conn)
            self._cut(conn)
        self.connections.clear()

    def come_up(self) -> None:
        """Listen again on the same port (SO_REUSEADDR, set by proton, allows it at once)."""
        assert self.container is not None
        if self.stopping:
            return
        self.acceptor = self.container.acceptor(self.host, str(self.port))
        self.down = False

    # ------------------------------------------------------------------ attach
    @_guarded
    def on_link_remote_open(self, event: Event) -> None:
        link: Link = _req(event.link)
        try:
            if link.is_receiver:
                self._attach_incoming(link)
            else:
                self._attach_outgoing(link)
        except EntityError as exc:
            self._refuse(link, exc.condition, exc.description)

    def _register(self, link: Link, kind: str, address: str, **kwargs: Any) -> _LinkState:
        state = _LinkState(link=link, kind=kind, address=address, **kwargs)
        key = next(self._keys)
        link.sb = state
        link.sb_key = key
        self.links[key] = state
        return state

    def _open(
        self,
        link: Link,
        *,
        source_filter: Mapping[Any, Any] | None = None,
        properties: Mapping[Any, Any] | None = None,
    ) -> None:
        # The SDK detaches with "Invalid link" unless the reply carries source AND target.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if source_filter is not None:
            link.source.filter.clear()
            link.source.filter.put_object(dict(source_filter))
        if properties:
            link.properties = dict(properties)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()
        state = getattr(link, "sb", None)
        if state is not None:
            state.opened = True

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        """Detach with an error; a link not yet attached is attached first.

        A refused attach (entity not found, unavailable, wrong kind of receiver) is answered
        with an attach that has neither source nor target, as AMQP 1.0 (2.6.3) prescribes and
        as the service's AMQP stack does (Microsoft.Azure.Amqp ``CreateAttachForClose``): the
        SDK then reports the detach's condition (e.g. ``MessagingEntityNotFoundError`` for a
        sender, not a retried "lost transfer"). Session receivers are the exception: the SDK
        reads the attach reply as the session lock answer and only raises
        ``SessionCannotBeLockedError`` / ``OperationTimeoutError`` when the reply echoes the
        terminus, so those refusals keep it.
        """
        if not link.state & Endpoint.LOCAL_ACTIVE:
            if condition in _SESSION_LOCK_REFUSALS:
                link.source.copy(link.remote_source)
                link.target.copy(link.remote_target)
            else:
                link.source.type = Terminus.UNSPECIFIED
                link.target.type = Terminus.UNSPECIFIED
            link.open()
        link.condition = Condition(condition, description)
        link.close()
        state = getattr(link, "sb", None)
        if state is not None:
            self._forget(state)

    def _attach_incoming(self, link: Link) -> None:
        """Client sender: $cbs and $management requests, or messages for a queue/topic."""
        address = link.remote_target.address or ""
        if address == "$cbs":
            self._register(link, "cbs-in", address)
        elif address.lower().endswith("$management"):
            self._register(link, "mgmt-in", address)
        else:
            # An unavailable queue/topic still accepts the attach: its transfers are rejected
            # with the condition instead (see _on_send). Refusing the attach races with the
            # SDK, which may already count the link as ready and then reports only
            # "amqp:unknown-error" for the lost transfer.
            ingress = self.ns.ingress_for(address)
            self._register(link, "send", address, ingress=ingress)
            link.max_message_size = MAX_MESSAGE_SIZE
        self._open(link)
        link.flow(INCOMING_CREDIT)

    def _attach_outgoing(self, link: Link) -> None:
        """Client receiver: replies for $cbs/$management, or messages from an entity."""
        address = link.remote_source.address or ""
        if address == "$cbs" or address.lower().endswith("$management"):
            self._register(link, "reply", address)
            self._open(link)
            return
        entity = self.ns.entity_for(address)
        ingress = self.ns.ingress_of(entity)
        if not ingress.available:
            condition = ingress.unavailable_condition
            raise EntityError(condition, _unavailable(ingress.name, condition))
        filters = _read_filter(link.remote_source)
        has_session_filter = SESSION_FILTER in filters
        if entity.requires_session and not has_session_filter:
            raise EntityError(
                "amqp:not-allowed",
                "It is not possible for an entity that requires sessions "
                "to create a non-sessionful message receiver.",
            )
        if has_session_filter and not entity.requires_session:
            raise EntityError(
                "amqp:not-allowed",
                "It is not possible for an entity that does not require "
                "sessions to create a sessionful message receiver.",
            )
        peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        state = self._register(link, "receive", address, entity=entity, peek_lock=peek_lock)
        if not entity.requires_session:
            self._open(link)
            return
        requested = filters[SESSION_FILTER]
        now = time.time()
        if requested is None:
            timeout_ms = (link.remote_properties or {}).get(symbol(OPERATION_TIMEOUT))
            wait = int(timeout_ms) / 1000.0 if timeout_ms else DEFAULT_SESSION_WAIT
            state.wants_session = True
            state.session_deadline = now + wait
            self._try_open_session(state, now)
        else:
            locked = entity.lock_session(state, str(requested), now)
            assert locked is not None  # a named session can always be locked (or it raised)
            self._open_session(state, locked.session_id, locked.locked_until)

    def _try_open_session(self, state: _LinkState, now: float) -> bool:
        assert state.entity is not None
        try:
            locked = state.entity.lock_session(state, None, now)
        except EntityError as exc:
            self._refuse(state.link, exc.condition, exc.description)
            return True
        if locked is None:
            if now >= state.session_deadline:
                self._refuse(
                    state.link,
                    "com.microsoft:timeout",
                    "The operation did not complete within the allotted timeout: no unlocked "
                    "session with messages was available.",
                )
                return True
            return False
        state.wants_session = False
        self._open_session(state, locked.session_id, locked.locked_until)
        return True

    def _open_session(self, state: _LinkState, session_id: str, locked_until: float) -> None:
        state.session_id = session_id
        self._open(
            state.link,
            source_filter={symbol(SESSION_FILTER): session_id},
            properties={symbol(LOCKED_UNTIL_UTC): dotnet_ticks(locked_until)},
        )
        self._pump_link(state)

    # ------------------------------------------------------------------ detach
    @_guarded
    def on_link_remote_close(self, event: Event) -> None:
        self._link_gone(_req(event.link))

    @_guarded
    def on_link_remote_detach(self, event: Event) -> None:
        self._link_gone(_req(event.link))

    def _link_gone(self, link: Link) -> None:
        state = getattr(link, "sb", None)
        if state is not None:
            self._forget(state)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    def _forget(self, state: _LinkState) -> None:
        key = getattr(state.link, "sb_key", None)
        if key is None or self.links.pop(key, None) is None:
            return
        if state.kind == "receive" and state.entity is not None and state.entity.requires_session:
            state.entity.release_session(state, time.time())
            self.pump(state.entity)

    # ------------------------------------------------------------------ transfers
    @_guarded
    def on_link_flow(self, event: Event) -> None:
        state = getattr(event.link, "sb", None)
        if state is not None and state.kind == "receive" and state.opened:
            self._pump_link(state)

    @_guarded
    def on_delivery(self, event: Event) -> None:
        delivery = _req(event.delivery)
        link = delivery.link
        state = getattr(link, "sb", None)
        if link.is_sender:
            if delivery.updated:
                self._on_outcome(delivery)
            return
        if link.state & Endpoint.LOCAL_CLOSED:
            # Frames the client sent before it saw our detach (e.g. the rest of a message that
            # was too large): drop them.
            link.recv(delivery.pending)
            if not delivery.partial:
                delivery.settle()
            return
        if getattr(delivery, "sb_id", None) is None:
            session = link.session
            delivery.sb_id = self._delivery_ids.get(session, 0)
            self._delivery_ids[session] = delivery.sb_id + 1
        if state is not None and state.kind == "send" and delivery.pending > MAX_MESSAGE_SIZE:
            self._too_large(state, delivery)
            return
        if delivery.partial:
            return  # proton buffers multi-frame transfers; wait for the last frame
        if delivery.aborted:
            delivery.settle()
            return
        payload = bytes(link.recv(delivery.pending) or b"")
        link.advance()
        if state is None:
            delivery.update(Delivery.RELEASED)
            delivery.settle()
            return
        try:
            if state.kind == "cbs-in":
                self._on_cbs(link, payload)
                delivery.update(Delivery.ACCEPTED)
            elif state.kind == "mgmt-in":
                self._on_management(state, payload)
                delivery.update(Delivery.ACCEPTED)
            elif state.kind == "send":
                self._on_send(state, delivery, payload)
        except Exception as exc:
            log.exception("failed to process a transfer on %s", state.address)
            _reject(delivery, "amqp:internal-error", f"local broker error: {exc}")
        delivery.settle()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)

    def _too_large(self, state: _LinkState, delivery: Delivery) -> None:
        """A transfer past the link's max-message-size closes the link with
        ``amqp:link:message-size-exceeded``: the service's AMQP stack (Microsoft.Azure.Amqp
        ``ReceivingAmqpLink.OnProcessTransfer``) throws on the frame that crosses the limit and
        the link is closed with that error; nothing is stored."""
        size = delivery.pending
        self._refuse(
            state.link,
            "amqp:link:message-size-exceeded",
            f"The received message (delivery-id:{delivery.sb_id}, size:{size} bytes) exceeds the limit "
            f"({MAX_MESSAGE_SIZE} bytes) currently allowed on the link.",
        )

    def _on_send(self, state: _LinkState, delivery: Delivery, payload: bytes) -> None:
        assert state.ingress is not None
        if not state.ingress.available:
            condition = state.ingress.unavailable_condition
            _reject(delivery, condition, _unavailable(state.ingress.name, condition))
            return
        try:
            messages = split_batch(payload)
            touched = state.ingress.send(messages, time.time())
        except DecodeError as exc:
            _reject(delivery, "amqp:decode-error", f"Could not decode the message: {exc}")
            return
        except EntityError as exc:
            _reject(delivery, exc.condition, exc.description)
            return
        delivery.update(Delivery.ACCEPTED)
        for entity in touched:
            self.pump(entity)

    def pump(self, entity: MessageEntity) -> None:
        """Hand available messages of ``entity`` to its receivers (round-robin by link)."""
        waiting = [s for s in self.links.values() if s.entity is entity and s.kind == "receive"]
        for state in waiting:
            if state.wants_session:
                self._try_open_session(state, time.time())
        active = [s for s in waiting if s.opened and not s.wants_session and s.link.credit > 0]
        while active:
            progressed = []
            for state in active:
                if self._send_one(state):
                    progressed.append(state)
            active = [s for s in progressed if s.link.credit > 0]
        for state in waiting:
            self._maybe_drained(state)

    def _pump_link(self, state: _LinkState) -> None:
        while state.link.credit > 0 and self._send_one(state):
            pass
        self._maybe_drained(state)

    @staticmethod
    def _maybe_drained(state: _LinkState) -> None:
        link = state.link
        if state.opened and link.state & Endpoint.LOCAL_ACTIVE and link.drain_mode and link.credit > 0:
            link.drained()

    def _send_one(self, state: _LinkState) -> bool:
        entity = state.entity
        link = state.link
        if entity is None or link.credit <= 0 or not link.state & Endpoint.LOCAL_ACTIVE:
            return False
        if entity.requires_session and state.session_id is None:
            return False
        stored = entity.acquire(state, time.time(), session_id=state.session_id, peek_lock=state.peek_lock)
        if stored is None:
            return False
        token = stored.lock_token
        tag = token.bytes_le if token is not None else uuid.uuid4().bytes_le
        delivery = link.delivery(tag)  # type: ignore[arg-type]  # bytes tags work
        delivery.sb = (entity, token)
        link.send(stored.encode())
        link.advance()
        if not state.peek_lock:
            delivery.settle()
        return True

    def _on_outcome(self, delivery: Delivery) -> None:
        """The client settled (or released) a message: apply it and echo the outcome settled."""
        info = getattr(delivery, "sb", None)
        if info is None:
            return
        entity, token = info
        remote = delivery.remote
        outcome = delivery.remote_state
        now = time.time()
        try:
            if token is None:
                pass
            elif outcome == Delivery.ACCEPTED:
                entity.settle(token, Settle.COMPLETE, now)
            elif outcome == Delivery.RELEASED:
                entity.settle(token, Settle.RELEASE, now)
            elif outcome == Delivery.MODIFIED:
                if remote.undeliverable:
                    entity.settle(token, Settle.DEFER, now)
                elif remote.failed:
                    entity.settle(token, Settle.ABANDON, now)
                else:
                    entity.settle(token, Settle.RELEASE, now)
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            elif outcome == Delivery.REJECTED:
                reason, description = _dead_letter_details(remote.condition)
                entity.settle(token, Settle.DEAD_LETTER, now, reason=reason, description=description)
            else:
                return  # RECEIVED or unknown: not terminal, wait for more
            delivery.update(outcome)
        except EntityError as exc:
            _reject(delivery, exc.condition, exc.description)
        delivery.settle()
        self.pump(entity)
        if entity.dead_letter is not None:
            self.pump(entity.dead_letter)

    # ------------------------------------------------------------------ CBS / management
    def _reply(self, request_link: Link, address: str, response: Message) -> None:
        reply = None
        for state in self.links.values():
            same_connection = state.link.connection == request_link.connection
            if state.kind == "reply" and state.address == address and same_connection:
                reply = state.link
                if state.link.session == request_link.session:
                    break
        if reply is None:
            log.warning("no reply link for %s", address)
            return
        delivery = reply.delivery(next(self._tags).to_bytes(8, "big"))  # type: ignore[arg-type]
        reply.send(response.encode())
        reply.advance()
        delivery.settle()

    def _on_cbs(self, link: Link, payload: bytes) -> None:
        request = Message()
        request.decode(payload)
        # Tokens are not validated: any key works, as with the emulator's fixed SAS key. The
        # audience is: the service resolves the queue or topic a token names when it is put, and
        # answers 404 for one that does not exist ("Put token failed. status-code: 404, ... could
        # not be found"); a missing subscription of an existing topic only fails at attach.
        properties: dict[str, Any] = dict(request.properties or {})
        name = str(properties.get("name", ""))
        status, description = 202, "Accepted"
        if not self.ns.has_top_level(name):
            status, description = 404, f"The messaging entity '{name}' could not be found. {NOT_FOUND_HINT}"
        response = Message(
            correlation_id=request.id,
            properties={"status-code": int32(status), "status-description": description},
        )
        self._reply(link, "$cbs", response)

    def _on_management(self, state: _LinkState, payload: bytes) -> None:
        request = Message()
        request.decode(payload)
        props: dict[str, Any] = dict(request.properties or {})
        operation = str(props.get("operation", ""))
        connection = state.link.connection
        associated = props.get("associated-link-name")

        def session_owner(entity: MessageEntity, session_id: str) -> object | None:
            for s in self.links.values():
                if (
                    s.kind == "receive"
                    and s.entity is entity
                    and s.session_id == session_id
                    and s.link.connection == connection
                ):
                    return s
            return None

        def receive_owner() -> object:
            for s in self.links.values():
                if s.kind == "receive" and s.link.connection == connection and s.link.name == associated:
                    return s
            return state

        def holds(owner: object | None) -> bool:
            # A lock belongs to the receive link it was delivered on (or, for deferred messages
            # received by sequence number, the link that asked): still attached, same connection.
            if not isinstance(owner, _LinkState):
                return False
            registered = self.links.get(getattr(owner.link, "sb_key", -1)) is owner
            return registered and owner.link.connection == connection

        context = mgmt.MgmtContext(
            namespace=self.ns,
            address=state.address,
            now=time.time(),
            session_owner=session_owner,
            receive_owner=receive_owner,
            holds=holds,
        )
        try:
            self._check_available(state.address)
            result = mgmt.handle(operation, request.body, context)
        except EntityError as exc:
            result = mgmt.MgmtResponse(
                404 if exc.condition == "amqp:not-found" else 400, exc.description, condition=exc.condition
            )
        properties: dict[str, Any] = {
            "statusCode": int32(result.status),
            "statusDescription": result.description,
        }
        if result.condition:
            properties["errorCondition"] = symbol(result.condition)
        response = Message(correlation_id=request.id, properties=properties, body=result.body)
        self._reply(state.link, state.address, response)
        for entity in self.ns.all_entities():
            if entity.has_ready() or (entity.dead_letter is not None and entity.dead_letter.has_ready()):
                self.pump(entity)
                if entity.dead_letter is not None:
                    self.pump(entity.dead_letter)

    def _check_available(self, address: str) -> None:
        ingress = self._ingress_of_address(address)
        if ingress is not None and not ingress.available:
            condition = ingress.unavailable_condition
            raise EntityError(condition, _unavailable(ingress.name, condition))

    # ------------------------------------------------------------------ timers and control
    def tick(self) -> None:
        now = time.time()
        result = self.ns.tick(now)
        for _entity, owner, session_id in result.lost_sessions:
            if isinstance(owner, _LinkState):
                self._refuse(
                    owner.link,
                    "com.microsoft:session-lock-lost",
                    f"The session lock has expired on the session '{session_id}'.",
                )
        for state in [s for s in self.links.values() if s.wants_session]:
            self._try_open_session(state, now)
        for entity in result.available:
            self.pump(entity)

    def _ingress_of_address(self, address: str) -> Ingress | None:
        try:
            return self.ns.ingress_for(address)
        except EntityError:
            pass
        try:
            return self.ns.ingress_of(self.ns.entity_for(address))
        except EntityError:
            return None

    def set_available(self, name: str, available: bool, condition: str) -> None:
        ingress = self.ns.ingress_for(name)
        ingress.available = available
        ingress.unavailable_condition = condition
        if available:
            return
        for state in list(self.links.values()):
            if state.address == "$cbs":
                continue
            if state.kind == "send" and condition == "com.microsoft:server-busy":
                continue  # a busy entity refuses each transfer; the sender link itself stays
            if self._ingress_of_address(state.address) is ingress:
                self._refuse(state.link, condition, _unavailable(ingress.name, condition))

    def shutdown(self) -> None:
        """Close everything the reactor owns so that ``run()`` returns and no socket is left."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._later:
            task.cancel()
        self._later.clear()
        for back in self.pending_restarts:
            if not back.done():
                back.set_exception(RuntimeError("the broker was stopped before it came back"))
        self.pending_restarts.clear()
        if self.acceptor is not None:
            self.acceptor.close()
        for conn in list(self.connections):
            transport = conn.transport
            conn.close()
            if transport is not None:
                transport.close_head()
                transport.close_tail()
                selectable = getattr(transport, "_selectable", None)
                if selectable is not None:
                    selectable.terminate()
                    selectable.update()
        self.connections.clear()
        self.links.clear()


def _req[T](value: T | None) -> T:
    """Event attributes are Optional in proton's stubs; for these events they are always set."""
    assert value is not None
    return value


def _unavailable(name: str, condition: str) -> str:
    text = OUTAGE_TEXT.get(condition, "Messaging entity '{name}' is currently unavailable.")
    return text.format(name=name)


def _reject(delivery: Delivery, condition: str, description: str) -> None:
    # Description AND info are always set: the SDK indexes error[1] and error[2] unguarded.
    delivery.local.condition = Condition(condition, description, {symbol("broker"): "standins.servicebus"})
    delivery.update(Delivery.REJECTED)


def _read_filter(terminus: Terminus) -> dict[str, Any]:
    data = terminus.filter
    data.rewind()
    if not data.next():
        return {}
    value: Any = data.get_object()
    if not isinstance(value, dict):
        return {}
    result: dict[str, Any] = {}
    for key, item in value.items():
        result[str(key)] = getattr(item, "value", item)
    return result


def _dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    raw: Any = condition.info
    info = {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription", condition.description)
    return (None if reason is None else str(reason), None if description is None else str(description))


@dataclass
class _Running:
    container: Container
    handler: _BrokerHandler
    inbox: _Inbox
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)


class LocalBroker(StartStop):
    """A local AMQP 1.0 broker that the unmodified azure-servicebus SDK can use.

    ``config`` is a path to an emulator-shaped Config.json or an equivalent dict.
    ``lock_check_interval`` is how often (seconds) lock expiry, session lock expiry, TTL and
    scheduled messages are processed; tests make it small so lock expiry is prompt.
    ``lock_durations`` overrides ``LockDuration`` (seconds) of named queues or
    ``topic/Subscriptions/sub`` entities, so a test can use the checked-in Config.json with
    short locks.
    """

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | NamespaceConfig = DEFAULT_CONFIG,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lock_check_interval: float = 0.1,
        lock_durations: Mapping[str, float] | None = None,
    ) -> None:
        self.config = config if isinstance(config, NamespaceConfig) else load_config(config)
        if lock_durations:
            self.config = with_lock_durations(self.config, lock_durations)
        self.host = host
        self._requested_port = port
        self.lock_check_interval = lock_check_interval
        self._running: _Running | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalBroker:
        if self._running is not None:
            raise RuntimeError("broker already started")
        handler = _BrokerHandler(
            Namespace(self.config), self.host, self._requested_port, self.lock_check_interval
        )
        container = Container(handler)
        handler.container = container
        inbox = _Inbox()
        container.selectable(handler=inbox)  # type: ignore[arg-type]
        acceptor = container.acceptor(self.host, str(self._requested_port))
        handler.acceptor = acceptor
        # proton has no public accessor for the bound port; port=0 needs it.
        listener: Any = acceptor._selectable._delegate
        self._port = int(listener.getsockname()[1])
        handler.port = self._port  # restart() listens again on this port, not on "any free one"
        handler._timer = container.schedule(self.lock_check_interval, handler)
        running = _Running(container, handler, inbox, threading.Thread())

        def run() -> None:
            try:
                container.run()
            except BaseException as exc:
                running.errors.append(exc)
                log.exception("local Service Bus broker crashed")

        running.thread = threading.Thread(target=run, name=f"servicebus-broker-{self._port}", daemon=True)
        self._running = running
        running.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: close connections and the listener, join the reactor thread."""
        running = self._running
        if running is None:
            return
        self._running = None

        def shutdown() -> None:
            running.handler.shutdown()
            running.container.stop()

        if running.thread.is_alive():
            running.inbox.submit(shutdown)
            running.thread.join(timeout)
        running.inbox.close()
        if running.thread.is_alive():
            raise RuntimeError("local Service Bus broker did not stop in time")
        if running.errors:
            raise RuntimeError("local Service Bus broker failed") from running.errors[0]

    # ------------------------------------------------------------------ addressing
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("broker not started")
        return self._port

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )

    @property
    def namespace(self) -> str:
        return self.config.name

    # ------------------------------------------------------------------ control
    def call(self, fn: Callable[[Namespace], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(namespace)`` on the reactor thread and return its result (for diagnostics)."""
        running = self._running
        if running is None:
            raise RuntimeError("broker not started")
        future: Future[Any] = Future()

        def job() -> None:
            try:
                future.set_result(fn(running.handler.ns))
            except BaseException as exc:
                future.set_exception(exc)

        running.inbox.submit(job)
        return future.result(timeout)

    def set_entity_available(
        self, name: str, available: bool, *, condition: str = "com.microsoft:entity-disabled"
    ) -> None:
        """Make a queue or topic (and its subscriptions) unreachable, or reachable again.

        While unavailable, receive and ``$management`` attaches are refused with ``condition``,
        sender links attach but each transfer is rejected with it, and existing links are
        detached with it (sender links too, except for ``com.microsoft:server-busy``). The
        default, ``com.microsoft:entity-disabled``, is what the service sends for a disabled
        entity; the SDK raises ``MessagingEntityDisabledError`` after its retries (it is
        retryable). ``amqp:link:detach-forced`` gives ``ServiceBusConnectionError`` instead.
        """
        running = self._require_running()
        self.call(lambda _ns: running.handler.set_available(name, available, condition))

    def entity_outage(
        self, name: str, seconds: float | None = None, *, condition: str = "com.microsoft:server-busy"
    ) -> EntityOutage:
        """Make one queue or topic (and its subscriptions) fail for ``seconds`` while the rest
        of the namespace keeps working; ``seconds=None`` lasts until ``end()`` / the ``with``
        block ends. Returns at once; the outage has begun when it returns.

        The default condition, ``com.microsoft:server-busy``, is what the service answers when
        the node serving an entity cannot take requests ("the caller receives a server busy
        exception and retries after 10 seconds", docs "Asynchronous messaging patterns and high
        availability"): each send is rejected with it (the sender link stays), receive and
        ``$management`` links are detached with it and new ones refused. The SDK raises
        ``ServiceBusServerBusyError`` after its retries, so an outage longer than the retry
        budget reaches the caller. ``amqp:internal-error`` ("The service was unable to process
        the request") detaches sender links too; the SDK retries it as well and then raises
        ``ServiceBusError``.
        """
        running = self._require_running()
        outage = EntityOutage(self, name, condition)
        self.call(lambda _ns: running.handler.set_available(name, False, condition))
        if seconds is not None:
            self.call(lambda _ns: running.handler.later(seconds, outage._end_on_reactor))
        return outage

    def restart(self, down_seconds: float = 1.0) -> Future[None]:
        """Simulate a broker restart mid-stream: cut every connection at once (no AMQP close, as
        when the node serving the namespace goes away), refuse connections for
        ``down_seconds``, then listen again on the SAME port. Entity state survives, as Service
        Bus is durable: messages, dead-letter queues, scheduled messages, sequence numbers,
        session state and duplicate-detection history.

        Locks: a message's lock belongs to the receive link that delivered it, and only that
        receiver may settle or renew it. When the link's connection is cut the lock is not
        released early: the message stays locked until its lock expires, then comes back with
        its delivery count + 1 (or is dead-lettered past MaxDeliveryCount), as after a consumer
        crash; settling or renewing it through any new link is answered ``message-lock-lost``.
        Session locks held by cut links are released and their messages come back at once
        (delivery count + 1), as when a session receiver goes away.

        Returns once the connections are cut; the future completes when the broker listens
        again (``broker.restart(2).result()`` in sync code,
        ``await asyncio.wrap_future(broker.restart(2))`` in async code).
        """
        running = self._require_running()
        if down_seconds < 0:
            raise ValueError("down_seconds must be >= 0")
        back: Future[None] = Future()

        def up() -> None:
            running.handler.pending_restarts.remove(back)
            try:
                running.handler.come_up()
            except BaseException as exc:
                back.set_exception(exc)
            else:
                back.set_result(None)

        cut: Future[None] = Future()

        def down(_ns: Namespace) -> None:
            if running.handler.down:
                raise RuntimeError("the broker is already restarting")
            running.handler.go_down()
            running.handler.pending_restarts.append(back)
            # proton closes the listening socket on its next loop pass, not within this call
            running.handler.later(0.0, lambda: cut.set_result(None))
            running.handler.later(down_seconds, up)

        self.call(down)
        cut.result(10.0)
        return back

    def _require_running(self) -> _Running:
        running = self._running
        if running is None:
            raise RuntimeError("broker not started")
        return running

    def message_counts(self, entity: str) -> dict[str, int]:
        """Active (including locked) / deferred / dead-lettered / scheduled counts of a queue
        or ``topic/Subscriptions/sub`` (scheduled messages of a topic count for each
        subscription, as they are not routed yet: 0 here)."""

        def count(ns: Namespace) -> dict[str, int]:
            target = ns.entity_for(entity)
            assert target.dead_letter is not None
            queue = ns.queue_ingress(target)
            return {
                "active": sum(1 for m in target.messages.values() if not m.deferred),
                "deferred": sum(1 for m in target.messages.values() if m.deferred),
                "dead_letter": len(target.dead_letter.messages),
                "scheduled": len(queue.scheduled(0)) if queue is not None else 0,
            }

        return dict(self.call(count))


class EntityOutage:
    """An entity outage begun by :meth:`LocalBroker.entity_outage`; ends by itself after its
    ``seconds``, on ``end()``, or when its ``with`` block ends (whichever comes first)."""

    def __init__(self, broker: LocalBroker, name: str, condition: str) -> None:
        self._broker = broker
        self.name = name
        self.condition = condition
        self._ended = threading.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def _end_on_reactor(self) -> None:
        running = self._broker._running
        if running is not None and not self._ended.is_set():
            self._ended.set()
            running.handler.set_available(self.name, True, self.condition)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the outage has ended (for a timed one); True if it has."""
        return self._ended.wait(timeout)

    def end(self) -> None:
        if self._broker._running is not None and not self._ended.is_set():
            self._broker.call(lambda _ns: self._end_on_reactor())

    def __enter__(self) -> EntityOutage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()
