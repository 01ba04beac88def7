"""`python -m localrun.deadletters`: list, inspect and resubmit the trigger queue's dead letters.

    python -m localrun.deadletters list                          # the running `serve` (.localrun/serve.json)
    python -m localrun.deadletters --namespace NAME.servicebus.windows.net list --reason ServerBusy
    python -m localrun.deadletters inspect ID|SEQ [--show-body]  # body redacted unless --show-body
    python -m localrun.deadletters resubmit --job-id nightly-render --dry-run
    python -m localrun.deadletters resubmit ID --edit            # edit the body in $EDITOR first

Where: --connection-string, --namespace (Entra: DefaultAzureCredential) or, by default,
the state file a running `python -m localrun serve` writes. Queue: --queue, else
$JOB_UPDATES_QUEUE, else job-updates.

`list` and `inspect` only peek (nothing is locked, consumed or counted as a delivery).
`inspect` also peeks the outcome events already published for the message (by
correlation id = the original message id) on a subscription (default all-outcomes).
`resubmit` sends each selected entry to the queue as a new message (a new message
id, lineage in `jobUpdate.resubmitted*` application properties, the dead-letter and
copy properties stripped), validated first as `python -m handlers check` does, and
completes the dead-letter entry only after the send succeeded. docs/runbook.md has
the procedure and what a crash in between means.

Exit 0 when all went well, 1 when something was not found, refused or not sent,
2 for a bad option or no state file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError
from pydantic import TypeAdapter, ValidationError

from handlers.__main__ import check_one, policy_from_args
from handlers.errors import UsageError
from handlers.lineage import Lineage, lineage_of
from handlers.plan import Policy
from handlers.redaction import public_property, redact_text, shape
from localrun.common import QUEUE, SUBSCRIPTION, TOPIC

PROG = "python -m localrun.deadletters"
PAGE = 100
# What a resubmission says about where it came from (the `jobUpdate.` namespace is the
# function's: every other `jobUpdate.*` property is stripped from a resubmission).
RESUBMITTED_FROM = "jobUpdate.resubmittedFrom"
RESUBMITTED_SEQUENCE_NUMBER = "jobUpdate.resubmittedSequenceNumber"
RESUBMITTED_ORIGINAL_MESSAGE_ID = "jobUpdate.resubmittedOriginalMessageId"
RESUBMITTED_BODY_EDITED = "jobUpdate.resubmittedBodyEdited"
RESERVED_PREFIX = "jobUpdate."
# Service Bus keeps the dead-letter reason and description as application properties.
BROKER_DEAD_LETTER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})
_NAMESPACE = uuid.UUID("6a0c5f3e-2d8b-4c1f-9e7a-5b3d1f0a8c24")
# Top-level message fields shown as they are (strings through redact_text); `update`
# goes through the events' allow-list (redaction.public_property), the rest as shape.
_PLAIN_FIELDS = frozenset({"schemaVersion", "jobId", "jobUrl", "endpoint", "mode"})
_SCALAR_OBJECTS = frozenset({"conditions", "options"})


# --- Entries: a dead-lettered message, decoded -----------------------------------------


@dataclass(frozen=True)
class Entry:
    """One dead-letter queue entry, read by peek or by receive."""

    sequence_number: int
    message_id: str
    body: bytes
    enqueued_at: datetime | None
    delivery_count: int | None
    reason: str | None  # the broker's DeadLetterReason
    description: str | None  # the broker's DeadLetterErrorDescription
    properties: Mapping[str, Any] = field(default_factory=dict)  # keys and text values as str
    content_type: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    dead_letter_source: str | None = None

    @property
    def lineage(self) -> Lineage:
        """Believed only when the id is the function's own derivation (handlers/lineage.py)."""
        return lineage_of(self.message_id, self.enqueued_at, self.properties)

    @property
    def kind(self) -> str:
        lineage = self.lineage
        if lineage.dead_letter is not None:
            return "dead-letter copy"
        return "scheduled copy" if lineage.copy else "message"

    @property
    def original_message_id(self) -> str:
        return self.lineage.original_id

    @property
    def first_enqueued_at(self) -> datetime | None:
        """When the request was first enqueued: the original's time for a copy."""
        return self.lineage.original_enqueued_at or self.enqueued_at

    @property
    def job_update_reason(self) -> tuple[str, str] | None:
        return self.lineage.dead_letter

    @property
    def job_id(self) -> str | None:
        return job_id_of(self.body)

    def age(self, now: datetime) -> timedelta | None:
        first = self.first_enqueued_at
        return None if first is None else now - first


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def entry_of(message: ServiceBusReceivedMessage) -> Entry:
    raw = message.application_properties or {}
    properties = {str(_text(k)): _text(v) for k, v in raw.items()}
    enqueued = message.enqueued_time_utc
    if enqueued is not None and enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    return Entry(
        sequence_number=int(message.sequence_number or 0),
        message_id=str(message.message_id or ""),
        body=b"".join(message.body),
        enqueued_at=enqueued,
        delivery_count=message.delivery_count,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        properties=properties,
        content_type=message.content_type,
        session_id=message.session_id,
        correlation_id=message.correlation_id,
        subject=message.subject,
        dead_letter_source=message.dead_letter_source,
    )


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def job_id_of(body: bytes) -> str | None:
    """The job a body names (`jobId`, or the last segment of `jobUrl`), if it parses."""
    doc = _parsed(body)
    if not isinstance(doc, dict):
        return None
    job = doc.get("jobId")
    if isinstance(job, str):
        return job[:64]
    url = doc.get("jobUrl")
    if isinstance(url, str):
        with contextlib.suppress(ValueError):
            path = urlsplit(url).path.rstrip("/")
            if "/jobs/" in path:
                return unquote(path.rsplit("/", 1)[-1])[:64]
    return None


# --- Selecting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which entries a command acts on. Ids match the message id, the sequence number
    or the original message id (the `sourcemessageid` of the given-up event)."""

    ids: tuple[str, ...] = ()
    job_id: str | None = None
    reason: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    @property
    def everything(self) -> bool:
        return not (self.ids or self.job_id or self.reason or self.older_than or self.newer_than)

    def matches(self, entry: Entry, now: datetime) -> bool:
        if self.ids and not any(
            i in (entry.message_id, str(entry.sequence_number), entry.original_message_id) for i in self.ids
        ):
            return False
        if self.job_id is not None and entry.job_id != self.job_id:
            return False
        if self.reason is not None:
            ours = entry.job_update_reason
            reasons = {r.lower() for r in (entry.reason, ours[0] if ours else None) if r}
            if self.reason.lower() not in reasons:
                return False
        age = entry.age(now)
        if self.older_than is not None and (age is None or age < self.older_than):
            return False
        return not (self.newer_than is not None and (age is None or age > self.newer_than))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, or ISO 8601 (`PT1H30M`)."""
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    if text.strip().upper().startswith("P"):
        try:
            return TypeAdapter(timedelta).validate_python(text.strip())
        except ValidationError:
            pass
    raise UsageError(f"{text!r} is not a duration (e.g. 90s, 15m, 2h, 1d or PT1H)")


# --- Showing ----------------------------------------------------------------------------


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _age_text(age: timedelta | None) -> str:
    """`12s`, `5m03s`, `2h05m`, `3d04h`."""
    if age is None:
        return "?"
    seconds = int(max(age.total_seconds(), 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit}{(seconds % size) // sub_size:02d}{sub}"
    return f"{seconds}s"


def row(entry: Entry, now: datetime) -> dict[str, Any]:
    """What `list --json` prints for one entry (no body)."""
    ours = entry.job_update_reason
    age = entry.age(now)
    return {
        "sequenceNumber": entry.sequence_number,
        "messageId": entry.message_id,
        "originalMessageId": entry.original_message_id,
        "kind": entry.kind,
        "jobId": entry.job_id,
        "deadLetterReason": entry.reason,
        "deadLetterDescription": redact_text(entry.description) if entry.description else None,
        "jobUpdateDeadLetterReason": ours[0] if ours else None,
        "jobUpdateDeadLetterDescription": redact_text(ours[1]) if ours else None,
        "deliveryCount": entry.delivery_count,
        "enqueuedTime": _iso(entry.enqueued_at),
        "originalEnqueuedTime": _iso(entry.lineage.original_enqueued_at),
        "ageSeconds": None if age is None else round(age.total_seconds(), 1),
    }


LIST_COLUMNS = (
    ("SEQ", "sequenceNumber"),
    ("MESSAGE ID", "messageId"),
    ("ORIGINAL ID", "originalMessageId"),
    ("JOB", "jobId"),
    ("REASON", "deadLetterReason"),
    ("JOBUPDATE REASON", "jobUpdateDeadLetterReason"),
    ("DELIVERIES", "deliveryCount"),
    ("ENQUEUED", "enqueuedTime"),
    ("AGE", "age"),
)


def list_lines(entries: Sequence[Entry], now: datetime) -> list[str]:
    rows = []
    for entry in entries:
        r = row(entry, now)
        r["age"] = _age_text(entry.age(now))
        # The same original id as the message id says nothing: show a dash.
        if r["originalMessageId"] == r["messageId"]:
            r["originalMessageId"] = "-"
        rows.append({k: "-" if v is None else str(v) for k, v in r.items()})
    widths = [max([len(title), *(len(r[key]) for r in rows)]) for title, key in LIST_COLUMNS]
    lines = ["  ".join(title.ljust(w) for (title, _), w in zip(LIST_COLUMNS, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append(
            "  ".join(r[key].ljust(w) for (_, key), w in zip(LIST_COLUMNS, widths, strict=True)).rstrip()
        )
    return lines


def redacted_body(body: bytes) -> Any:
    """The body as the events would show it: `update` through the events' allow-list
    (redaction.public_property: pool specifications and metadata values as structure),
    the envelope fields as they are, anything else as structure."""
    doc = _parsed(body)
    if doc is None:
        return f"<{len(body)} bytes, not JSON>"
    if not isinstance(doc, dict):
        return shape(doc)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "update" and isinstance(value, dict):
            out[key] = {name: public_property(name, v) for name, v in value.items()}
        elif key in _PLAIN_FIELDS:
            out[key] = redact_text(value) if isinstance(value, str) else shape(value)
        elif key in _SCALAR_OBJECTS and isinstance(value, dict):
            out[key] = {
                k: redact_text(v)
                if isinstance(v, str)
                else v
                if isinstance(v, (bool, int, float))
                else shape(v)
                for k, v in value.items()
            }
        else:
            out[key] = shape(value)
    return out


def shown_body(body: bytes, *, show: bool) -> Any:
    if not show:
        return redacted_body(body)
    doc = _parsed(body)
    return doc if doc is not None else body.decode("utf-8", errors="replace")


def _public_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: redact_text(v) if isinstance(v, str) else v if isinstance(v, (bool, int, float)) else shape(str(v))
        for k, v in properties.items()
    }


def event_summary(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    return {
        "id": event.get("id"),
        "time": event.get("time"),
        "outcome": data.get("outcome"),
        "jobId": data.get("jobId"),
        "httpStatus": data.get("httpStatus"),
        "errorCode": error.get("code") if error else None,
        "attempts": data.get("attempts"),
        "scheduledCopies": data.get("scheduledCopies"),
        "sourcemessageid": event.get("sourcemessageid"),
    }


def inspection(
    entry: Entry, events: Sequence[dict[str, Any]], now: datetime, *, show_body: bool
) -> dict[str, Any]:
    ours = entry.job_update_reason
    age = entry.age(now)
    return {
        "sequenceNumber": entry.sequence_number,
        "messageId": entry.message_id,
        "kind": entry.kind,
        "originalMessageId": entry.original_message_id,
        "jobId": entry.job_id,
        "deadLetter": {
            "reason": entry.reason,
            "description": redact_text(entry.description) if entry.description else None,
            "source": entry.dead_letter_source,
            "jobUpdateReason": ours[0] if ours else None,
            "jobUpdateDescription": redact_text(ours[1]) if ours else None,
        },
        "deliveryCount": entry.delivery_count,
        "enqueuedTime": _iso(entry.enqueued_at),
        "originalEnqueuedTime": _iso(entry.lineage.original_enqueued_at),
        "ageSeconds": None if age is None else round(age.total_seconds(), 1),
        "scheduledCopies": entry.lineage.copy,
        "batchAttemptsBefore": entry.lineage.attempts,
        "contentType": entry.content_type,
        "sessionId": entry.session_id,
        "correlationId": entry.correlation_id,
        "subject": entry.subject,
        "applicationProperties": _public_properties(entry.properties),
        "bodyRedacted": not show_body,
        "body": shown_body(entry.body, show=show_body),
        "events": list(events),
    }


def inspection_text(doc: dict[str, Any]) -> list[str]:
    dl = doc["deadLetter"]
    lines = [
        f"dead letter #{doc['sequenceNumber']}  message {doc['messageId']}  ({doc['kind']})",
        f"  original message id   {doc['originalMessageId']}",
        f"  job                   {doc['jobId']}",
        f"  reason (broker)       {dl['reason']}: {dl['description']}",
        f"  reason (jobUpdate)    {dl['jobUpdateReason'] or '-'}: {dl['jobUpdateDescription'] or '-'}",
        f"  deliveries            {doc['deliveryCount']}",
        f"  enqueued              {doc['enqueuedTime']}",
        f"  first enqueued        {doc['originalEnqueuedTime'] or '-'}",
        f"  age                   {doc['ageSeconds']} s   scheduled copies {doc['scheduledCopies']}",
        f"  content type          {doc['contentType']}   session {doc['sessionId'] or '-'}"
        f"   correlation {doc['correlationId'] or '-'}",
        f"  application props     {json.dumps(doc['applicationProperties'])}",
        "  body (redacted; --show-body for the decoded body):"
        if doc["bodyRedacted"]
        else "  body (decoded):",
    ]
    lines.extend("    " + text for text in json.dumps(doc["body"], indent=2).splitlines())
    if doc["events"]:
        lines.append(f"  outcome events ({len(doc['events'])}):")
        for event in doc["events"]:
            lines.append(
                f"    {event['time']}  {event['outcome']:<20} http={event['httpStatus']} "
                f"error={event['errorCode']} attempts={event['attempts']} "
                f"scheduledCopies={event['scheduledCopies']} id={event['id']}"
            )
    else:
        lines.append("  outcome events: none found (consumed, expired, or never published)")
    return lines


# --- Resubmitting -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A resubmission: everything the new message carries."""

    message_id: str
    body: bytes
    content_type: str | None
    session_id: str | None
    correlation_id: str | None
    subject: str | None
    properties: dict[str, Any]

    def message(self) -> ServiceBusMessage:
        return ServiceBusMessage(
            self.body,
            message_id=self.message_id,
            content_type=self.content_type,
            session_id=self.session_id,
            correlation_id=self.correlation_id,
            subject=self.subject,
            application_properties=self.properties,  # type: ignore[arg-type]
        )


def resubmit_message_id(entry: Entry, body: bytes) -> str:
    """New, and the same for the same entry and body: resubmitting again after a crash
    between the send and the completion sends a duplicate the queue's duplicate
    detection drops (within its window)."""
    digest = hashlib.sha256(body).hexdigest()
    return str(uuid.uuid5(_NAMESPACE, f"{entry.message_id}\x00{entry.sequence_number}\x00{digest}"))


def resubmission(entry: Entry, body: bytes | None = None) -> Outgoing:
    """An ordinary new message: the producer's envelope and properties, the function's
    copy and dead-letter properties and the broker's dead-letter properties stripped,
    and lineage back to the entry."""
    sent = entry.body if body is None else body
    properties: dict[str, Any] = {
        k: v
        for k, v in entry.properties.items()
        if not k.startswith(RESERVED_PREFIX) and k not in BROKER_DEAD_LETTER_PROPERTIES
    }
    properties[RESUBMITTED_FROM] = entry.message_id
    properties[RESUBMITTED_SEQUENCE_NUMBER] = entry.sequence_number
    properties[RESUBMITTED_ORIGINAL_MESSAGE_ID] = entry.original_message_id
    if sent != entry.body:
        properties[RESUBMITTED_BODY_EDITED] = "true"
    return Outgoing(
        message_id=resubmit_message_id(entry, sent),
        body=sent,
        content_type=entry.content_type,
        session_id=entry.session_id,
        correlation_id=entry.correlation_id,
        subject=entry.subject,
        properties=properties,
    )


@dataclass(frozen=True)
class Prepared:
    entry: Entry
    outgoing: Outgoing
    check: dict[str, Any] | None  # check_one's answer; None: not checked (--force without an allow-list)

    @property
    def valid(self) -> bool | None:
        return None if self.check is None else bool(self.check["valid"])


def prepare(entry: Entry, body: bytes | None, policy: Policy | None, now: datetime) -> Prepared:
    outgoing = resubmission(entry, body)
    check = check_one(outgoing.body, policy, now) if policy is not None else None
    return Prepared(entry, outgoing, check)


def edit_in_editor(body: bytes, editor: str) -> bytes:
    """The body after $EDITOR: in an owner-only temporary file, removed afterwards."""
    handle, name = tempfile.mkstemp(prefix="deadletter-", suffix=".json")
    try:
        with os.fdopen(handle, "wb") as f:
            doc = _parsed(body)
            f.write(json.dumps(doc, indent=2).encode() + b"\n" if doc is not None else body)
        try:
            subprocess.run([*shlex.split(editor), name], check=True)  # noqa: S603 (the user's own $EDITOR)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise UsageError(f"editor {editor!r} failed: {exc}") from None
        edited = Path(name).read_bytes()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    # Unchanged (pretty-printed the same document): send the original bytes.
    if doc is not None and _parsed(edited) == doc:
        return body
    return edited


@dataclass
class Report:
    resubmitted: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def resubmit(
    client: ServiceBusClient, queue: str, prepared: Sequence[Prepared], *, receive_wait: float = 5.0
) -> Report:
    """Receive the dead-letter queue with locks; for each selected entry send its
    resubmission, then complete it (see `resubmit_with`)."""
    async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        return await resubmit_with(client, receiver, queue, prepared, receive_wait=receive_wait)


async def resubmit_with(
    client: ServiceBusClient,
    receiver: ServiceBusReceiver,
    queue: str,
    prepared: Sequence[Prepared],
    *,
    receive_wait: float = 5.0,
) -> Report:
    """`receiver` is on the dead-letter queue (peek-lock). For each selected entry:
    send its resubmission, then complete the entry. Entries not selected are held
    until the end and abandoned (their delivery count goes up by one; a dead-letter
    queue never dead-letters further). A send that fails abandons its entry and stops."""
    report = Report()
    pending = {p.entry.sequence_number: p for p in prepared}
    skipped: list[ServiceBusReceivedMessage] = []
    async with client.get_queue_sender(queue) as sender:
        try:
            stop = False
            while pending and not stop:
                batch = await receiver.receive_messages(
                    max_message_count=min(PAGE, max(len(pending), 10)), max_wait_time=receive_wait
                )
                if not batch:
                    break
                for message in batch:
                    sequence = int(message.sequence_number or 0)
                    item = pending.get(sequence)
                    if stop or item is None or str(message.message_id) != item.entry.message_id:
                        skipped.append(message)
                        continue
                    del pending[sequence]
                    stop = not await _send_then_complete(receiver, sender, message, item, report)
        finally:
            for message in skipped:
                with contextlib.suppress(ServiceBusError):
                    await receiver.abandon_message(message)
    for item in pending.values():
        report.problems.append(
            {
                "sequenceNumber": item.entry.sequence_number,
                "messageId": item.entry.message_id,
                "problem": "not received: gone from the dead-letter queue, or locked by someone else",
            }
        )
    return report


async def _send_then_complete(
    receiver: ServiceBusReceiver,
    sender: Any,
    message: ServiceBusReceivedMessage,
    item: Prepared,
    report: Report,
) -> bool:
    who = {"sequenceNumber": item.entry.sequence_number, "messageId": item.entry.message_id}
    try:
        await sender.send_messages(item.outgoing.message())
    except (ServiceBusError, ValueError) as exc:
        with contextlib.suppress(ServiceBusError):
            await receiver.abandon_message(message)
        report.problems.append({**who, "problem": f"send failed, entry left in place: {_error(exc)}"})
        return False
    try:
        await receiver.complete_message(message)
    except ServiceBusError as exc:
        report.problems.append(
            {
                **who,
                "newMessageId": item.outgoing.message_id,
                "problem": "sent, but the entry could not be completed (it stays in the dead-letter "
                f"queue; resubmitting it again sends the same message id): {_error(exc)}",
            }
        )
        return True
    report.resubmitted.append({**who, "newMessageId": item.outgoing.message_id, "jobId": item.entry.job_id})
    return True


def _error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]


# --- Reading the broker -------------------------------------------------------------------


async def _peek_all(receiver: ServiceBusReceiver, limit: int) -> list[ServiceBusReceivedMessage]:
    out: list[ServiceBusReceivedMessage] = []
    start = 1  # sequence numbers start at 1; the SDK reads 0 as "after the last one peeked"
    while len(out) < limit:
        page = list(
            await receiver.peek_messages(max_message_count=min(PAGE, limit - len(out)), sequence_number=start)
        )
        out.extend(page)
        if not page:
            return out
        start = int(page[-1].sequence_number or 0) + 1
    return out


async def dead_letters(client: ServiceBusClient, queue: str, limit: int) -> list[Entry]:
    async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        return await peek_entries(receiver, limit)


async def peek_entries(receiver: ServiceBusReceiver, limit: int) -> list[Entry]:
    peeked = await _peek_all(receiver, limit)
    return sorted((entry_of(m) for m in peeked), key=lambda e: e.sequence_number)


async def events_for(
    client: ServiceBusClient, topic: str, subscription: str, message_ids: Iterable[str], limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Outcome events on the subscription whose correlation id is one of `message_ids`
    (peeked: nothing is consumed)."""
    wanted = set(message_ids)
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in wanted}
    async with client.get_subscription_receiver(topic, subscription) as receiver:
        for message in await _peek_all(receiver, limit):
            correlation = message.correlation_id
            if correlation not in wanted:
                continue
            event = _parsed(b"".join(message.body))
            if isinstance(event, dict):
                found[correlation].append(event_summary(event))
    return found


# --- Command line -------------------------------------------------------------------------


@dataclass
class Target:
    connection_string: str | None
    namespace: str | None
    queue: str
    topic: str
    settings: dict[str, str]  # the serve state's app settings (allow-list), else empty

    def client(self) -> tuple[ServiceBusClient, Any]:
        if self.connection_string is not None:
            return ServiceBusClient.from_connection_string(self.connection_string), None
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        assert self.namespace is not None
        return ServiceBusClient(self.namespace, credential), credential


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", type=Path, help="a serve state file (default .localrun/serve.json)")
    where.add_argument("--connection-string", help="Service Bus connection string")
    where.add_argument(
        "--namespace",
        help="NAME.servicebus.windows.net, with Entra (DefaultAzureCredential): list/inspect need Azure "
        "Service Bus Data Receiver on the queue (and the subscription), resubmit also Data Sender",
    )
    parser.add_argument("--queue", help="default $JOB_UPDATES_QUEUE, else the state file's, else job-updates")
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.add_argument(
        "--limit", type=int, default=10_000, metavar="N", help="read at most N dead letters (10000)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--job-id", help="only entries whose body names this job")
        p.add_argument("--reason", help="only this reason (the broker's or jobUpdate.deadLetterReason)")
        p.add_argument(
            "--older-than", type=str, metavar="AGE", help="first enqueued longer ago (2h, 1d, PT30M)"
        )
        p.add_argument("--newer-than", type=str, metavar="AGE", help="first enqueued more recently")

    listing = commands.add_parser("list", help="one line per dead letter (peek only)")
    filters(listing)
    inspect = commands.add_parser(
        "inspect", help="one dead letter in full, with its outcome events (peek only)"
    )
    inspect.add_argument("id", metavar="ID|SEQ", help="message id, sequence number or original message id")
    inspect.add_argument("--show-body", action="store_true", help="the decoded body, unredacted")
    inspect.add_argument("--topic", help="default $OUTCOME_TOPIC, else the state file's, else job-outcomes")
    inspect.add_argument(
        "--subscription", default=SUBSCRIPTION, help=f"where to peek events ({SUBSCRIPTION})"
    )
    inspect.add_argument(
        "--events-limit", type=int, default=10_000, metavar="N", help="peek at most N events (10000)"
    )
    again = commands.add_parser("resubmit", help="send dead letters to the queue again, as new messages")
    again.add_argument("ids", nargs="*", metavar="ID|SEQ", help="these entries (with the filters: and)")
    again.add_argument("--all", action="store_true", help="every entry (when no id or filter is given)")
    filters(again)
    again.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    again.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    body = again.add_mutually_exclusive_group()
    body.add_argument("--edit", action="store_true", help="edit the body in $EDITOR first (one entry)")
    body.add_argument("--body", type=Path, metavar="FILE", help="send this body instead (one entry)")
    again.add_argument(
        "--force", action="store_true", help="send bodies `check` finds invalid (or cannot check)"
    )
    again.add_argument(
        "--allowed-endpoints", help="the allow-list to check against (BATCH_ALLOWED_ENDPOINTS)"
    )
    again.add_argument("--default-endpoint", help="as BATCH_DEFAULT_ENDPOINT")
    again.add_argument("--api-version", help="as BATCH_API_VERSION")
    again.add_argument("--allow-emulator", action="store_true", help="as BATCH_ALLOW_EMULATOR")
    return parser


def _target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    state: dict[str, Any] = {}
    if not (args.connection_string or args.namespace):
        from localrun.serve import STATE, read_state

        state = read_state(args.state or STATE)
    queue = args.queue or environ.get("JOB_UPDATES_QUEUE") or state.get("queue") or QUEUE
    topic = getattr(args, "topic", None) or environ.get("OUTCOME_TOPIC") or state.get("topic") or TOPIC
    settings = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    return Target(
        args.connection_string or state.get("connectionString"),
        args.namespace,
        queue,
        topic,
        {str(k): str(v) for k, v in (settings or {}).items()},
    )


def _selection(args: argparse.Namespace, ids: Sequence[str] = ()) -> Selection:
    return Selection(
        ids=tuple(ids),
        job_id=args.job_id,
        reason=args.reason,
        older_than=parse_duration(args.older_than) if args.older_than else None,
        newer_than=parse_duration(args.newer_than) if args.newer_than else None,
    )


def ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{PROG}: not a terminal: pass --yes to resubmit without asking", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    confirm: Callable[[str], bool] = ask,
) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ) if environ is None else dict(environ)
    stream = out or sys.stdout
    try:
        if args.limit < 1:
            raise UsageError("--limit must be at least 1")
        if args.command != "inspect":  # refused before anything connects
            selection = _selection(args, getattr(args, "ids", ()))
            if args.command == "resubmit" and selection.everything and not args.all:
                raise UsageError("say which: ID|SEQ, --job-id, --reason, --older-than/--newer-than, or --all")
        target = _target(args, env)
        return asyncio.run(_run(args, target, env, stream, confirm))
    except UsageError as exc:
        print(f"{PROG}: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2


async def _run(
    args: argparse.Namespace,
    target: Target,
    env: dict[str, str],
    out: TextIO,
    confirm: Callable[[str], bool],
) -> int:
    client, credential = target.client()
    try:
        async with client:
            if args.command == "list":
                return await _list(client, target, args, out)
            if args.command == "inspect":
                return await _inspect(client, target, args, out)
            return await _resubmit(client, target, args, env, out, confirm)
    except ServiceBusError as exc:
        print(f"{PROG}: {_error(exc)}", file=sys.stderr)
        return 1
    finally:
        if credential is not None:
            await credential.close()


def _emit(out: TextIO, doc: Any) -> None:
    out.write(json.dumps(doc) + "\n")
    out.flush()


async def _list(client: ServiceBusClient, target: Target, args: argparse.Namespace, out: TextIO) -> int:
    selection = _selection(args)
    now = datetime.now(UTC)
    entries = [e for e in await dead_letters(client, target.queue, args.limit) if selection.matches(e, now)]
    if args.json:
        for entry in entries:
            _emit(out, row(entry, now))
        return 0
    if not entries:
        out.write(
            f"{target.queue}/$DeadLetterQueue: no dead letters{'' if selection.everything else ' match'}\n"
        )
        return 0
    out.write("\n".join(list_lines(entries, now)) + "\n")
    out.write(f"{len(entries)} dead letter(s) on {target.queue}/$DeadLetterQueue\n")
    return 0


async def _inspect(client: ServiceBusClient, target: Target, args: argparse.Namespace, out: TextIO) -> int:
    now = datetime.now(UTC)
    selection = Selection(ids=(args.id,))
    entries = [e for e in await dead_letters(client, target.queue, args.limit) if selection.matches(e, now)]
    if not entries:
        print(f"{PROG}: no dead letter {args.id!r} on {target.queue}/$DeadLetterQueue", file=sys.stderr)
        return 1
    ids = {i for e in entries for i in (e.original_message_id, e.message_id)}
    events = await events_for(client, target.topic, args.subscription, ids, args.events_limit)
    for entry in entries:
        found = events[entry.original_message_id] + (
            events[entry.message_id] if entry.message_id != entry.original_message_id else []
        )
        doc = inspection(entry, found, now, show_body=args.show_body)
        if args.json:
            _emit(out, doc)
        else:
            out.write("\n".join(inspection_text(doc)) + "\n")
    return 0


def _policy(args: argparse.Namespace, env: dict[str, str], target: Target) -> Policy | None:
    """The allow-list as `python -m handlers check` reads it; the serve state's settings
    stand in for the app's when the target is a running serve."""
    try:
        return policy_from_args(args, {**env, **target.settings})
    except UsageError:
        if args.force:
            return None
        raise


def _new_body(args: argparse.Namespace, entry: Entry, env: Mapping[str, str]) -> bytes | None:
    if args.body is not None:
        try:
            return args.body.read_bytes()  # type: ignore[no-any-return]
        except OSError as exc:
            raise UsageError(f"{args.body}: {exc.strerror or exc}") from None
    if args.edit:
        editor = env.get("VISUAL") or env.get("EDITOR")
        if not editor:
            raise UsageError("--edit needs $EDITOR (or $VISUAL); or give --body FILE")
        return edit_in_editor(entry.body, editor)
    return None


async def _resubmit(
    client: ServiceBusClient,
    target: Target,
    args: argparse.Namespace,
    env: dict[str, str],
    out: TextIO,
    confirm: Callable[[str], bool],
) -> int:
    policy = _policy(args, env, target)
    # One receiver peeks and then (after the prompt) receives: each link costs a round trip.
    async with client.get_queue_receiver(target.queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        return await _resubmit_from(client, receiver, target, args, env, policy, out, confirm)


async def _resubmit_from(
    client: ServiceBusClient,
    receiver: ServiceBusReceiver,
    target: Target,
    args: argparse.Namespace,
    env: dict[str, str],
    policy: Policy | None,
    out: TextIO,
    confirm: Callable[[str], bool],
) -> int:
    selection = _selection(args, args.ids)
    now = datetime.now(UTC)
    entries = [e for e in await peek_entries(receiver, args.limit) if selection.matches(e, now)]
    if not entries:
        out.write(f"{target.queue}/$DeadLetterQueue: nothing to resubmit\n")
        return 0 if not args.ids else 1
    if (args.edit or args.body) and len(entries) != 1:
        raise UsageError(f"--edit and --body take exactly one entry; {len(entries)} match")
    prepared = [prepare(e, _new_body(args, e, env), policy, now) for e in entries]
    refused = [p for p in prepared if p.valid is False and not args.force]
    sendable = [p for p in prepared if p not in refused]
    for p in prepared:
        _show_plan(out, p, refused=p in refused, as_json=args.json, dry_run=args.dry_run)
    if args.dry_run or not sendable:
        return 1 if refused else 0
    question = f"Resubmit {len(sendable)} message(s) to {target.queue}?"
    # In a thread: the event loop keeps the connection serviced while the prompt waits.
    if not args.yes and not await asyncio.to_thread(confirm, question):
        out.write("nothing sent\n")
        return 1
    report = await resubmit_with(client, receiver, target.queue, sendable)
    for done in report.resubmitted:
        if args.json:
            _emit(out, {"resubmitted": True, **done})
        else:
            out.write(
                f"resubmitted #{done['sequenceNumber']} {done['messageId']} as {done['newMessageId']} "
                "(dead-letter entry completed)\n"
            )
    for problem in report.problems:
        if args.json:
            _emit(out, {"resubmitted": False, **problem})
        else:
            out.write(
                f"NOT done: #{problem['sequenceNumber']} {problem['messageId']}: {problem['problem']}\n"
            )
    return 0 if report.ok and not refused else 1


def _show_plan(out: TextIO, p: Prepared, *, refused: bool, as_json: bool, dry_run: bool) -> None:
    check = p.check or {}
    doc = {
        "plan": "refused" if refused else ("would resubmit" if dry_run else "resubmit"),
        "sequenceNumber": p.entry.sequence_number,
        "messageId": p.entry.message_id,
        "jobId": job_id_of(p.outgoing.body),
        "newMessageId": p.outgoing.message_id,
        "bodyEdited": RESUBMITTED_BODY_EDITED in p.outgoing.properties,
        "valid": p.valid,
        "problems": check.get("problems", []),
    }
    if as_json:
        _emit(out, doc)
        return
    verdict = {True: "valid", False: "INVALID", None: "not checked"}[p.valid]
    edited = ", body edited" if doc["bodyEdited"] else ""
    out.write(
        f"{doc['plan']}: #{doc['sequenceNumber']} {doc['messageId']} job={doc['jobId']} "
        f"-> {doc['newMessageId']} ({verdict}{edited})\n"
    )
    for problem in doc["problems"]:
        out.write(f"    {problem['path']}: {problem['code']}: {problem['message']}\n")
    if refused:
        out.write("    refused: fix it with --edit or --body FILE, or send it anyway with --force\n")


if __name__ == "__main__":
    sys.exit(main())
