"""The fault matrix: each row injects one fault and reconciles the books.

A row seeds one job per message, sends the messages through the real broker,
runs the function against the stand-ins while the fault fires, waits until
every message has an outcome and the queue is empty, then hands the records to
`accounting.reconcile`. Every row must come out with 0 lost, 0 duplicate
terminal events, 0 untruthful outcomes and no dead letter without its
`given-up` event, plus the row's own expectations (which outcome, which
statuses Batch answered).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from standins.batch import Fault
from tests.faults.accounting import BatchCall, DeadLetter, Ledger, SentMessage, reconcile
from tests.faults.stack import (
    EventSink,
    HostProcess,
    Stack,
    function_in_process,
    queue_counts,
    send,
    stack,
)

BATCH_SCOPE_RESOURCE = "https://batch.core.windows.net/"
Job = dict[str, Any]
Body = dict[str, Any]


@dataclass
class Control:
    """What a row's `during` step can do to the running system."""

    stack: Stack
    sink: EventSink
    process: HostProcess | None = None
    notes: list[str] = field(default_factory=list)

    async def events_at_least(self, count: int, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while len(self.sink.events) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a list
            await asyncio.sleep(0.05)


def _replace(job_id: str, index: int) -> Body:
    return {"schemaVersion": "1.0", "jobId": job_id, "update": {"priority": 100 + index}}


def _merge(job_id: str, index: int) -> Body:
    return {
        "schemaVersion": "1.0",
        "jobId": job_id,
        "mode": "merge",
        "update": {"constraints": {"maxTaskRetryCount": 1 + index % 5}},
    }


def _active(job_id: str) -> Job:
    return {"id": job_id, "priority": 0, "constraints": {"maxTaskRetryCount": 0}}


def _nothing(s: Stack, job_ids: list[str]) -> None:
    return None


@dataclass(frozen=True)
class Row:
    name: str
    fault: str  # what happens, for the report
    outcomes: frozenset[str]  # every message must end in one of these
    arrange: Callable[[Stack, list[str]], object] = _nothing
    during: Callable[[Control], Coroutine[Any, Any, None]] | None = None
    body: Callable[[str, int], Body] = _replace
    job: Callable[[str, int], Job | None] = lambda job_id, _: _active(job_id)
    settings: Mapping[str, str] = field(default_factory=dict)
    lock_seconds: int = 30
    host: Literal["in-process", "process"] = "in-process"
    host_options: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Stack, Ledger], Iterable[str]] | None = None
    messages: int = 10
    needs: str | None = None  # a stand-in capability this row cannot run without


@dataclass(frozen=True)
class RowResult:
    row: str
    fault: str
    ledger: Ledger
    drain_seconds: float
    problems: tuple[str, ...]  # the row's own expectations that failed
    batch_statuses: Mapping[str, int]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.ledger.clean and not self.problems

    def summary(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "fault": self.fault,
            **self.ledger.summary(),
            "drainSeconds": round(self.drain_seconds, 1),
            "batchStatuses": dict(sorted(self.batch_statuses.items())),
            "problems": list(self.problems) + list(self.ledger.untruthful),
            "notes": list(self.notes),
            "ok": self.ok,
        }


# --- row-specific expectations -------------------------------------------------------


def _saw(status: int, per_message: int = 1) -> Callable[[Stack, Ledger], Iterable[str]]:
    def check(s: Stack, ledger: Ledger) -> Iterable[str]:
        seen = sum(1 for r in s.emu.requests if r.status == status)
        if seen < per_message * ledger.messages:
            yield f"Batch answered {status} {seen} times; expected {per_message} per message"

    return check


def _token_refreshed(s: Stack, ledger: Ledger) -> Iterable[str]:
    fetched = s.tokens.requests[BATCH_SCOPE_RESOURCE]
    if fetched < 2:
        yield f"a 401 should make the function fetch a fresh token; it fetched {fetched}"
    yield from _saw(401)(s, ledger)


def _all_dead_lettered(s: Stack, ledger: Ledger) -> Iterable[str]:
    if ledger.dead_lettered != ledger.messages:
        yield f"{ledger.dead_lettered} of {ledger.messages} messages reached the dead-letter queue"


def _conflict_states(job_id: str, index: int) -> Job:
    return {**_active(job_id), "state": ("completed", "terminating", "deleting")[index % 3]}


def _stale_etag(job_id: str, index: int) -> Body:
    return {**_replace(job_id, index), "conditions": {"ifMatch": "0x8D0000000000000"}}


# --- rows whose fault runs while messages flow -----------------------------------


async def _kill_host_mid_batch(ctl: Control) -> None:
    assert ctl.process is not None
    await ctl.events_at_least(2)
    ctl.process.kill()
    ctl.notes.append(f"host killed after {len(ctl.sink.events)} events")
    await asyncio.sleep(0.5)
    ctl.process.start()


async def _restart_broker(ctl: Control) -> None:
    await ctl.events_at_least(2)
    restart = getattr(ctl.stack.broker, "restart", None)
    assert restart is not None
    await asyncio.to_thread(restart, 2.0)


async def _topic_outage(ctl: Control) -> None:
    outage = getattr(ctl.stack.broker, "entity_outage", None)
    assert outage is not None
    await asyncio.to_thread(outage, "job-outcomes", 15.0)


ROWS: tuple[Row, ...] = (
    Row("baseline", "no fault", frozenset({"applied"})),
    Row(
        "batch-429",
        "429 TooManyRequests with Retry-After: 1 on every message's first PATCH",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.throttled(retry_after=1, method="PATCH", times=len(ids))),
        check=_saw(429),
    ),
    Row(
        "batch-503",
        "503 ServerBusy with Retry-After: 1 on every message's first PATCH",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.server_busy(retry_after=1, method="PATCH", times=len(ids))),
        check=_saw(503),
    ),
    Row(
        "batch-500",
        "500 InternalError, twice per message",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.error(500, method="PATCH", times=2 * len(ids))),
        check=_saw(500, per_message=2),
    ),
    Row(
        "batch-slow",
        "a PATCH answered after 5 s, past the 3 s client timeout (the write still lands)",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.delay(5.0, method="PATCH", times=len(ids) // 2)),
    ),
    Row(
        "batch-slow-merge",
        "merge mode: a PATCH answered past the client timeout; the retry meets our own landed write (412)",
        frozenset({"applied"}),
        body=_merge,
        arrange=lambda s, ids: s.emu.inject(Fault.delay(5.0, method="PATCH", times=len(ids) // 2)),
    ),
    Row(
        "batch-reset",
        "the connection reset with no response, once per message",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.connection_reset(method="PATCH", times=len(ids))),
    ),
    Row(
        "batch-401-once",
        "401 on every message's first PATCH: the token is refreshed and the PATCH sent once more",
        frozenset({"applied"}),
        # One 401 per job, not len(ids) for any PATCH: a second 401 is final, so one
        # message's resend must not take the 401 meant for another's first PATCH.
        arrange=lambda s, ids: [
            s.emu.inject(Fault.error(401, method="PATCH", job_id=j, times=1)) for j in ids
        ],
        check=_token_refreshed,
    ),
    Row(
        "batch-401-always",
        "401 on the PATCH and on its one resend: final",
        frozenset({"failed"}),
        arrange=lambda s, ids: s.emu.inject(Fault.error(401, method="PATCH", times=2 * len(ids))),
        check=_saw(401, per_message=2),
    ),
    Row(
        "batch-403",
        "403 AuthorizationFailure (no role on the account)",
        frozenset({"failed"}),
        arrange=lambda s, ids: s.emu.inject(
            Fault.error(403, code="AuthorizationFailure", method="PATCH", times=len(ids))
        ),
    ),
    Row("batch-404", "the job does not exist", frozenset({"failed"}), job=lambda job_id, _: None),
    Row(
        "batch-409",
        "the job is completed, terminating or deleting",
        frozenset({"failed"}),
        job=_conflict_states,
        check=_saw(409),
    ),
    Row(
        "batch-412",
        "ifMatch names a stale ETag",
        frozenset({"precondition-failed"}),
        body=_stale_etag,
        check=_saw(412),
    ),
    Row(
        "batch-412-concurrent-merge",
        "merge mode: another writer changes the job between our read and our write",
        frozenset({"applied"}),
        body=_merge,
        arrange=lambda s, ids: s.emu.inject(
            Fault.concurrent_writer({"priority": 7}, method="PATCH", times=len(ids))
        ),
        check=_saw(412),
    ),
    Row(
        "batch-503-outlasts-copies",
        "503 on every attempt: two scheduled copies, then given-up and dead-lettered with the reason",
        frozenset({"given-up"}),
        arrange=lambda s, ids: s.emu.inject(
            Fault.server_busy(retry_after=0.2, method="PATCH", times=100_000)
        ),
        settings={"BATCH_RETRY_BUDGET_SECONDS": "1", "JOB_UPDATES_MAX_SCHEDULED_COPIES": "2"},
        check=_all_dead_lettered,
    ),
    Row(
        "batch-503-outlasts-deliveries",
        "503 on every attempt, copies off: redelivered to the last delivery, given-up, dead-lettered",
        frozenset({"given-up"}),
        arrange=lambda s, ids: s.emu.inject(
            Fault.server_busy(retry_after=0.2, method="PATCH", times=100_000)
        ),
        settings={"BATCH_RETRY_BUDGET_SECONDS": "1", "JOB_UPDATES_SCHEDULED_RETRIES": "false"},
        check=_all_dead_lettered,
    ),
    Row(
        "batch-429-long-retry-after",
        "429 with Retry-After: 3 s, past the 1 s off-lock threshold: each message waits off the lock",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.throttled(retry_after=3, method="PATCH", times=len(ids))),
        settings={"JOB_UPDATES_OFFLOCK_WAIT_SECONDS": "1"},
        check=_saw(429),
    ),
    Row(
        "token-down",
        "the managed-identity endpoint answers 503 for 4 s",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.tokens.outage(4.0),
        settings={"BATCH_RETRY_BUDGET_SECONDS": "30"},
    ),
    Row(
        "token-slow",
        "the managed-identity endpoint takes 4 s per token for 6 s (past the 3 s attempt timeout)",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.tokens.slow(4.0, for_seconds=6.0),
        settings={"BATCH_RETRY_BUDGET_SECONDS": "30"},
    ),
    Row(
        "topic-outage",
        "the outcome topic refuses sends for 15 s, longer than the SDK's retries",
        frozenset({"applied"}),
        during=_topic_outage,
        settings={"OUTCOME_PUBLISH_HOLD_SECONDS": "40"},
        needs="entity_outage",
    ),
    Row(
        "lock-expiry",
        "the message lock (3 s, not renewed) expires while Batch takes 5 s",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.delay(5.0, method="PATCH", times=len(ids))),
        lock_seconds=3,
        host_options={"max_auto_lock_renewal_seconds": 0.0},
        settings={"BATCH_HTTP_TIMEOUT_SECONDS": "10", "BATCH_RETRY_BUDGET_SECONDS": "20"},
    ),
    Row(
        "broker-restart",
        "the broker restarts mid-stream (2 s down, state kept)",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.delay(1.0, method="PATCH", times=len(ids))),
        during=_restart_broker,
        lock_seconds=5,
        needs="restart",
    ),
    Row(
        "host-sigkill",
        "SIGKILL of the host process mid-batch, then a new host",
        frozenset({"applied"}),
        arrange=lambda s, ids: s.emu.inject(Fault.delay(1.0, method="PATCH", times=len(ids))),
        during=_kill_host_mid_batch,
        lock_seconds=4,
        host="process",
    ),
)


def runnable(row: Row) -> bool:
    """False when the stand-ins lack what the row needs (reported, never skipped silently)."""
    from standins.servicebus import LocalBroker

    return row.needs is None or hasattr(LocalBroker, row.needs)


@asynccontextmanager
async def _function(row: Row, s: Stack, ctl: Control, *, process: bool) -> AsyncIterator[None]:
    if process or row.host == "process":
        env = {**s.app_settings(row.settings), "FAULT_HOST_OPTIONS": json.dumps(dict(row.host_options))}
        ctl.process = HostProcess(env)
        ctl.process.start()
        try:
            yield
        finally:
            await asyncio.to_thread(ctl.process.stop)  # rows may run side by side: never block the loop
        return
    async with function_in_process(s, row.settings, **row.host_options):
        yield


async def _drained(s: Stack, sink: EventSink, sent: list[SentMessage], deadline: float) -> None:
    wanted = {m.message_id for m in sent}
    while time.monotonic() < deadline:
        seen = {e.get("sourcemessageid") for e in sink.events}
        if wanted <= seen:
            left, dead = await queue_counts(s)
            given_up = sum(1 for e in sink.events if e["data"]["outcome"] == "given-up")
            if left == 0 and len(dead) >= given_up:
                return
        await asyncio.sleep(0.3)


async def run_row(
    row: Row, *, messages: int | None = None, within: float = 120.0, process: bool = False
) -> RowResult:
    """One row. `process`: the function in its own host process (rows can then run
    side by side; in this process the function reads its settings from os.environ)."""
    count = messages or row.messages
    with stack(lock_seconds=row.lock_seconds) as s:
        job_ids = [f"{row.name}-{i:03d}" for i in range(count)]
        for index, job_id in enumerate(job_ids):
            job = row.job(job_id, index)
            if job is not None:
                state = job.pop("state", None)
                s.emu.add_job(job)
                if state:
                    s.emu.set_job_state(job_id, state)
        row.arrange(s, job_ids)
        sent = [SentMessage(f"{row.name}-m{i:03d}", jid, row.body(jid, i)) for i, jid in enumerate(job_ids)]
        async with EventSink(s) as sink:
            ctl = Control(s, sink)
            async with _function(row, s, ctl, process=process):
                started = time.monotonic()
                await send(s, [(m.message_id, m.body) for m in sent])
                during = asyncio.create_task(row.during(ctl)) if row.during else None
                await _drained(s, sink, sent, started + within)
                drain = time.monotonic() - started
                if during is not None:
                    await during
                await asyncio.sleep(1.5)  # late duplicates would arrive now
        left, dead = await queue_counts(s)
        recorded = s.emu.requests
        calls = [
            BatchCall(
                r.method,
                r.job_id,
                {k.lower(): v for k, v in r.headers.items()}.get("client-request-id"),
                r.status,
            )
            for r in recorded
        ]
        ledger = reconcile(
            sent,
            calls,
            sink.events,
            [DeadLetter(mid, reason) for mid, reason in dead],
            {jid: s.emu.job(jid) for jid in job_ids},
            left_on_queue=left,
        )
        problems = [
            f"{e['sourcemessageid']}: outcome {e['data']['outcome']}, expected {sorted(row.outcomes)}"
            for e in sink.events
            if e["data"]["outcome"] not in row.outcomes
        ]
        if row.check is not None:
            problems.extend(row.check(s, ledger))
        statuses: dict[str, int] = {}
        for r in recorded:
            key = f"{r.method} {r.status if r.status is not None else 'reset'}"
            statuses[key] = statuses.get(key, 0) + 1
    if sink.redelivered:
        ctl.notes.append(
            f"{sink.redelivered} event(s) delivered to the subscriber again (same id), counted once"
        )
    return RowResult(row.name, row.fault, ledger, drain, tuple(problems), statuses, tuple(ctl.notes))


async def run_matrix(
    names: Iterable[str] | None = None, *, messages: int | None = None, parallel: int = 1
) -> list[RowResult]:
    """The rows, `parallel` at a time (then each in its own host process)."""
    wanted = set(names) if names else None
    rows = [r for r in ROWS if (wanted is None or r.name in wanted) and runnable(r)]
    if parallel <= 1:
        return [await run_row(row, messages=messages) for row in rows]
    slots = asyncio.Semaphore(parallel)

    async def one(row: Row) -> RowResult:
        async with slots:
            return await run_row(row, messages=messages, process=True)

    return list(await asyncio.gather(*(one(row) for row in rows)))
