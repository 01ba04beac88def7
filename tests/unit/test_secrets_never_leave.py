"""Canary secrets in every place a job update can carry one never reach an event or a log.

The places and the scenarios live in tests/leaks/canaries.py (shared with `python -m
tests.leaks`): a canary in each secret-bearing property of an auto-pool specification
(the swagger's `x-ms-secret` ones and the credential-bearing fields beside them) and in
metadata connection strings, through the real handler loop (httpx over MockTransport)
into every outcome: applied (replace, merge), dry run (replace, merge), failed (Batch
echoing the body; a huge echo cut across a secret; a stored job's secrets quoted back),
precondition-failed, given-up (echo; a transport error quoting the body), a transient
retry, rejected (a bad field, an endpoint off the list, userinfo, a SAS on jobUrl).
A leak is any 10 characters of a canary in an event or a log record of any level.
"""

from __future__ import annotations

import logging

import pytest

import handlers.events
from tests.leaks.canaries import Scenario, canary, canary_update, leaked_in, run_scenario, scenarios

SCENARIOS = scenarios()
# The properties the 2025-06-01 swagger marks `x-ms-secret`, by canary place.
X_MS_SECRET = ("azureFileShare.accountKey", "blobfuse.accountKey", "blobfuse.sasKey")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_canaries_stay_out_of_events_and_logs(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = await run_scenario(scenario)
    assert result.outcome == scenario.outcome
    assert result.leaks == []
    assert [place for place, c in result.canaries.items() if leaked_in(c, caplog.text)] == []
    if scenario.message.get("mode") != "merge":  # a merge sends only what differs from the job
        assert result.sent_all  # the canaries are real: what Batch got carried them whole


def test_every_outcome_and_every_secret_place_is_covered() -> None:
    outcomes = {s.outcome for s in SCENARIOS}
    assert outcomes == {
        "applied",
        "dry-run",
        "failed",
        "precondition-failed",
        "given-up",
        "rejected",
        "transient",
    }
    _, places = canary_update()
    assert set(X_MS_SECRET) <= set(places)
    for group in (
        "userAccounts.",
        "registry.",
        "cifs.",
        "nfs.",
        "resourceFile.",
        "startTask.",
        "metadata.",
        "extension.",
        "settings.",
        "identityReference",
    ):
        assert any(group in place for place in places), group
    assert len(set(places.values())) == len(places)  # unique: a leak names its place


async def test_the_check_sees_a_leak_when_the_allow_list_of_event_values_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sensitivity: with the pool shown as sent, the same scenario must report the canaries.
    monkeypatch.setattr(handlers.events, "public_changes", lambda changes: changes)
    applied = next(s for s in SCENARIOS if s.name == "applied-replace")
    result = await run_scenario(applied)
    leaked = {leak.split(" in ")[0] for leak in result.leaks}
    assert {"userAccounts.password", "blobfuse.sasKey", "metadata.plain"} <= leaked


def test_a_cut_off_prefix_counts_as_a_leak() -> None:
    secret = canary("x")
    assert leaked_in(secret, "... " + secret[:12])
    assert not leaked_in(secret, "... " + secret[:9])
