"""`python -m handlers check` and `schema`: the function's plan and allow-list, for producers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handlers.__main__ import SCHEMAS, main, schema_text

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
ACCOUNT = "https://acct.westeurope.batch.azure.com"
OTHER = "https://other.westeurope.batch.azure.com"


def run(
    *argv: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "handlers", *argv],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )


def results(out: str) -> list[dict[str, Any]]:
    decoder, found, index = json.JSONDecoder(), [], 0
    text = out.strip()
    while index < len(text):
        value, end = decoder.raw_decode(text, index)
        found.append(value)
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return found


def message(**fields: Any) -> str:
    return json.dumps({"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, **fields})


def test_the_readme_command_checks_every_sample_and_names_each_file() -> None:
    proc = run("check", "--allowed-endpoints", ACCOUNT, "samples/*.json")
    found = {r["source"]: r["valid"] for r in results(proc.stdout.decode())}
    assert set(found) == {f"samples/{p.name}" for p in SAMPLES.glob("*.json")}
    assert [name for name, valid in found.items() if not valid] == ["samples/invalid-typo-and-range.json"]
    assert proc.returncode == 1  # one is invalid on purpose


def test_all_valid_exits_0_and_prints_the_exact_first_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["check", "--allowed-endpoints", ACCOUNT, str(SAMPLES / "conditional-stale-etag.json")], {}) == 0
    )
    (result,) = results(capsys.readouterr().out)
    request = result["requests"][0]
    assert request["method"] == "PATCH"
    assert request["url"] == f"{ACCOUNT}/jobs/etl-daily?api-version=2025-06-01"
    assert request["headers"]["If-Match"] == '"0x8D0000000000000"'
    assert "Authorization" not in request["headers"]
    assert request["body"] == {"priority": 100}


def test_merge_shows_the_read_first_and_says_what_follows(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["check", "--allowed-endpoints", ACCOUNT, str(SAMPLES / "merge-one-constraint.json")], {}) == 0
    )
    (result,) = results(capsys.readouterr().out)
    assert [r["method"] for r in result["requests"]] == ["GET"]
    assert "If-Match" in result["then"] and "merged" in result["then"]


def test_semicolon_lists_work_as_in_the_app_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.json"
    path.write_text(message(endpoint=OTHER))
    assert main(["check", "--allowed-endpoints", f"{ACCOUNT};{OTHER}", str(path)], {}) == 0
    assert results(capsys.readouterr().out)[0]["requests"][0]["url"].startswith(OTHER)


def test_the_environment_allow_list_is_used_when_no_option_is_given(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(message(endpoint=OTHER))
    refused = run("check", str(path), env={"BATCH_ALLOWED_ENDPOINTS": ACCOUNT})
    assert refused.returncode == 1
    assert results(refused.stdout.decode())[0]["problems"][0]["code"] == "endpoint_not_allowed"
    accepted = run("check", str(path), env={"BATCH_ALLOWED_ENDPOINTS": f"{ACCOUNT},{OTHER}"})
    assert accepted.returncode == 0


def test_the_option_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(message(endpoint=OTHER))
    proc = run("check", "--allowed-endpoints", ACCOUNT, str(path), env={"BATCH_ALLOWED_ENDPOINTS": OTHER})
    assert proc.returncode == 1


def test_default_endpoint_resolves_as_in_the_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.json"
    path.write_text(message())  # no endpoint
    # Two listed and no default: the function rejects it, so check does too.
    assert main(["check", "--allowed-endpoints", f"{ACCOUNT},{OTHER}", str(path)], {}) == 1
    assert "BATCH_DEFAULT_ENDPOINT" in capsys.readouterr().out
    env = {"BATCH_DEFAULT_ENDPOINT": OTHER}
    assert main(["check", "--allowed-endpoints", f"{ACCOUNT},{OTHER}", str(path)], env) == 0
    assert results(capsys.readouterr().out)[0]["requests"][0]["url"].startswith(OTHER)


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--allowed-endpoints", "https://evil.example.com"], {}, "not a Batch account endpoint"),
        (["--allowed-endpoints", "https://localhost:8443"], {}, "BATCH_ALLOW_EMULATOR"),
        (["--allowed-endpoints", "http://acct.westeurope.batch.azure.com"], {}, "https"),
        (["--allowed-endpoints", " , "], {}, "at least one"),
        ([], {}, "no allow-list"),
        (["--allowed-endpoints", ACCOUNT, "--default-endpoint", OTHER], {}, "default endpoint"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_traceback(
    argv: list[str], env: dict[str, str], says: str
) -> None:
    proc = run("check", *argv, "samples/dry-run.json", env=env)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert says in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert proc.stdout == b""


def test_the_emulator_is_allowed_only_when_asked() -> None:
    local = "https://localhost:8443"
    assert (
        run("check", "--allowed-endpoints", local, "--allow-emulator", "samples/dry-run.json").returncode == 0
    )
    env = {"BATCH_ALLOWED_ENDPOINTS": local, "BATCH_ALLOW_EMULATOR": "true"}
    assert run("check", "samples/dry-run.json", env=env).returncode == 0


@pytest.mark.parametrize("missing", ["no-such-file.json", "samples/*.nothing"])
def test_a_missing_file_or_empty_glob_exits_2(missing: str) -> None:
    proc = run("check", "--allowed-endpoints", ACCOUNT, missing)
    assert proc.returncode == 2
    assert missing in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def test_json_lines_from_stdin_name_each_line() -> None:
    lines = f"{message()}\n\n{json.dumps({'schemaVersion': '1.0', 'jobId': 'b'})}\n".encode()
    proc = run("check", "--allowed-endpoints", ACCOUNT, "-", stdin=lines)
    found = results(proc.stdout.decode())
    assert [(r["source"], r["valid"]) for r in found] == [("<stdin>:1", True), ("<stdin>:3", False)]
    assert found[1]["problems"][0]["code"] == "empty_update"
    assert proc.returncode == 1


def test_a_jsonl_file_of_one_line_is_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text(message() + "\n")
    assert main(["check", "--allowed-endpoints", ACCOUNT, str(path)], {}) == 0
    assert results(capsys.readouterr().out)[0]["source"] == f"{path}:1"


def test_a_broken_pretty_printed_file_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.json"
    path.write_text('{\n  "schemaVersion": "1.0",\n  "jobId": "j",\n  "update": {"priority": 1,}\n}\n')
    assert main(["check", "--allowed-endpoints", ACCOUNT, str(path)], {}) == 1
    (result,) = results(capsys.readouterr().out)
    assert result["problems"][0]["code"] == "json_invalid"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":' * 5000 + b"1" + b"}" * 5000,  # deeper than any parser's recursion
        b'{"schemaVersion":"1.0","jobId":"j","update":{"constraints":{"maxWallClockTime":"P99999999999999999999D"}}}',
        b'{"schemaVersion":"1.0","jobId":"j","update":{"priority":1},"options":{"ocpDate":"0001-01-01T00:00:00+14:00"}}',
        b"\xff\xfe not utf-8",
    ],
)
def test_hostile_bodies_are_problems_not_tracebacks(body: bytes) -> None:
    proc = run("check", "--allowed-endpoints", ACCOUNT, "-", stdin=body)
    assert proc.returncode == 1, proc.stderr.decode()
    assert results(proc.stdout.decode())[0]["valid"] is False
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_checked_in_schemas_are_current(name: str) -> None:
    assert (ROOT / "docs" / name).read_text() == schema_text(name), "run: python -m handlers schema --write"


def test_schema_check_fails_when_stale_and_write_mends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.__main__ as cli

    monkeypatch.setattr(cli, "DOCS", tmp_path)
    assert main(["schema", "--check"], {}) == 1
    assert main(["schema", "--write"], {}) == 0
    assert {p.name for p in tmp_path.iterdir()} == set(SCHEMAS)
    assert main(["schema", "--check"], {}) == 0


def test_check_sends_the_api_version_and_rounds_the_function_would(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(message(mode="merge"))
    env = {
        "BATCH_ALLOWED_ENDPOINTS": ACCOUNT,
        "BATCH_API_VERSION": "2026-10-01",
        "BATCH_MERGE_MAX_ROUNDS": "3",
    }
    proc = run("check", str(path), env=env)
    (result,) = results(proc.stdout.decode())
    assert result["requests"][0]["url"].endswith("api-version=2026-10-01")
    assert "at most 3 rounds" in result["then"]


def test_allow_emulator_reads_as_a_boolean_like_settings() -> None:
    env = {"BATCH_ALLOWED_ENDPOINTS": "https://localhost:8443", "BATCH_ALLOW_EMULATOR": "on"}
    assert run("check", "samples/dry-run.json", env=env).returncode == 0
