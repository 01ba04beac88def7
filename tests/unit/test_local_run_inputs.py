"""`python -m localrun` inputs: messages kept as the bytes written, seed jobs checked
line by line, the run's verdict, and usage errors before anything starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.errors import UsageError
from localrun.__main__ import main
from localrun.inputs import judge, read_jobs, read_messages

BOM = b"\xef\xbb\xbf"


# --- messages ----------------------------------------------------------------------


def test_json_lines_ids_are_stem_and_line_number_and_bodies_the_bytes_written(tmp_path: Path) -> None:
    lines = [
        BOM + b'{"a": 1}',
        b"",
        b'{"a": 1, "a": 2}\r',  # CRLF: the \r stays, JSON whitespace
        b" \t\r",
        b"  not json at all  ",
        b'{"x":\t"\xff"}',
    ]
    path = tmp_path / "batch.v2.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = read_messages(path)
    assert [(m.message_id, m.body, m.origin) for m in got] == [
        ("batch.v2-1", lines[0], f"{path}:1"),
        ("batch.v2-3", lines[2], f"{path}:3"),
        ("batch.v2-5", lines[4], f"{path}:5"),
        ("batch.v2-6", lines[5], f"{path}:6"),
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=12))
def test_any_json_lines_file_gives_back_every_non_blank_line_unchanged(
    tmp_path: Path, lines: list[bytes]
) -> None:
    path = tmp_path / "any.txt"
    path.write_bytes(b"\n".join(lines))
    expected = [(f"any-{n}", line) for n, line in enumerate(lines, 1) if line.strip(b" \t\r")]
    if not expected:
        with pytest.raises(UsageError):
            read_messages(path)
        return
    assert [(m.message_id, m.body) for m in read_messages(path)] == expected


def test_a_folder_is_its_json_files_by_name_each_sent_whole(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_bytes(b'{\n  "pretty": true\n}\n')
    (tmp_path / "a.json").write_bytes(BOM + b"{}")
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    (tmp_path / ".hidden.json").write_bytes(b"{}")
    (tmp_path / "sub.json").mkdir()
    got = read_messages(tmp_path)
    assert [(m.message_id, m.body) for m in got] == [("a", BOM + b"{}"), ("b", b'{\n  "pretty": true\n}\n')]


def test_one_json_file_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_bytes(b'{\n"a": 1\n}\n')
    assert [(m.message_id, m.body) for m in read_messages(path)] == [("mine", b'{\n"a": 1\n}\n')]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing.jsonl", "No such file"),
        (lambda d: d, "no *.json files"),
        (lambda d: _write(d / "blank.jsonl", b"\n \n\r\n"), "every line is blank"),
        (lambda d: _write(d / ("x" * 130 + ".json"), b"{}"), "over 128 characters"),
    ],
)
def test_unusable_message_paths_are_usage_errors(tmp_path: Path, make: Any, needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("*", r"\*")):
        read_messages(make(tmp_path))


# --- jobs --------------------------------------------------------------------------


GET_SHAPED = {
    "odata.metadata": "https://acct.westeurope.batch.azure.com/$metadata#jobs/@Element",
    "id": "render",
    "url": "https://acct.westeurope.batch.azure.com/jobs/render",
    "eTag": "0x8DC0A1B2C3D4E5F",
    "lastModified": "2024-01-02T03:04:05.1234567Z",
    "creationTime": "2024-01-01T00:00:00Z",
    "state": "disabled",
    "priority": 5,
    "onAllTasksComplete": "TerminateJob",
    "onTaskFailure": "NoAction",
    "constraints": {"maxWallClockTime": "PT01H30M"},
    "poolInfo": {
        "autoPoolSpecification": {"poolLifetimeOption": "Job", "keepAlive": False, "pool": {"vmSize": "d2"}}
    },
    "metadata": [{"name": "owner", "value": "me"}],
    "executionInfo": {"startTime": "2024-01-01T00:00:01Z", "poolId": "render_1"},
}


def test_a_job_as_get_shows_it_keeps_its_read_only_fields_and_is_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path / "jobs.jsonl", BOM + json.dumps(GET_SHAPED).encode() + b'\r\n\n{"id": "plain"}\n')
    render, plain = read_jobs(path)
    assert "odata.metadata" not in render and "url" not in render
    assert render["eTag"] == GET_SHAPED["eTag"]
    assert render["lastModified"] == GET_SHAPED["lastModified"]
    assert render["state"] == "disabled"
    assert render["onAllTasksComplete"] == "terminatejob"
    assert render["onTaskFailure"] == "noaction"
    assert render["constraints"] == {"maxWallClockTime": "PT1H30M", "maxTaskRetryCount": 0}
    assert render["poolInfo"]["autoPoolSpecification"]["poolLifetimeOption"] == "job"
    assert plain == {"id": "plain"}


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"not json", "not JSON"),
        (b'{"id": "a\xff"}', "not UTF-8"),
        (b"[1]", "JSON object"),
        (b'{"id": "a", "priority": 1, "priority": 2}', "'priority' appears more than once"),
        (b'{"priority": 1}', '"id"'),
        (b'{"id": "has space"}', "job id"),
        (b'{"id": "a", "state": "running"}', "state must be one of"),
        (b'{"id": "a", "eTag": "\\"0x8D1\\""}', "eTag"),
        (b'{"id": "a", "lastModified": "2024-01-01T00:00:00"}', "time zone"),
        (b'{"id": "a", "creationTime": 17}', "ISO 8601"),
        (b'{"id": "a", "priority": 1001}', "priority"),
        (b'{"id": "a", "maxParallelTasks": 0}', "maxParallelTasks"),
        (b'{"id": "a", "constraints": {"maxWallClockTime": "1 hour"}}', "maxWallClockTime"),
        (b'{"id": "a", "metadata": [{"name": "", "value": "x"}]}', "EmptyMetadataKey"),
        (b'{"id": "a", "poolInfo": {}}', "exactly one of poolId and autoPoolSpecification"),
        (b'{"id": "a", "poolInfo": {"autoPoolSpecification": {}}}', "poolLifetimeOption"),
        (b'{"id": "a", "allowTaskPreemption": null}', "null"),
        (b'{"id": "a", "executionInfo": []}', "executionInfo"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_an_invalid_job_line_names_its_line(tmp_path: Path, line: bytes, needle: str) -> None:
    path = _write(tmp_path / "jobs.jsonl", b'{"id": "ok"}\n\n' + line + b"\n")
    with pytest.raises(UsageError) as raised:
        read_jobs(path)
    assert str(raised.value).startswith(f"{path}:3: ")
    assert needle in str(raised.value)


def test_job_ids_are_unique_case_insensitively_as_in_batch(tmp_path: Path) -> None:
    path = _write(tmp_path / "jobs.jsonl", b'{"id": "Render"}\n{"id": "render"}\n')
    with pytest.raises(UsageError, match=r":2: .*already exists"):
        read_jobs(path)


def test_an_empty_jobs_file_seeds_nothing(tmp_path: Path) -> None:
    assert read_jobs(_write(tmp_path / "none.jsonl", b"\n")) == []


# --- the verdict -------------------------------------------------------------------


def _events(*ids: str) -> list[dict[str, Any]]:
    return [{"sourcemessageid": i, "data": {"outcome": "applied"}} for i in ids]


@pytest.mark.parametrize(
    ("sent", "not_sent", "events", "left", "ok", "missing", "repeated", "unexpected"),
    [
        (["a", "b"], [], _events("b", "a"), 0, True, [], {}, []),
        (["a", "b"], [], _events("a", "a"), 0, False, ["b"], {"a": 2}, []),
        (["a"], [], _events("a"), 1, False, [], {}, []),
        (["a"], ["big"], _events("a"), 0, False, ["big"], {}, []),
        (["a"], [], _events("a", "z"), 0, False, [], {}, ["z"]),
        ([], [], [], 0, True, [], {}, []),
    ],
)
def test_ok_means_exactly_one_outcome_per_message_and_an_empty_queue(
    sent: list[str],
    not_sent: list[str],
    events: list[dict[str, Any]],
    left: int,
    ok: bool,
    missing: list[str],
    repeated: dict[str, int],
    unexpected: list[str],
) -> None:
    verdict = judge(sent, not_sent, events, left)
    assert (verdict.ok, verdict.missing, verdict.repeated, verdict.unexpected) == (
        ok,
        missing,
        repeated,
        unexpected,
    )


# --- usage errors: one line, exit 2, nothing started --------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--messages", "{tmp}/missing"],
        ["--messages", "{tmp}"],  # a folder without *.json
        ["--jobs", "{tmp}/missing.jsonl"],
        ["--jobs", "{tmp}/bad-jobs.jsonl"],
        ["--events-out", "{tmp}/no/such/dir/events.jsonl"],
        ["--messages", "{tmp}/ok.jsonl", "--events-out", "{tmp}/ok.jsonl"],  # would destroy the input
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    import localrun.__main__ as local

    async def must_not_run(*args: Any) -> int:
        raise AssertionError("the run started despite a usage error")

    monkeypatch.setattr(local, "run", must_not_run)
    _write(tmp_path / "bad-jobs.jsonl", b'{"id": "a"}\n{"id": "b",}\n')
    _write(tmp_path / "ok.jsonl", b"{}\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m localrun: error: ") and err.count("\n") == 1
    assert (tmp_path / "ok.jsonl").read_bytes() == b"{}\n"


def test_a_bad_option_is_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--messages"])
    assert exited.value.code == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
