"""The fault matrix's accounting checker catches each kind of broken promise.

The matrix itself (tests/e2e/test_fault_matrix.py) only ever shows the checker
clean books; these cases show it the broken ones, so a checker that passes
everything fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.accounting import BatchCall, DeadLetter, SentMessage, reconcile

MESSAGE = SentMessage("m1", "job-1", {"jobId": "job-1", "update": {"priority": 5}})
CRID = "crid-1"


def event(outcome: str, message_id: str = "m1", **data: Any) -> dict[str, Any]:
    return {
        "type": f"dev.batchjobupdate.job.{outcome}",
        "sourcemessageid": message_id,
        "data": {"outcome": outcome, "clientRequestId": CRID, **data},
    }


def patch(status: int | None, crid: str = CRID) -> BatchCall:
    return BatchCall("PATCH", "job-1", crid, status)


def books(
    events: list[dict[str, Any]],
    calls: list[BatchCall] | None = None,
    dead: list[DeadLetter] | None = None,
    job: dict[str, Any] | None = None,
    left: int = 0,
) -> Any:
    return reconcile(
        [MESSAGE],
        calls or [],
        events,
        dead or [],
        {"job-1": job if job is not None else {"id": "job-1", "priority": 5}},
        left_on_queue=left,
    )


def test_a_true_applied_outcome_is_clean() -> None:
    ledger = books([event("applied", write="this-delivery")], [patch(503), patch(200)])
    assert ledger.clean
    assert ledger.summary()["outcomes"] == {"applied": 1}


def test_a_message_without_an_event_is_lost() -> None:
    ledger = books([])
    assert ledger.lost == ("m1",)
    assert not ledger.clean


def test_two_outcomes_for_one_message_are_duplicates() -> None:
    ledger = books([event("applied", write="this-delivery"), event("failed")], [patch(200)])
    assert ledger.duplicates == ("m1",)


def test_an_event_for_a_message_nobody_sent_is_untruthful() -> None:
    ledger = books(
        [event("applied", write="this-delivery"), event("failed", message_id="ghost")], [patch(200)]
    )
    assert any(p.startswith("ghost:") for p in ledger.untruthful)


@pytest.mark.parametrize("write", ["this-delivery", "earlier-delivery"])
def test_claiming_a_write_that_batch_never_accepted(write: str) -> None:
    ledger = books([event("applied", write=write)], [patch(412), patch(200, crid="someone-else")])
    assert ledger.untruthful == (f"m1: write={write} but no PATCH of this message was answered 2xx",)


@pytest.mark.parametrize("outcome", ["failed", "precondition-failed", "rejected", "dry-run"])
def test_an_outcome_that_says_nothing_was_written_after_a_write(outcome: str) -> None:
    ledger = books([event(outcome)], [patch(200)])
    assert len(ledger.untruthful) == 1 and "answered 2xx" in ledger.untruthful[0]


def test_a_failed_condition_with_a_landed_write() -> None:
    ledger = books([event("applied", write="none", conditionsMet=False, inPlace=True)], [patch(200)])
    assert "m1: conditionsMet=false but a PATCH of this message was answered 2xx" in ledger.untruthful


def test_applied_but_the_job_does_not_hold_the_value() -> None:
    ledger = books(
        [event("applied", write="this-delivery")], [patch(200)], job={"id": "job-1", "priority": 1}
    )
    assert ledger.untruthful == ("m1: applied, but the job's priority is 1, not 5",)


def test_given_up_must_be_dead_lettered_and_the_dead_letter_must_have_its_event() -> None:
    not_dead = books([event("given-up")])
    assert not_dead.untruthful == ("m1: given-up but the message is not on the dead-letter queue",)
    silent = books([event("applied", write="this-delivery")], [patch(200)], dead=[DeadLetter("m1", "x")])
    assert silent.dead_lettered_without_event == ("m1",)
    both = books([event("given-up")], dead=[DeadLetter("m1", "MaxDeliveryCountExceeded")])
    assert both.clean and both.dead_lettered == 1


def test_an_envelope_type_that_contradicts_the_outcome() -> None:
    wrong = event("failed")
    wrong["type"] = "dev.batchjobupdate.job.applied"
    assert "does not match outcome" in books([wrong]).untruthful[0]


def test_messages_left_on_the_queue_are_not_clean() -> None:
    ledger = books([event("applied", write="this-delivery")], [patch(200)], left=1)
    assert not ledger.clean and ledger.summary()["leftOnQueue"] == 1


def test_a_reset_connection_is_no_write() -> None:
    ledger = books([event("failed")], [patch(None)])
    assert ledger.clean
