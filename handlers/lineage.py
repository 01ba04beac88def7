"""Scheduled copies of a message: their ids, their properties, and reading them back.

A transient failure that would hold the lock too long is retried off the lock: the
function schedules a copy of the message on the queue at the retry time and
completes the original (docs/host.md, "Retries off the lock"). A copy says what it
is in application properties:

    jobUpdate.originalMessageId    the first message's id: events and client-request-ids
                                   derive from it, so every copy's outcome deduplicates
    jobUpdate.originalEnqueuedTime when the first message was enqueued (ISO 8601): the
                                   attempt budget and the own-write check count from it
    jobUpdate.copy                 1, 2, ...: how many copies so far
    jobUpdate.attempts             Batch attempts made by the original and earlier copies
    jobUpdate.deadLetterReason     only on the last copy, the one that goes to the DLQ
    jobUpdate.deadLetterDescription

A copy's message id is derived from the original id and the copy number (a UUIDv5),
so scheduling the same copy twice (a crash between scheduling and completing)
sends a duplicate the queue's duplicate detection drops. Properties are trusted
only on a message whose id is that derivation: a producer's message that merely
carries these names is read as an ordinary message.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ATTEMPTS",
    "COPY",
    "DEAD_LETTER_DESCRIPTION",
    "DEAD_LETTER_REASON",
    "ORIGINAL_ENQUEUED_TIME",
    "ORIGINAL_MESSAGE_ID",
    "Lineage",
    "copy_message_id",
    "copy_properties",
    "dead_letter_message_id",
    "jitter",
    "lineage_of",
]

ORIGINAL_MESSAGE_ID = "jobUpdate.originalMessageId"
ORIGINAL_ENQUEUED_TIME = "jobUpdate.originalEnqueuedTime"
COPY = "jobUpdate.copy"
ATTEMPTS = "jobUpdate.attempts"
DEAD_LETTER_REASON = "jobUpdate.deadLetterReason"
DEAD_LETTER_DESCRIPTION = "jobUpdate.deadLetterDescription"
OURS = (
    ORIGINAL_MESSAGE_ID,
    ORIGINAL_ENQUEUED_TIME,
    COPY,
    ATTEMPTS,
    DEAD_LETTER_REASON,
    DEAD_LETTER_DESCRIPTION,
)

_NAMESPACE = uuid.UUID("b4f5b1a2-6c1e-4f0e-9d7a-3e2c8a9f0d51")
# Service Bus limits a message id to 128 characters; a UUID is 36.
MAX_COPIES_CEILING = 1000


def copy_message_id(original_id: str, copy: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{original_id}\x00copy\x00{copy}"))


def dead_letter_message_id(original_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{original_id}\x00dead-letter"))


@dataclass(frozen=True, slots=True)
class Lineage:
    """Who a received message is: the original, or its n-th scheduled copy."""

    original_id: str
    original_enqueued_at: datetime | None
    copy: int = 0  # 0: the original message
    attempts: int = 0  # Batch attempts before this copy
    dead_letter: tuple[str, str] | None = None  # (reason, description): settle to the DLQ


def lineage_of(
    message_id: str, enqueued_at: datetime | None, properties: Mapping[str, Any] | None
) -> Lineage:
    """Read a message's lineage. Never raises: anything odd means "an original"."""
    plain = Lineage(message_id, enqueued_at)
    if not properties or ORIGINAL_MESSAGE_ID not in properties:
        return plain
    original, copy = properties.get(ORIGINAL_MESSAGE_ID), properties.get(COPY)
    if not isinstance(original, str) or not original or len(original) > 128:
        return plain
    reason, description = properties.get(DEAD_LETTER_REASON), properties.get(DEAD_LETTER_DESCRIPTION)
    if isinstance(reason, str) and reason:
        if message_id != dead_letter_message_id(original):
            return plain
        first = _when(properties.get(ORIGINAL_ENQUEUED_TIME))
        attempts = _count(properties.get(ATTEMPTS), ceiling=2**31)
        return Lineage(
            original, first, _count(copy), attempts, (reason[:1024], str(description or "")[:4096])
        )
    count = _count(copy)
    if count < 1 or message_id != copy_message_id(original, count):
        return plain
    first = _when(properties.get(ORIGINAL_ENQUEUED_TIME)) or enqueued_at
    return Lineage(original, first, count, _count(properties.get(ATTEMPTS), ceiling=2**31))


def copy_properties(
    lineage: Lineage, properties: Mapping[str, Any] | None, copy: int, attempts: int
) -> dict[str, str | int]:
    """Application properties for copy number `copy`: the message's own (a trace
    context, a producer's tags) with ours set on top."""
    out: dict[str, str | int] = {
        str(k): v for k, v in (properties or {}).items() if str(k) not in OURS and isinstance(v, (str, int))
    }
    out[ORIGINAL_MESSAGE_ID] = lineage.original_id
    out[COPY] = copy
    out[ATTEMPTS] = attempts
    first = lineage.original_enqueued_at
    if first is not None:
        # The host's EnqueuedTimeUtc can arrive without an offset: it is UTC.
        out[ORIGINAL_ENQUEUED_TIME] = (first if first.tzinfo else first.replace(tzinfo=UTC)).isoformat()
    return out


def jitter(key: str, copy: int) -> float:
    """A stable number in [0, 1) per message and copy: spreads a fleet's retries
    like random jitter, but the same message always picks the same time."""
    digest = hashlib.sha256(f"{key}\x00{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _count(value: Any, ceiling: int = MAX_COPIES_CEILING) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ceiling:
        return 0
    return value


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
