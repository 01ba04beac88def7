"""The adversarial message-path suite, CI size: 10,300 generated cases (tests/fuzz).

Valid bodies drawn from docs/job-update.schema.json, mutated (tests/fuzz/strategies.py),
each meeting a scripted Batch; the properties are tests/fuzz/properties.py, which the
soak (`python -m tests.fuzz --cases N`) runs too.

Settings: `derandomize=True`, so CI runs the same cases every time (a red build
replays exactly; finding new ground is the soak's job, with a fresh seed each run);
`database=None`, since a derandomized run re-finds its own failures and nothing is
written under the repository; no deadline (timing is bench/'s business).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import properties as props
from tests.fuzz.strategies import Case, cases, corpus

CORPUS_SIZE, CORPUS_SEED = 100, 20261201
# Cases per property: 3,000 + 3,000 + 3,000 + 1,000 + 300 = 10,300.
HANDLER_CASES = PLAN_CASES = CHECK_CASES = 3000
IDENTITY_CASES = 1000
CLI_CASES = 300


def ci(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        # Huge and deep bodies are the point here, and they take a few ms to build.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture(scope="module")
def bodies() -> tuple[Any, ...]:
    return corpus(CORPUS_SIZE, CORPUS_SEED)


def _holds(findings: props.Findings, case: Case) -> None:
    assert not findings, {**case.describe(), **findings.as_dict()}


def test_the_handler_ends_every_message_in_exactly_one_outcome(bodies: tuple[Any, ...]) -> None:
    """a. One event (or the documented RetryLater), nothing else raised or swallowed;
    b. nothing Batch would refuse is sent, nothing at all for a rejected message;
    and the handler sends what the plan says."""

    @ci(HANDLER_CASES)
    @given(cases(bodies))
    def check(case: Case) -> None:
        _holds(props.handler_property(case), case)

    check()


def test_nothing_invalid_reaches_batch(bodies: tuple[Any, ...]) -> None:
    """b. (and a. for the plan) admit + next_step, driven as the handler drives them."""

    @ci(PLAN_CASES)
    @given(cases(bodies))
    def check(case: Case) -> None:
        _holds(props.plan_property(case), case)

    check()


def test_check_and_the_function_agree(bodies: tuple[Any, ...]) -> None:
    """c. Same verdict and the same problem paths and codes, for every body."""

    @ci(CHECK_CASES)
    @given(cases(bodies))
    def check(case: Case) -> None:
        _holds(props.check_property(case), case)

    check()


def test_salvaging_ids_for_a_rejected_event_never_raises(bodies: tuple[Any, ...]) -> None:
    @ci(IDENTITY_CASES)
    @given(cases(bodies))
    def check(case: Case) -> None:
        _holds(props.identity_property(case), case)

    check()


def test_the_check_command_agrees_with_the_function(bodies: tuple[Any, ...], tmp_path: Path) -> None:
    """c. through the whole command: file read, JSON Lines detection, exit code."""

    @ci(CLI_CASES)
    @given(cases(bodies))
    def check(case: Case) -> None:
        _holds(props.check_cli_property(case, tmp_path), case)

    check()


def test_check_builds_the_function_s_policy_from_the_same_settings() -> None:
    """c. rests on this: both read the allow-list, default endpoint, API version and
    merge rounds from the same app settings through their own code paths."""
    function, check = props.FUNCTION_POLICY, props.CHECK_POLICY
    assert (check.allowed_endpoints, check.default_endpoint, check.api_version, check.merge_max_rounds) == (
        function.allowed_endpoints,
        function.default_endpoint,
        function.api_version,
        function.merge_max_rounds,
    )
