from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from handlers.settings import Settings, sessions_enabled_from_env

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "BATCH_ALLOWED_ENDPOINTS": "https://acct.westeurope.batch.azure.com, https://localhost:8443",
    "BATCH_ALLOW_EMULATOR": "true",
    "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    return Settings()  # type: ignore[call-arg]


def test_settings_read_the_app_setting_names(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        JOB_UPDATES_QUEUE="q",
        BATCH_DEFAULT_ENDPOINT="https://localhost:8443/",
        JOB_UPDATES_MAX_DELIVERY_COUNT="7",
    )
    assert s.job_updates_queue == "q"
    assert s.max_delivery_count == 7
    assert s.allowed_endpoints == {"https://acct.westeurope.batch.azure.com", "https://localhost:8443"}
    assert s.endpoint_when_unnamed == "https://localhost:8443"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BATCH_ALLOWED_ENDPOINTS": "https://example.com"}, "not a Batch account endpoint"),
        ({"BATCH_ALLOWED_ENDPOINTS": ""}, "at least one"),
        ({"BATCH_DEFAULT_ENDPOINT": "https://b.westeurope.batch.azure.com"}, "must be one of"),
        ({"BATCH_AUTH_MODE": "sharedkey"}, "BATCH_ACCOUNT_KEY"),
        ({"ServiceBusConnection__fullyQualifiedNamespace": ""}, "ServiceBusConnection"),
        ({"BATCH_ALLOW_EMULATOR": "false"}, "BATCH_ALLOW_EMULATOR"),
        ({"BATCH_RETRY_BUDGET_SECONDS": "600"}, "less than or equal to 240"),
    ],
)
def test_bad_settings_fail_at_start_with_the_setting_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        settings(monkeypatch, **env)


def test_sessions_flag_from_env() -> None:
    assert sessions_enabled_from_env({}) is False
    assert sessions_enabled_from_env({"JOB_UPDATES_SESSIONS_ENABLED": "true"}) is True


def test_setting_errors_do_not_echo_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(
            monkeypatch,
            BATCH_AUTH_MODE="sharedkey",
            BATCH_ACCOUNT_NAME="a",
            BATCH_ACCOUNT_KEY="c2VjcmV0LWtleQ==",
            BATCH_RETRY_BUDGET_SECONDS="-1",
        )
    assert "c2VjcmV0LWtleQ" not in str(caught.value)
