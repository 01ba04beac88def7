"""The plan over any job body a read can return: Batch's, a proxy's, a broken one.

A read's body is open-ended input like a message. Whatever it holds, the plan ends in
a Done, never an exception (which would take the internal-error road: redeliveries and
a `given-up` for a fault no retry can fix), and a merge never writes into a job whose
shape it cannot read. Whatever ends the plan, its outcome event is strict JSON (a read's
NaN or 1e400 must not reach a subscriber as a literal no JSON parser accepts).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.events import build_event
from handlers.outcomes import Outcome, Write, mergeable
from handlers.plan import Done, Exchange, Job, next_step
from handlers.wire import BatchReply, Sent
from tests.unit.test_plan import LM_NEW, job_for, message

FIELD_NAMES = [
    "name",
    "value",
    "poolId",
    "autoPoolSpecification",
    "maxWallClockTime",
    "maxTaskRetryCount",
    "x",
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=3)
    ),
    max_leaves=10,
)
JOB_KEYS = [
    "priority", "maxParallelTasks", "allowTaskPreemption", "constraints", "poolInfo", "metadata",
    "onAllTasksComplete", "networkConfiguration", "state", "id", "maxWallClockTime",
]  # fmt: skip
job_bodies = st.dictionaries(st.sampled_from(JOB_KEYS), json_values, max_size=5)
UPDATES = [
    {"priority": 20},
    {"metadata": [{"name": "a", "value": "1"}]},
    {"constraints": {"maxTaskRetryCount": 3}},
    {"constraints": {"maxWallClockTime": "PT1H"}},
    {"poolInfo": {"poolId": "p"}},
    {"onAllTasksComplete": "terminatejob"},
    {"maxParallelTasks": 4},
]
MODES: dict[str, dict[str, Any]] = {
    "replace": {},
    "merge": {"mode": "merge"},
    "dry-run": {"options": {"dryRun": True}},
    "dry-run merge": {"mode": "merge", "options": {"dryRun": True}},
}


def strict_json(body: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in an outcome event")

    return json.loads(body, parse_constant=refuse)


def non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(non_finite(v) for v in value.values())
    return isinstance(value, list) and any(non_finite(v) for v in value)


def nested(depth: int) -> bytes:
    return b'{"id": "job-1", "networkConfiguration": ' + b'{"x": ' * depth + b"1" + b"}" * depth + b"}"


def run(job: Job, read_body: bytes, patch_status: int) -> tuple[Done, list[str]]:
    """Drive the plan: every GET gets `read_body`, every PATCH `patch_status`."""
    history: tuple[Exchange, ...] = ()
    methods: list[str] = []
    for _ in range(30):
        step = next_step(job, history)
        if isinstance(step, Done):
            return step, methods
        methods.append(step.request.method)
        if step.request.method == "GET":
            reply = BatchReply(200, "0x1", LM_NEW, "r", None, None, read_body)
        else:
            reply = BatchReply(patch_status, "0x2", LM_NEW, "r", None, None, b"")
        history = (*history, Exchange(step, Sent(reply, 1)))
    raise AssertionError(f"the plan did not end: {methods}")


@given(
    body=job_bodies,
    update=st.sampled_from(UPDATES),
    mode=st.sampled_from(sorted(MODES)),
    if_match=st.booleans(),
    patch_status=st.sampled_from([200, 204, 409, 412]),
)
@settings(max_examples=1500, deadline=None)  # deep bodies: a cold first run is slow, not wrong
def test_any_read_body_ends_the_plan_and_merge_never_writes_into_what_it_cannot_read(
    body: dict[str, Any], update: dict[str, Any], mode: str, if_match: bool, patch_status: int
) -> None:
    conditions = {"conditions": {"ifMatch": "0x1"}} if if_match else {}
    job = job_for(message(update=update, **MODES[mode], **conditions))
    read = json.dumps(body).encode()  # NaN and infinities as the literals json writes
    done, methods = run(job, read, patch_status)  # no exception: the plan decides every body
    strict_json(build_event(done.result, "m-1").body)
    if mode != "replace" and (non_finite(body) or ("merge" in mode and not mergeable(body))):
        # A read the plan cannot use: merge and dry-run read first, and stop there.
        assert methods == ["GET"]
        assert done.result.outcome is Outcome.failed and done.result.write is Write.none
        assert done.result.error is not None and done.result.error.code == "UnreadableJob"


@pytest.mark.parametrize(
    "metadata",
    [
        [{}],
        [None],
        ["a"],
        [{"name": "a"}],
        [{"value": "1"}],
        [{"name": ["a"], "value": "1"}],
        [{"name": 1, "value": 1}],
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_merge_read_with_malformed_metadata_is_failed_not_an_exception(
    metadata: list[Any], dry_run: bool
) -> None:
    options = {"options": {"dryRun": True}} if dry_run else {}
    job = job_for(message(mode="merge", update={"metadata": [{"name": "a", "value": "1"}]}, **options))
    done, methods = run(job, json.dumps({"id": "job-1", "metadata": metadata}).encode(), 200)
    assert methods == ["GET"]
    assert done.result.outcome is Outcome.failed
    assert done.result.error is not None and done.result.error.code == "UnreadableJob"


@pytest.mark.parametrize("mode", ["merge", "dry-run", "dry-run merge"])
@pytest.mark.parametrize(
    "body",
    [
        nested(300),
        nested(1500),
        b'{"id": "job-1", "priority": NaN}',
        b'{"priority": 1e400}',
        b'{"constraints": {"x": [1, {"y": -1e400}]}}',  # found only by walking into it
        b'{"metadata": [{"name": "a", "value": 1e400}]}',
    ],
)
def test_deep_or_non_finite_reads_are_unreadable_not_an_exception(mode: str, body: bytes) -> None:
    job = job_for(message(update={"priority": 20}, **MODES[mode]))
    done, methods = run(job, body, 200)
    assert methods == ["GET"]
    assert done.result.outcome is Outcome.failed
    assert done.result.error is not None and done.result.error.code == "UnreadableJob"
    strict_json(build_event(done.result, "m-1").body)


def test_a_read_nested_as_deep_as_the_parser_allows_is_still_read() -> None:
    job = job_for(message(mode="merge", update={"priority": 20}))
    done, methods = run(job, nested(198), 200)  # 200 levels with the outer two: the most it reads
    assert methods == ["GET", "PATCH"] and done.result.outcome is Outcome.applied


def test_a_read_with_a_byte_order_mark_is_read() -> None:
    job = job_for(message(mode="merge", update={"priority": 20}))
    done, methods = run(job, b'\xef\xbb\xbf{"id": "job-1", "priority": 1}', 200)
    assert methods == ["GET", "PATCH"] and done.result.outcome is Outcome.applied
    assert done.result.changes == {"priority": {"from": 1, "to": 20}}


def test_well_formed_metadata_still_merges_by_name() -> None:
    job = job_for(message(mode="merge", update={"metadata": [{"name": "a", "value": "2"}]}))
    read = {"id": "job-1", "metadata": [{"name": "a", "value": "1"}, {"name": "b", "value": "x"}]}
    done, methods = run(job, json.dumps(read).encode(), 200)
    assert methods == ["GET", "PATCH"] and done.result.outcome is Outcome.applied
    assert done.result.changes == {
        "metadata": {
            "from": read["metadata"],
            "to": [{"name": "a", "value": "2"}, {"name": "b", "value": "x"}],
        }
    }
