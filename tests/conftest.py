"""Every message the validator accepts in any test, and every outcome event any test
builds, must validate against the published JSON Schemas (docs/*.schema.json) with a
standard validator: the schemas are checked against all the examples the suite has."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator

import handlers.events
from handlers.contract import JobUpdateMessage

# CI (.ci/run) runs the property tests derandomized: the same examples on every run, so
# a red CI is the change's doing and reproduces anywhere, and with no deadline, so a
# loaded machine cannot fail a test on time (speed is measured in bench/). A developer's
# run (the README's command) explores fresh examples each time. Loaded only when asked:
# the mutation runs bring their own profile (tests/mutation/_profile.py).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
if "HYPOTHESIS_PROFILE" in os.environ:
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

DOCS = Path(__file__).resolve().parents[1] / "docs"
MESSAGE_SCHEMA = Draft202012Validator(json.loads((DOCS / "job-update.schema.json").read_text()))
OUTCOME_SCHEMA = Draft202012Validator(json.loads((DOCS / "outcome.schema.json").read_text()))


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message[:200]}"
        for e in validator.iter_errors(instance)
    ]


@pytest.fixture(autouse=True)
def _published_schemas_describe_what_the_code_does(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    accepted: list[str | bytes] = []
    events: list[dict[str, Any]] = []
    validate_json = JobUpdateMessage.model_validate_json
    build_data = handlers.events.event_data

    def recording_validate(data: str | bytes, **kwargs: Any) -> JobUpdateMessage:
        message = validate_json(data, **kwargs)
        accepted.append(data)
        return message

    def recording_data(*args: Any, **kwargs: Any) -> dict[str, Any]:
        data = build_data(*args, **kwargs)
        events.append(data)
        return data

    monkeypatch.setattr(JobUpdateMessage, "model_validate_json", recording_validate)
    monkeypatch.setattr(handlers.events, "event_data", recording_data)
    yield
    for body in accepted:
        errors = schema_errors(MESSAGE_SCHEMA, json.loads(body))
        assert not errors, f"accepted but outside docs/job-update.schema.json: {body!r}: {errors}"
    for data in events:
        errors = schema_errors(OUTCOME_SCHEMA, data)
        assert not errors, f"event data outside docs/outcome.schema.json: {data}: {errors}"
