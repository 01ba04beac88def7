"""Lineage read from application properties a producer controls, then used by the plan.

`jobUpdate.*` properties are ours on copies, but any producer can set them on any
message. Whatever they hold (our names with the worst values, ids that do or do not
match the derived copy ids, dates at the calendar's ends), reading them never raises,
what comes out is bounded, and the plan's decisions over it (retry or give up, the
dead-letter text) never raise either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.lineage import (
    ATTEMPTS,
    COPY,
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    MAX_COPIES_CEILING,
    ORIGINAL_ENQUEUED_TIME,
    ORIGINAL_MESSAGE_ID,
    copy_message_id,
    dead_letter_message_id,
    lineage_of,
)
from handlers.outcomes import Outcome, Result
from handlers.plan import Inbound, Settle, dead_letter_reason, internal_error
from tests.unit.test_lineage_and_copies import FIRST, POLICY

NOW = FIRST + timedelta(minutes=5)
originals = st.one_of(st.just("m-1"), st.text(max_size=140), st.integers(), st.none(), st.binary(max_size=8))
worst = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2026-01-01T12:00:00",
            "2026-13-01T00:00:00Z",
            "x" * 5000,
            "\x00",
        ]
    ),
)
ours = st.fixed_dictionaries(
    {},
    optional={
        ORIGINAL_MESSAGE_ID: originals,
        COPY: st.one_of(st.integers(-2, MAX_COPIES_CEILING + 2), worst),
        ATTEMPTS: st.one_of(st.integers(-2, 2**32), worst),
        ORIGINAL_ENQUEUED_TIME: worst,
        DEAD_LETTER_REASON: worst,
        DEAD_LETTER_DESCRIPTION: worst,
    },
)
# Which id the message carries: one that matches the derived copy / dead-letter id
# (reaching the branches that trust the properties), or any other.
id_kinds = st.sampled_from(["copy", "dead-letter", "other"])


@given(props=ours, extra=st.dictionaries(st.text(max_size=10), worst, max_size=3), kind=id_kinds)
@settings(max_examples=1000)
def test_any_lineage_properties_read_bounded_and_the_plan_decides_over_them(
    props: dict[str, Any], extra: dict[str, Any], kind: str
) -> None:
    original = props.get(ORIGINAL_MESSAGE_ID)
    copy = props.get(COPY)
    message_id = "m-other"
    if isinstance(original, str) and original:
        if kind == "copy" and isinstance(copy, int) and not isinstance(copy, bool) and copy >= 1:
            message_id = copy_message_id(original, copy)
        elif kind == "dead-letter":
            message_id = dead_letter_message_id(original)
    lineage = lineage_of(message_id, FIRST, {**extra, **props})

    assert 0 <= lineage.copy <= MAX_COPIES_CEILING
    assert 0 <= lineage.attempts <= 2**31
    assert len(lineage.original_id) <= 128 or lineage.original_id == message_id
    if lineage.dead_letter is not None:
        reason, description = lineage.dead_letter
        assert 0 < len(reason) <= 1024 and len(description) <= 4096
    if lineage.original_enqueued_at is not None:
        assert lineage.original_enqueued_at.tzinfo is not None

    body = json.dumps({"schemaVersion": "1.0", "jobId": "job-1", "update": {"priority": 1}}).encode()
    for delivery in (1, POLICY.max_delivery_count):
        inbound = Inbound(body, lineage.original_id, delivery, lineage.original_enqueued_at, lineage.copy)
        done = internal_error(inbound, POLICY, ValueError("x"), NOW)  # never raises, whatever it read
        if delivery == POLICY.max_delivery_count:  # the last delivery gives up, whatever the copy says
            assert done.settle is Settle.give_up
        elif done.settle is Settle.reschedule:  # a copy is only scheduled within the copies' limits
            assert lineage.copy < POLICY.copies.max_copies  # type: ignore[union-attr]
        reason, description = dead_letter_reason(
            Result(Outcome.given_up, job_id="job-1"), inbound, NOW, lineage.attempts
        )
        assert reason and description.startswith("given up")


def test_a_forged_copy_number_without_the_derived_id_is_an_original() -> None:
    props = {ORIGINAL_MESSAGE_ID: "m-1", COPY: 49, ATTEMPTS: 10**6}
    lineage = lineage_of("m-forged", FIRST, props)
    assert (lineage.original_id, lineage.copy, lineage.attempts) == ("m-forged", 0, 0)


def test_dates_at_the_calendars_ends_do_not_break_the_budget() -> None:
    for when in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        props = {ORIGINAL_MESSAGE_ID: "m-1", COPY: 1, ORIGINAL_ENQUEUED_TIME: when}
        lineage = lineage_of(copy_message_id("m-1", 1), FIRST, props)
        assert lineage.original_enqueued_at == datetime.fromisoformat(when)
        inbound = Inbound(b"{}", "m-1", 1, lineage.original_enqueued_at, 1)
        done = internal_error(inbound, POLICY, ValueError("x"), datetime.now(UTC))
        # Enqueued "in year 1": the budget is long spent. "In 9999": nothing waited yet.
        assert done.settle is (Settle.give_up if when.startswith("0001") else Settle.reschedule)
