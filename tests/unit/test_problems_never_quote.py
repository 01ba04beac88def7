"""Problem texts are ours: a bad value is never quoted back (docs/outcome-events.md).

A producer's value can be anything, a secret included; the `rejected` event names
the JSON path and what the value should have been, never the value itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.contract import parse_message
from handlers.errors import InvalidMessage

# A marker no fixed text contains, then anything printable: every draw is a bad value.
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=40).map(
    lambda tail: "ZQXsecret" + tail
)

PLACES: dict[str, Any] = {
    "maxWallClockTime": lambda v: {"update": {"constraints": {"maxWallClockTime": v}}},
    "ifMatch": lambda v: {"update": {"priority": 1}, "conditions": {"ifMatch": v + " "}},
    "ifNoneMatch": lambda v: {"update": {"priority": 1}, "conditions": {"ifNoneMatch": v + " "}},
    "ifModifiedSince": lambda v: {"update": {"priority": 1}, "conditions": {"ifModifiedSince": v}},
    "ifUnmodifiedSince": lambda v: {"update": {"priority": 1}, "conditions": {"ifUnmodifiedSince": v}},
}


@pytest.mark.parametrize("place", sorted(PLACES))
@given(value=VALUES)
def test_a_bad_value_is_refused_without_being_quoted(place: str, value: str) -> None:
    body = {"schemaVersion": "1.0", "jobId": "j1", **PLACES[place](value)}
    with pytest.raises(InvalidMessage) as refused:
        parse_message(json.dumps(body).encode())
    assert refused.value.problems, "refused with no problem listed"
    for problem in refused.value.problems:
        assert "ZQX" not in problem.message, problem
        assert "ZQX" not in problem.path, problem
