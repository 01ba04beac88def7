"""What a local run sends and seeds: your own messages and jobs, read from files.

Messages are kept as the bytes written (never parsed here): judging them is the
function's job, so a duplicate key, a BOM or odd whitespace reaches it as written.
Jobs are checked here, before anything starts, because the emulator would store a
malformed seed as given and answer later requests with nonsense.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from handlers.errors import UsageError
from standins.batch.errors import BatchServiceError
from standins.batch.store import JOB_STATES, JobStore
from standins.batch.validation import POOL_LIFETIME_OPTIONS, validate_job_update

# Service Bus refuses longer message ids (the SDK's MESSAGE_PROPERTY_MAX_LENGTH).
MAX_MESSAGE_ID = 128
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its Service Bus message id, its body, where it came from."""

    message_id: str
    body: bytes
    origin: str  # `file` or `file:line`, for people


def read_messages(path: Path) -> list[Outgoing]:
    """The messages at `path`, in order.

    - a folder: each `*.json` file in it (not recursive, dotfiles skipped, sorted by
      name) is one message, id = file stem;
    - a `*.json` file: one message, id = file stem;
    - any other file: JSON Lines, one message per line, id = `<file stem>-<line
      number>` (1-based, counting every line); lines end at `\\n`, a `\\r` before it
      stays in the body (JSON whitespace); blank lines (only spaces, tabs, `\\r`) are
      skipped.
    """
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file() and not p.name.startswith("."))
        out = [Outgoing(p.stem, _read(p), str(p)) for p in files]
        if not out:
            raise UsageError(f"{path}: no *.json files in this folder")
    elif path.suffix == ".json":
        out = [Outgoing(path.stem, _read(path), str(path))]
    else:
        raw = _read(path)
        out = [
            Outgoing(f"{path.stem}-{number}", line, f"{path}:{number}")
            for number, line in enumerate(raw.split(b"\n"), 1)
            if line.strip(b" \t\r")
        ]
        if not out:
            raise UsageError(f"{path}: no messages (every line is blank)")
    too_long = [m.message_id for m in out if len(m.message_id) > MAX_MESSAGE_ID]
    if too_long:
        raise UsageError(
            f"{too_long[0]!r}: message id over {MAX_MESSAGE_ID} characters (Service Bus refuses it); "
            "use a shorter file name"
        )
    return out


def read_jobs(path: Path) -> list[dict[str, Any]]:
    """Jobs to seed, from JSON Lines of Batch job objects as GET /jobs/{id} shows them.

    Checked as the emulator will store them (a scratch store sees the same ids and
    states), and normalised as Batch would show them (enum values lower-case,
    durations canonical, constraints complete). `odata.metadata` and `url` are the
    reply's, not the job's, and are dropped. Raises UsageError naming the line.
    """
    raw = _read(path)
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]  # an editor's BOM; this file is ours to read, not a message
    scratch = JobStore()
    jobs: list[dict[str, Any]] = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip(b" \t\r"):
            continue
        try:
            job = job_from_line(line)
            scratch.add(job)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
        jobs.append(job)
    return jobs


# Read-only properties a GET shows and the emulator keeps as seeded: a message's
# conditions written against the real job's eTag / lastModified then behave the same.
_TIME_FIELDS = ("lastModified", "creationTime", "stateTransitionTime", "previousStateTransitionTime")
_ETAG = re.compile(r"0x[0-9A-Fa-f]{1,16}")  # Batch sends ETags bare: .NET ticks in hex
_ON_TASK_FAILURE = ("noaction", "performexitoptionsjobaction")
_BOOLEANS = ("usesTaskDependencies",)
_OBJECTS = ("executionInfo",)


def job_from_line(line: bytes) -> dict[str, Any]:
    """One seed job from one JSON line; ValueError says what is wrong."""
    try:
        doc = json.loads(line.decode("utf-8"), object_pairs_hook=_no_repeats)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not JSON this parser can read (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ValueError("a job must be a JSON object")
    doc.pop("odata.metadata", None)
    doc.pop("url", None)
    _no_nulls(doc, "")
    if not isinstance(doc.get("id"), str):
        raise ValueError('a job needs an "id" (a string)')
    for name in ("state", "previousState"):
        if name in doc and doc[name] not in JOB_STATES:
            raise ValueError(f"{name} must be one of {', '.join(JOB_STATES)}, got {doc[name]!r}")
    if "eTag" in doc and not (isinstance(doc["eTag"], str) and _ETAG.fullmatch(doc["eTag"])):
        raise ValueError(f"eTag must be as Batch sends it, bare 0x and hex digits, got {doc['eTag']!r}")
    for name in _TIME_FIELDS:
        if name in doc:
            _check_time(name, doc[name])
    for name in _BOOLEANS:
        if name in doc and not isinstance(doc[name], bool):
            raise ValueError(f"{name} must be true or false")
    for name in _OBJECTS:
        if name in doc and not isinstance(doc[name], dict):
            raise ValueError(f"{name} must be an object")
    if "onTaskFailure" in doc:
        doc["onTaskFailure"] = _enum("onTaskFailure", doc["onTaskFailure"], _ON_TASK_FAILURE)
    if "poolInfo" in doc:
        doc["poolInfo"] = _pool_info(doc["poolInfo"])
    # The rest of what PATCH can change: held to the service's own rules for those values.
    updatable = {k: doc[k] for k in _CHECKED_AS_UPDATE if k in doc}
    try:
        doc.update(validate_job_update(updatable))
    except BatchServiceError as exc:
        detail = ", ".join(f"{k}={v}" for k, v in exc.values)
        raise ValueError(f"{exc.code}{': ' + detail if detail else ''}") from None
    return doc


# poolInfo is left out: a GET shows the create-time BatchPoolInfo, whose auto pool
# specification holds more than the update model allows (checked by _pool_info).
_CHECKED_AS_UPDATE = (
    "priority",
    "allowTaskPreemption",
    "maxParallelTasks",
    "constraints",
    "onAllTasksComplete",
    "metadata",
    "networkConfiguration",
)


def _pool_info(value: Any) -> dict[str, Any]:
    """BatchPoolInfo as a GET shows it: exactly one of poolId / autoPoolSpecification."""
    if not isinstance(value, dict) or ("poolId" in value) == ("autoPoolSpecification" in value):
        raise ValueError("poolInfo must be an object with exactly one of poolId and autoPoolSpecification")
    if "poolId" in value:
        if not isinstance(value["poolId"], str) or not value["poolId"]:
            raise ValueError("poolInfo.poolId must be a non-empty string")
        return dict(value)
    spec = value["autoPoolSpecification"]
    if not isinstance(spec, dict):
        raise ValueError("poolInfo.autoPoolSpecification must be an object")
    spec = dict(spec)
    # Required at creation, so every real job on an auto pool has it.
    spec["poolLifetimeOption"] = _enum(
        "poolInfo.autoPoolSpecification.poolLifetimeOption",
        spec.get("poolLifetimeOption"),
        POOL_LIFETIME_OPTIONS,
    )
    if "keepAlive" in spec and not isinstance(spec["keepAlive"], bool):
        raise ValueError("poolInfo.autoPoolSpecification.keepAlive must be true or false")
    if "pool" in spec and not isinstance(spec["pool"], dict):
        raise ValueError("poolInfo.autoPoolSpecification.pool must be an object")
    return {**value, "autoPoolSpecification": spec}


def _enum(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    # Batch matches enum values case-insensitively and shows them lower-case.
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _check_time(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 string, as Batch sends it")
    try:
        # Batch writes up to 7 fractional digits; Python reads at most 6.
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value))
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} needs a time zone (Batch sends UTC, ending in Z): {value!r}")


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    counts = Counter(name for name, _ in pairs)
    repeated = [name for name, n in counts.items() if n > 1]
    if repeated:
        raise ValueError(f"{repeated[0]!r} appears more than once in one object")
    return dict(pairs)


def _no_nulls(value: Any, path: str) -> None:
    # Batch leaves an absent property out; a null would reach the function as a value.
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if item is None:
            raise ValueError(f"{where or 'the job'} is null; leave the property out instead")
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else k, v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


# --- the verdict -------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    missing: list[str]  # sent, no outcome event
    repeated: dict[str, int]  # more than one outcome event
    unexpected: list[str]  # events for ids this run did not send


def judge(
    sent: Iterable[str], not_sent: Iterable[str], events: Iterable[Mapping[str, Any]], left: int
) -> Verdict:
    """OK when every message has exactly one outcome event and nothing is left on the
    queue; a message that could not be sent has none, so it fails the run too."""
    per_message = Counter(str(e.get("sourcemessageid")) for e in events)
    sent_ids = list(sent)
    wanted = set(sent_ids)
    missing = [m for m in sent_ids if per_message[m] == 0] + list(not_sent)
    repeated = {m: n for m, n in per_message.items() if n > 1 and m in wanted}
    unexpected = sorted(m for m in per_message if m not in wanted)
    ok = not missing and not repeated and not unexpected and left == 0
    return Verdict(ok, missing, repeated, unexpected)
