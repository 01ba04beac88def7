"""The local host loop reads the host.json settings it claims to honour."""

from __future__ import annotations

import json
from pathlib import Path

from standins.functions_host import HostOptions

ROOT = Path(__file__).resolve().parents[2]


def test_host_json_settings_reach_the_loop() -> None:
    sb = json.loads((ROOT / "host.json").read_text())["extensions"]["serviceBus"]
    options = HostOptions.from_host_json(ROOT / "host.json")
    assert options.max_concurrent_calls == sb["maxConcurrentCalls"]
    assert options.max_concurrent_sessions == sb["maxConcurrentSessions"]
    assert sb["sessionIdleTimeout"] == "00:00:30"
    assert options.session_idle_timeout_seconds == 30.0
    assert options.max_auto_lock_renewal_seconds == 300.0


def test_overrides_win_and_defaults_follow_the_host(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": {"serviceBus": {}}}))
    assert HostOptions.from_host_json(path).session_idle_timeout_seconds == 60.0  # the host's default
    assert (
        HostOptions.from_host_json(path, session_idle_timeout_seconds=1.0).session_idle_timeout_seconds == 1.0
    )


def test_client_retry_options_come_from_host_json(tmp_path: Path) -> None:
    sb = json.loads((ROOT / "host.json").read_text())["extensions"]["serviceBus"]["clientRetryOptions"]
    retry = HostOptions.from_host_json(ROOT / "host.json").client_retry
    assert retry.mode == sb["mode"].lower() == "exponential"
    assert retry.max_retries == sb["maxRetries"]
    assert (retry.delay_seconds, retry.max_delay_seconds, retry.try_timeout_seconds) == (0.8, 30.0, 60.0)
    assert retry.client_kwargs() == {
        "retry_mode": "exponential",
        "retry_total": sb["maxRetries"],
        "retry_backoff_factor": 0.8,
        "retry_backoff_max": 30.0,
        "try_timeout": 60.0,
    }
    # Absent: the host's defaults (ServiceBusRetryOptions), not the Python SDK's (120 s max delay).
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": {"serviceBus": {}}}))
    assert HostOptions.from_host_json(path).client_retry.max_delay_seconds == 60.0
