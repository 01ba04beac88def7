"""The producer command: exactly one of connection string or Entra, and what it sends.

`--message` must send the file's bytes as written (the function judges them) and
refuse, before any connection, what the function would reject; `--file` is
re-serialised, so it is read strictly. Sending is replaced by a recorder here; the
real send over AMQP is in tests/e2e/test_local_run_and_producer.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localrun.produce as produce
from localrun.produce import main

NS = ["--namespace", "x.servicebus.windows.net"]
VALID = b'{"schemaVersion":"1.0","jobId":"j1","update":{"priority":1}}'


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each send's arguments, instead of a connection."""
    calls: list[dict[str, Any]] = []

    async def record(target: str, queue: str, message: Any, body: bytes, **kw: Any) -> None:
        calls.append({"target": target, "queue": queue, "body": body, **kw})

    monkeypatch.setattr(produce, "send", record)
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["--job", "j", "--priority", "1"],  # neither
        [
            "--connection-string",
            "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b",
            "--namespace",
            "x.servicebus.windows.net",
            "--job",
            "j",
        ],
    ],
)
def test_exactly_one_of_connection_string_or_namespace(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_an_invalid_message_is_refused_before_any_connection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--namespace", "x.servicebus.windows.net", "--job", "bad id", "--priority", "1"]) == 1
    assert '"$.jobId"' in capsys.readouterr().out


@pytest.mark.parametrize(
    "body",
    [
        VALID,
        b"\xef\xbb\xbf" + VALID,  # the function accepts a BOM (.NET producers write one)
        b' \r\n{ "schemaVersion" : "1.0",\t"jobId":"j1", "update": {"priority": 1} }\n\n',
    ],
)
def test_message_file_is_sent_as_the_bytes_written(
    tmp_path: Path, sent: list[dict[str, Any]], body: bytes
) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(body)
    assert main([*NS, "--message", str(path), "--message-id", "m-1"]) == 0
    assert [(c["body"], c["message_id"]) for c in sent] == [(body, "m-1")]


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (
            b'{"schemaVersion":"1.0","jobId":"j1","jobId":"j2","update":{"priority":1}}',
            "$.jobId",
            "duplicate_key",
        ),
        (
            b'{"schemaVersion":"1.0","jobId":"j1","update":{"priority":1,"priority":2}}',
            "$.update.priority",
            "duplicate_key",
        ),
        (b'{"schemaVersion":"1.0","jobId":"j\xff","update":{"priority":1}}', "$", "json_invalid"),
        (b"[" * 50_000 + b"]" * 50_000, "$", "json_invalid"),
        (b'{"schemaVersion":"1.0","jobId":"j1","update":{"priority":1e0}}', "$.update.priority", "int_type"),
        (b"\xef\xbb\xbf\xef\xbb\xbf" + VALID, "$", "json_invalid"),  # one BOM is allowed, not two
    ],
)
def test_message_file_problems_are_reported_not_raised(
    tmp_path: Path,
    sent: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    body: bytes,
    path: str,
    code: str,
) -> None:
    file = tmp_path / "m.json"
    file.write_bytes(body)
    assert main([*NS, "--message", str(file)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert {"path": path, "code": code} in [
        {"path": p["path"], "code": p["code"]} for p in report["problems"]
    ]
    assert sent == []


def test_update_file_with_a_bom_is_read_and_merged_with_the_flags(
    tmp_path: Path, sent: list[dict[str, Any]]
) -> None:
    file = tmp_path / "body.json"
    file.write_bytes(b'\xef\xbb\xbf{"priority": 5, "constraints": {"maxTaskRetryCount": 2}}')
    assert main([*NS, "--job", "j1", "--file", str(file), "--max-parallel-tasks", "3"]) == 0
    (call,) = sent
    assert json.loads(call["body"])["update"] == {
        "priority": 5,
        "constraints": {"maxTaskRetryCount": 2},
        "maxParallelTasks": 3,
    }


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (b'{"priority": 1, "priority": 2}', "$.update.priority", "duplicate_key"),
        (
            b'{"constraints": {"maxTaskRetryCount": 1, "maxTaskRetryCount": 2}}',
            "$.update.constraints.maxTaskRetryCount",
            "duplicate_key",
        ),
        (b'{"priority": "\xff"}', "$.update", "json_invalid"),
        (b"{" * 5 + b"oops", "$.update", "json_invalid"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "$.update", "json_invalid"),
        (b"[1, 2]", "$.update", "dict_type"),
    ],
)
def test_update_file_problems_are_reported_not_raised(
    tmp_path: Path,
    sent: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    body: bytes,
    path: str,
    code: str,
) -> None:
    file = tmp_path / "body.json"
    file.write_bytes(body)
    assert main([*NS, "--job", "j1", "--file", str(file)]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert {"path": path, "code": code} in [{"path": p["path"], "code": p["code"]} for p in problems]
    assert sent == []


@pytest.mark.parametrize("option", ["--message", "--file"])
def test_an_unreadable_file_is_one_line_and_exit_2(
    tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], option: str
) -> None:
    extra = [] if option == "--message" else ["--job", "j1"]
    assert main([*NS, *extra, option, str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.json" in err and "Traceback" not in err
    assert main([*NS, *extra, option, str(tmp_path)]) == 2  # a folder
    assert sent == []


def test_message_with_build_flags_is_a_usage_error(tmp_path: Path, sent: list[dict[str, Any]]) -> None:
    file = tmp_path / "m.json"
    file.write_bytes(VALID)
    with pytest.raises(SystemExit) as exited:
        main([*NS, "--message", str(file), "--priority", "3"])
    assert exited.value.code == 2
    assert sent == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda prefix, text, suffix: prefix + text.encode() + suffix,
            st.sampled_from([b"", b"\xef\xbb\xbf", b" ", b"\xff"]),
            st.sampled_from([VALID.decode(), '{"schemaVersion":"1.0","jobId":"j1","update":{}}', "{}"]),
            st.sampled_from([b"", b"\n", b"\x00", b"}"]),
        ),
    )
)
def test_any_message_file_is_sent_as_written_or_refused_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    calls: list[bytes] = []

    async def record(target: str, queue: str, message: Any, body: bytes, **kw: Any) -> None:
        calls.append(body)

    monkeypatch.setattr(produce, "send", record)
    file = tmp_path / "m.json"
    file.write_bytes(body)
    code = main([*NS, "--message", str(file)])
    assert (code, calls) in [(0, [body]), (1, [])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.integers() | st.text(max_size=5),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_update_file_is_sent_or_refused_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    calls: list[bytes] = []

    async def record(target: str, queue: str, message: Any, body: bytes, **kw: Any) -> None:
        calls.append(body)

    monkeypatch.setattr(produce, "send", record)
    file = tmp_path / "body.json"
    file.write_bytes(body)
    code = main([*NS, "--job", "j1", "--file", str(file)])
    assert code in (0, 1)
    assert len(calls) == (1 if code == 0 else 0)
