from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from handlers.__main__ import main
from handlers.contract import json_schema
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


def test_checked_in_schema_is_current() -> None:
    checked_in = json.loads((ROOT / "docs" / "job-update.schema.json").read_text())
    assert checked_in == json_schema(), "docs/job-update.schema.json is stale: run python -m handlers schema"


def test_samples_are_valid_except_the_invalid_one(capsys: pytest.CaptureFixture[str]) -> None:
    for sample in sorted((ROOT / "samples").glob("*.json")):
        code = main(["check", str(sample)])
        out = json.loads(capsys.readouterr().out)
        assert code == (1 if sample.name.startswith("invalid") else 0), sample.name
        assert out["valid"] is (code == 0)


def test_check_prints_the_exact_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "samples" / "conditional-stale-etag.json")]) == 0
    request = json.loads(capsys.readouterr().out)["requests"][0]
    assert request["method"] == "PATCH"
    assert request["url"].endswith("/jobs/etl-daily?api-version=2025-06-01")
    assert request["headers"]["If-Match"] == '"0x8D0000000000000"'
    assert "Authorization" not in request["headers"]
    assert request["body"] == {"priority": 100}


def test_check_reads_json_lines_from_stdin_and_fails_on_any_invalid() -> None:
    lines = (
        b'{"schemaVersion":"1.0","jobId":"a","update":{"priority":1}}\n{"schemaVersion":"1.0","jobId":"b"}\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "handlers", "check", "-"],
        input=lines,
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout.count(b'"valid": true') == 1
    assert b"empty_update" in proc.stdout


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


def test_check_applies_the_allow_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            {
                "schemaVersion": "1.0",
                "jobId": "j",
                "endpoint": "https://evil.example.com",
                "update": {"priority": 1},
            }
        )
    )
    assert main(["check", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["problems"][0]["code"] == "endpoint_not_allowed"
    path.write_text(
        json.dumps(
            {
                "schemaVersion": "1.0",
                "jobId": "j",
                "endpoint": "https://b.westeurope.batch.azure.com",
                "update": {"priority": 1},
            }
        )
    )
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", str(path), "--allowed-endpoints", "https://a.westeurope.batch.azure.com"]) == 1


def test_check_reports_a_broken_pretty_printed_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.json"
    path.write_text('{\n  "schemaVersion": "1.0",\n  "jobId": "j",\n  "update": {"priority": 1,}\n}\n')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count('"valid": false') == 1
    assert "json_invalid" in out


def test_check_labels_the_merge_body(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "samples" / "merge-one-constraint.json")]) == 0
    get, patch = json.loads(capsys.readouterr().out)["requests"]
    assert get["method"] == "GET"
    assert patch["headers"]["If-Match"] == "<ETag read>"
    assert "merged" in patch["note"]
