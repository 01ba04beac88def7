"""The log alerts in infra/app/alerts.bicep query what the handler actually emits.

Alerts 3 (Batch throttling) and 4 (publish failures) read the handler's OpenTelemetry
metrics from App Insights' `customMetrics` table. The names they filter on (metric
name, attribute name, attribute value) must be the ones handlers/telemetry.py defines
and records, or the alert goes silent: this test fails instead.

Stdlib only (it runs in the infra venv too): handlers/telemetry.py is loaded from its
path; its top-level imports are stdlib plus handlers/redaction.py (also stdlib).
tests/unit/test_telemetry.py drives the real handler and checks that the points these
queries select are really emitted.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "infra" / "app" / "alerts.bicep"


def load_telemetry() -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # for `handlers.redaction`
    spec = importlib.util.spec_from_file_location("_telemetry_names", REPO / "handlers" / "telemetry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class MetricQuery:
    """What one `customMetrics` alert query selects."""

    variable: str
    metric: str
    dimensions: dict[str, str]  # customDimensions["k"] == "v"
    measure: str  # the projected column the rule sums


_QUERY = re.compile(r"var (\w+) = '''\n(.*?)'''", re.DOTALL)
_NAME = re.compile(r'\|\s*where name == "([^"]+)"')
_DIMENSION = re.compile(r'tostring\(customDimensions\["([^"]+)"\]\) == "([^"]*)"')
_MEASURE = re.compile(r"\|\s*project timestamp, (\w+) = valueSum\s*$")


def alert_queries(text: str | None = None) -> list[MetricQuery]:
    text = ALERTS.read_text(encoding="utf-8") if text is None else text
    queries = []
    for variable, kql in _QUERY.findall(text):
        lines = [line.strip() for line in kql.strip().splitlines()]
        assert lines[0] == "customMetrics", f"{variable}: alerts read metrics, not log text: {lines[0]!r}"
        names = _NAME.findall(kql)
        assert len(names) == 1, f"{variable}: one metric name per query, found {names}"
        measure = _MEASURE.search(kql.strip())
        assert measure, f"{variable}: no `| project timestamp, <column> = valueSum`"
        queries.append(MetricQuery(variable, names[0], dict(_DIMENSION.findall(kql)), measure.group(1)))
    return queries


def test_every_log_alert_queries_metrics_and_none_parses_log_lines() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    assert "matches regex" not in text and "message" not in _queries_text(text)
    assert {q.variable for q in alert_queries(text)} == {"throttleQuery", "publishFailureQuery"}


def _queries_text(text: str) -> str:
    return "\n".join(kql for _, kql in _QUERY.findall(text))


def test_alert_queries_use_the_telemetry_modules_names() -> None:
    telemetry = load_telemetry()
    for query in alert_queries():
        assert query.metric in telemetry.METRIC_ATTRIBUTES, query
        assert set(query.dimensions) <= telemetry.METRIC_ATTRIBUTES[query.metric], query


def test_the_throttle_alert_counts_429_responses() -> None:
    telemetry = load_telemetry()
    (throttle,) = [q for q in alert_queries() if q.variable == "throttleQuery"]
    assert throttle.metric == telemetry.METRIC_BATCH_RESPONSES
    assert throttle.dimensions == {telemetry.ATTR_HTTP_STATUS: str(telemetry.THROTTLED_STATUS)}
    (publish,) = [q for q in alert_queries() if q.variable == "publishFailureQuery"]
    assert (publish.metric, publish.dimensions) == (telemetry.METRIC_PUBLISH_FAILURES, {})


def test_each_rule_sums_the_column_its_query_projects() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    for query in alert_queries(text):
        rule = re.search(
            r"query: " + query.variable + r"\n\s*timeAggregation: '(\w+)'\n\s*metricMeasureColumn: '(\w+)'",
            text,
        )
        assert rule, f"no rule uses {query.variable} with a measure column"
        assert rule.groups() == ("Total", query.measure)


def test_the_parser_refuses_what_would_go_silent() -> None:
    """Mutations: a renamed metric or dimension, and a query back on log text, are caught."""
    telemetry = load_telemetry()
    good = ALERTS.read_text(encoding="utf-8")
    renamed = good.replace('"jobupdate.batch.responses"', '"jobupdate.batch.response"')
    assert any(q.metric not in telemetry.METRIC_ATTRIBUTES for q in alert_queries(renamed))
    dimension = good.replace(
        'customDimensions["http.response.status_code"]', 'customDimensions["httpStatus"]'
    )
    assert any(
        not set(q.dimensions) <= telemetry.METRIC_ATTRIBUTES[q.metric] for q in alert_queries(dimension)
    )
    logs = good.replace("customMetrics\n| where name ==", "traces\n| where name ==", 1)
    try:
        alert_queries(logs)
    except AssertionError:
        pass
    else:
        raise AssertionError("a query on `traces` was accepted")
