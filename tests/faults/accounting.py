"""Reconcile one fault run: what was sent, what Batch saw, the events, the DLQ.

Pure: it reads records and returns a `Ledger`; the runner gathers the records
over real sockets (matrix.py). A message is accounted for when it has exactly
one outcome event; an event is truthful when every claim it makes that the
records can check holds:

- `write: this-delivery` / `earlier-delivery`: Batch answered 2xx to a PATCH that
  carried this message's client-request-id (Batch says nothing about who wrote
  a value, so the request log is the ground truth a subscriber cannot see);
- `write: none`, and every `rejected`, `failed`, `precondition-failed`,
  `dry-run` outcome: no PATCH of this message was answered 2xx;
- `conditionsMet: false`: likewise no 2xx PATCH (a failed condition wrote nothing);
- `applied`: the job now holds the value the message asked for (rows give each
  job one message, so a later writer cannot explain a difference);
- `given-up`: the message is on the dead-letter queue, and every dead-lettered
  message has its `given-up` event (the promise this issue makes).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WRITES_CLAIMED = frozenset({"this-delivery", "earlier-delivery"})
NO_WRITE_OUTCOMES = frozenset({"rejected", "failed", "precondition-failed", "dry-run"})


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str
    job_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BatchCall:
    method: str
    job_id: str | None
    client_request_id: str | None
    status: int | None  # None: the connection was reset


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Ledger:
    messages: int
    events: int
    lost: tuple[str, ...]  # sent, no outcome event
    duplicates: tuple[str, ...]  # more than one outcome event
    untruthful: tuple[str, ...]  # "<message id>: <which claim failed>"
    dead_lettered_without_event: tuple[str, ...]
    left_on_queue: int
    outcomes: Mapping[str, int] = field(default_factory=dict)
    dead_lettered: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicates
            or self.untruthful
            or self.dead_lettered_without_event
            or self.left_on_queue
        )

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "events": self.events,
            "lost": len(self.lost),
            "duplicates": len(self.duplicates),
            "untruthful": len(self.untruthful),
            "deadLetteredWithoutEvent": len(self.dead_lettered_without_event),
            "deadLettered": self.dead_lettered,
            "leftOnQueue": self.left_on_queue,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def reconcile(
    sent: Sequence[SentMessage],
    calls: Iterable[BatchCall],
    events: Sequence[Mapping[str, Any]],
    dead_letters: Sequence[DeadLetter],
    jobs: Mapping[str, Mapping[str, Any] | None],
    *,
    left_on_queue: int,
) -> Ledger:
    by_message: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        by_message[str(event.get("sourcemessageid"))].append(event)
    written: Counter[str] = Counter()
    for call in calls:
        if call.method == "PATCH" and call.status is not None and 200 <= call.status < 300:
            written[call.client_request_id or ""] += 1

    sent_ids = {m.message_id for m in sent}
    lost = tuple(m.message_id for m in sent if not by_message.get(m.message_id))
    duplicates = tuple(mid for mid, got in by_message.items() if len(got) > 1)
    strays = tuple(f"{mid}: an event for a message nobody sent" for mid in by_message if mid not in sent_ids)
    dead = {d.message_id for d in dead_letters}
    untruthful: list[str] = list(strays)
    for message in sent:
        for event in by_message.get(message.message_id, []):
            untruthful.extend(
                f"{message.message_id}: {claim}"
                for claim in _false_claims(message, event, written, jobs, dead)
            )
    given_up = {
        mid
        for mid, got in by_message.items()
        if any(e.get("data", {}).get("outcome") == "given-up" for e in got)
    }
    return Ledger(
        messages=len(sent),
        events=len(events),
        lost=lost,
        duplicates=duplicates,
        untruthful=tuple(untruthful),
        dead_lettered_without_event=tuple(sorted(dead - given_up)),
        left_on_queue=left_on_queue,
        outcomes=Counter(str(e.get("data", {}).get("outcome")) for e in events),
        dead_lettered=len(dead),
    )


def _false_claims(
    message: SentMessage,
    event: Mapping[str, Any],
    written: Counter[str],
    jobs: Mapping[str, Mapping[str, Any] | None],
    dead: set[str],
) -> Iterable[str]:
    data: Mapping[str, Any] = event.get("data", {})
    outcome = data.get("outcome")
    if event.get("type") != f"dev.batchjobupdate.job.{outcome}":
        yield f"type {event.get('type')} does not match outcome {outcome}"
    wrote = written[str(data.get("clientRequestId"))] > 0
    write = data.get("write")
    if write in WRITES_CLAIMED and not wrote:
        yield f"write={write} but no PATCH of this message was answered 2xx"
    if (write == "none" or outcome in NO_WRITE_OUTCOMES) and wrote:
        yield f"outcome={outcome} write={write} but a PATCH of this message was answered 2xx"
    if data.get("conditionsMet") is False and wrote:
        yield "conditionsMet=false but a PATCH of this message was answered 2xx"
    if outcome == "given-up" and message.message_id not in dead:
        yield "given-up but the message is not on the dead-letter queue"
    if outcome == "applied":
        yield from _end_state(message, jobs.get(message.job_id))


def _end_state(message: SentMessage, job: Mapping[str, Any] | None) -> Iterable[str]:
    if job is None:
        yield "applied, but the job does not exist"
        return
    wanted = message.body.get("update", {})
    for name in ("priority", "maxParallelTasks", "allowTaskPreemption", "onAllTasksComplete"):
        if name in wanted and job.get(name) != wanted[name]:
            yield f"applied, but the job's {name} is {job.get(name)!r}, not {wanted[name]!r}"
    for name, value in wanted.get("constraints", {}).items():
        if job.get("constraints", {}).get(name) != value:
            yield f"applied, but the job's constraints.{name} is not {value!r}"
