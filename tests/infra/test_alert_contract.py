"""The Batch-throttling log alert (infra/app/alerts.bicep) matches the handler's log line.

The alert's KQL looks for `httpStatus=429` in the message of the one line the handler
logs per delivery (handlers/handler.py). If that format changes, the alert goes
silent: this test fails instead. Stdlib only.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "infra" / "app" / "alerts.bicep"


def _kql_message_regex() -> re.Pattern[str]:
    text = ALERTS.read_text(encoding="utf-8")
    match = re.search(r"message matches regex @'([^']*)'", text)
    assert match, "alerts.bicep: the throttle query no longer matches on `message`"
    return re.compile(match.group(1))  # RE2 and Python re agree on this small pattern


def _handler_log_formats() -> list[str]:
    """printf-style string literals in handlers/ that log an httpStatus."""
    formats: list[str] = []
    for path in sorted((REPO / "handlers").glob("*.py")):
        formats += re.findall(r'"([^"\n]*httpStatus=%[sd][^"\n]*)"', path.read_text(encoding="utf-8"))
    return formats


def test_handler_logs_http_status_as_key_value() -> None:
    assert _handler_log_formats(), "no `httpStatus=%s` log format left in handlers/: update alerts.bicep"


def test_alert_regex_matches_a_throttled_line_and_nothing_else() -> None:
    regex = _kql_message_regex()
    for fmt in _handler_log_formats():
        rendered = {
            status: re.sub(r"%[-0-9.]*[sdf]", "x", fmt.replace("httpStatus=%s", f"httpStatus={status}"))
            for status in ("429", "200", "4290", "None")
        }
        assert regex.search(rendered["429"]), rendered["429"]
        for status in ("200", "4290", "None"):
            assert not regex.search(rendered[status]), rendered[status]
