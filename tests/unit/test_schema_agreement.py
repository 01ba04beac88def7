"""The message schema and the validator agree, in both directions.

- Drawn from docs/job-update.schema.json, at least 99 % of bodies are accepted by the
  validator (the rest break rules JSON Schema cannot say: docs/message-contract.md).
- Everything the validator accepts validates against the schema: every sample here,
  and every message any test gets accepted (tests/conftest.py checks each one).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema import Draft202012Validator

from handlers.contract import json_schema, parse_message
from handlers.errors import InvalidMessage
from tests.conftest import MESSAGE_SCHEMA, OUTCOME_SCHEMA, schema_errors
from tests.schema_strategies import draws

ROOT = Path(__file__).resolve().parents[2]
DRAWS = 2000


def test_the_published_schemas_are_valid_2020_12_schemas() -> None:
    Draft202012Validator.check_schema(MESSAGE_SCHEMA.schema)
    Draft202012Validator.check_schema(OUTCOME_SCHEMA.schema)


def test_bodies_drawn_from_the_schema_are_accepted() -> None:
    refused: list[tuple[Any, list[str]]] = []
    seen = 0

    @settings(
        max_examples=DRAWS,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(draws(json_schema()))
    def draw(body: Any) -> None:
        nonlocal seen
        seen += 1
        try:
            parse_message(json.dumps(body))
        except InvalidMessage as invalid:
            refused.append((body, [f"{p.path} {p.code}" for p in invalid.problems]))

    draw()
    assert seen >= DRAWS * 0.95  # hypothesis may stop a little early on exhausted branches
    why = Counter(problem for _, problems in refused for problem in problems)
    assert len(refused) <= seen // 100, (
        f"{len(refused)} of {seen} refused: {why.most_common(5)} {refused[:2]}"
    )


@pytest.mark.parametrize("sample", sorted((ROOT / "samples").glob("*.json")), ids=lambda p: p.name)
def test_samples_agree_with_the_schema(sample: Path) -> None:
    body = sample.read_bytes()
    errors = schema_errors(MESSAGE_SCHEMA, json.loads(body))
    if sample.name.startswith("invalid"):
        assert errors  # the schema refuses what the validator refuses
        with pytest.raises(InvalidMessage):
            parse_message(body)
    else:
        assert errors == []
        parse_message(body)


# (A trailing newline is not here: the schema's `$` is ECMA-262's end of input, which
# Python's jsonschema reads as Python's `$`; the validator refuses it either way.)
@pytest.mark.parametrize(
    "body",
    [
        {"schemaVersion": "1.0", "jobId": "j"},  # nothing to change
        {"schemaVersion": "1.0", "update": {"priority": 1}},  # no job
        {
            "schemaVersion": "1.0",
            "jobId": "j",
            "jobUrl": "https://a.b.batch.azure.com/jobs/j",
            "update": {"priority": 1},
        },
        {
            "schemaVersion": "1.0",
            "jobUrl": "https://a.b.batch.azure.com/jobs/j",
            "endpoint": "https://a.b.batch.azure.com",
            "update": {"priority": 1},
        },
        {
            "schemaVersion": "1.0",
            "jobId": "j",
            "mode": "MERGE",
            "update": {"priority": 1},
            "conditions": {"ifNoneMatch": "x"},
        },
        {
            "schemaVersion": "1.0",
            "jobId": "j",
            "update": {"priority": 1},
            "conditions": {"ifMatch": "x", "ifNoneMatch": "y"},
        },
        {"schemaVersion": "1.0", "jobId": "j", "update": {"maxParallelTasks": 0}},
        {"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, "conditions": {"ifMatch": "W/abc"}},
        {"schemaVersion": "1.0", "jobId": "j", "update": {"constraints": {"maxWallClockTime": "P10000000D"}}},
        {
            "schemaVersion": "1.0",
            "jobId": "j",
            "update": {"poolInfo": {"autoPoolSpecification": {"pool": {"a": None}}}},
        },
        {
            "schemaVersion": "1.0",
            "jobId": "j",
            "update": {"priority": 1},
            "options": {"ocpDate": "2025-02-30T00:00:00Z"},
        },
    ],
)
def test_cross_field_and_format_rules_are_in_the_schema_too(body: dict[str, Any]) -> None:
    assert schema_errors(MESSAGE_SCHEMA, body)
    with pytest.raises(InvalidMessage):
        parse_message(json.dumps(body))
