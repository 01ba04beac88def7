"""localrun.deadletters without a broker: reading entries, selecting, showing (redacted),
building resubmissions, checking bodies, the command line's refusals."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handlers.errors import UsageError
from handlers.lineage import (
    ATTEMPTS,
    COPY,
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    ORIGINAL_ENQUEUED_TIME,
    ORIGINAL_MESSAGE_ID,
    dead_letter_message_id,
)
from localrun import deadletters as dl

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SECRET = "hunter2-pool-password"
POOL_BODY = {
    "schemaVersion": "1.0",
    "jobId": "render",
    "update": {
        "priority": 3,
        "metadata": [{"name": "conn", "value": "AccountKey=" + SECRET}],
        "poolInfo": {
            "autoPoolSpecification": {
                "autoPoolIdPrefix": "r",
                "poolLifetimeOption": "job",
                "pool": {"vmSize": "standard_d2s_v3", "userAccounts": [{"name": "ops", "password": SECRET}]},
            }
        },
    },
    "conditions": {"ifMatch": "0x8DD1"},
    "options": {"dryRun": False, "clientRequestId": "00000000-0000-0000-0000-000000000001"},
}
ALLOW = {"BATCH_ALLOWED_ENDPOINTS": "https://acct.westeurope.batch.azure.com"}


def entry(
    body: Any = None,
    *,
    message_id: str = "m-1",
    sequence: int = 7,
    enqueued: datetime | None = NOW - timedelta(minutes=30),
    reason: str | None = "MaxDeliveryCountExceeded",
    properties: dict[str, Any] | None = None,
    **envelope: Any,
) -> dl.Entry:
    raw = body if isinstance(body, bytes) else json.dumps(POOL_BODY if body is None else body).encode()
    return dl.Entry(
        sequence_number=sequence,
        message_id=message_id,
        body=raw,
        enqueued_at=enqueued,
        delivery_count=10,
        reason=reason,
        description="Message could not be consumed after 10 delivery attempts.",
        properties=properties or {},
        **envelope,
    )


def dead_letter_copy(original: str = "orig", first: datetime = NOW - timedelta(hours=3)) -> dl.Entry:
    return entry(
        message_id=dead_letter_message_id(original),
        enqueued=NOW - timedelta(minutes=5),
        properties={
            ORIGINAL_MESSAGE_ID: original,
            ORIGINAL_ENQUEUED_TIME: first.isoformat(),
            COPY: 4,
            ATTEMPTS: 12,
            DEAD_LETTER_REASON: "TooManyRequests",
            DEAD_LETTER_DESCRIPTION: "last HTTP 429 TooManyRequests; 12 Batch attempts",
            "DeadLetterReason": "MaxDeliveryCountExceeded",
            "DeadLetterErrorDescription": "Message could not be consumed after 10 delivery attempts.",
            "traceparent": "00-abc-def-01",
            "tenant": 42,
        },
        correlation_id="corr",
        session_id="render",
        subject="nightly",
        content_type="application/json",
    )


# --- Entries and lineage ---------------------------------------------------------------


def test_a_dead_letter_copy_is_read_with_its_original_and_the_functions_reason() -> None:
    copy = dead_letter_copy()
    assert copy.kind == "dead-letter copy"
    assert copy.original_message_id == "orig"
    assert copy.job_update_reason == ("TooManyRequests", "last HTTP 429 TooManyRequests; 12 Batch attempts")
    assert copy.first_enqueued_at == NOW - timedelta(hours=3)
    assert copy.age(NOW) == timedelta(hours=3)  # from the first enqueue, not the copy's
    r = dl.row(copy, NOW)
    assert (r["originalMessageId"], r["jobUpdateDeadLetterReason"], r["deadLetterReason"]) == (
        "orig",
        "TooManyRequests",
        "MaxDeliveryCountExceeded",
    )
    assert r["ageSeconds"] == 3 * 3600


def test_lineage_names_on_a_producers_message_are_not_believed() -> None:
    forged = entry(properties={ORIGINAL_MESSAGE_ID: "someone-else", DEAD_LETTER_REASON: "Fake"})
    assert forged.kind == "message"
    assert forged.original_message_id == "m-1"
    assert forged.job_update_reason is None


@pytest.mark.parametrize(
    ("body", "job"),
    [
        (b'{"jobId": "j1"}', "j1"),
        (b'{"jobUrl": "https://a.westeurope.batch.azure.com/jobs/my%20job"}', "my job"),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"jobId": 5}', None),
    ],
)
def test_the_job_id_comes_from_the_body_when_it_parses(body: bytes, job: str | None) -> None:
    assert dl.job_id_of(body) == job


# --- Selecting -------------------------------------------------------------------------


def test_selection_by_id_sequence_number_original_id_job_reason_and_age() -> None:
    plain, copy = entry(), dead_letter_copy()
    cases: list[tuple[dl.Selection, list[bool]]] = [
        (dl.Selection(), [True, True]),
        (dl.Selection(ids=("m-1",)), [True, False]),
        (dl.Selection(ids=("7",)), [True, True]),  # both have sequence number 7 here
        (dl.Selection(ids=("orig",)), [False, True]),  # the given-up event's sourcemessageid
        (dl.Selection(job_id="render"), [True, True]),
        (dl.Selection(job_id="other"), [False, False]),
        (dl.Selection(reason="toomanyrequests"), [False, True]),  # ours, any case
        (dl.Selection(reason="MaxDeliveryCountExceeded"), [True, True]),  # the broker's
        (dl.Selection(older_than=timedelta(hours=1)), [False, True]),
        (dl.Selection(newer_than=timedelta(hours=1)), [True, False]),
        (dl.Selection(older_than=timedelta(minutes=10), newer_than=timedelta(hours=4)), [True, True]),
    ]
    for selection, expected in cases:
        assert [selection.matches(e, NOW) for e in (plain, copy)] == expected, selection
    unknown_age = entry(enqueued=None)
    assert not dl.Selection(older_than=timedelta(0)).matches(unknown_age, NOW)
    assert not dl.Selection(newer_than=timedelta(days=9)).matches(unknown_age, NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("PT1H30M", 5400),
        ("P1D", 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert dl.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 weeks", "-1h", "P"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        dl.parse_duration(text)


# --- Showing: redacted unless asked --------------------------------------------------------


def test_the_body_is_shown_through_the_events_allow_list_by_default() -> None:
    shown = dl.redacted_body(json.dumps(POOL_BODY).encode())
    text = json.dumps(shown)
    assert SECRET not in text and "AccountKey" not in text
    assert shown["jobId"] == "render" and shown["conditions"] == {"ifMatch": "0x8DD1"}
    assert shown["options"]["dryRun"] is False
    assert shown["update"]["priority"] == 3
    assert shown["update"]["metadata"] == [{"name": "conn", "value": "<string>"}]
    spec = shown["update"]["poolInfo"]["autoPoolSpecification"]
    assert spec["autoPoolIdPrefix"] == "r"
    assert spec["pool"]["userAccounts"] == [{"name": "<string>", "password": "<string>"}]
    # Unknown fields: structure only; not JSON: its size only.
    assert dl.redacted_body(b'{"extra": {"token": "abc"}}') == {"extra": {"token": "<string>"}}
    assert dl.redacted_body(b"password=" + SECRET.encode()) == f"<{9 + len(SECRET)} bytes, not JSON>"
    # Envelope strings still go through redact_text.
    assert "sig=" not in json.dumps(dl.redacted_body(b'{"jobUrl": "https://a.b/jobs/x?sig=abcdef"}'))


def test_show_body_decodes_it_as_it_is() -> None:
    assert dl.shown_body(json.dumps(POOL_BODY).encode(), show=True) == POOL_BODY
    assert dl.shown_body(b"\xffraw", show=True) == "\ufffdraw"


def test_inspection_text_and_list_lines_carry_no_secret() -> None:
    copy = dead_letter_copy()
    events = [
        dl.event_summary(
            {
                "id": "e1",
                "time": "2026-12-01T02:55:00Z",
                "sourcemessageid": "orig",
                "data": {
                    "outcome": "given-up",
                    "jobId": "render",
                    "httpStatus": 429,
                    "error": {"code": "TooManyRequests"},
                    "attempts": 1,
                    "scheduledCopies": 4,
                },
            }
        )
    ]
    doc = dl.inspection(copy, events, NOW, show_body=False)
    text = "\n".join(dl.inspection_text(doc))
    assert SECRET not in text
    assert "TooManyRequests" in text and "given-up" in text and "orig" in text
    assert doc["applicationProperties"]["traceparent"] == "00-abc-def-01"
    assert doc["events"][0]["errorCode"] == "TooManyRequests"
    lines = dl.list_lines([entry(), copy], NOW)
    assert lines[0].split()[:3] == ["SEQ", "MESSAGE", "ID"]
    assert len(lines) == 3 and SECRET not in "\n".join(lines)
    assert "3h00m" in lines[2] and "30m00s" in lines[1]
    revealed = dl.inspection(copy, [], NOW, show_body=True)
    assert revealed["body"] == POOL_BODY and revealed["bodyRedacted"] is False
    assert "none found" in "\n".join(dl.inspection_text(revealed))


# --- Resubmissions -------------------------------------------------------------------------


def test_a_resubmission_is_an_ordinary_new_message_with_lineage() -> None:
    copy = dead_letter_copy()
    out = dl.resubmission(copy)
    assert out.message_id not in (copy.message_id, "orig")
    assert out.body == copy.body
    assert (out.content_type, out.session_id, out.correlation_id, out.subject) == (
        "application/json",
        "render",
        "corr",
        "nightly",
    )
    assert out.properties == {
        "traceparent": "00-abc-def-01",
        "tenant": 42,
        dl.RESUBMITTED_FROM: copy.message_id,
        dl.RESUBMITTED_SEQUENCE_NUMBER: 7,
        dl.RESUBMITTED_ORIGINAL_MESSAGE_ID: "orig",
    }
    message = out.message()
    assert message.message_id == out.message_id and message.session_id == "render"


def test_the_new_id_is_stable_for_the_same_entry_and_body_and_differs_otherwise() -> None:
    a = entry()
    assert dl.resubmission(a).message_id == dl.resubmission(a).message_id  # a rerun after a crash
    assert dl.resubmission(a).message_id != dl.resubmission(entry(sequence=8)).message_id
    assert dl.resubmission(a).message_id != dl.resubmission(entry(message_id="m-2")).message_id
    edited = dl.resubmission(a, b'{"schemaVersion": "1.0", "jobId": "render", "update": {"priority": 4}}')
    assert edited.message_id != dl.resubmission(a).message_id
    assert edited.properties[dl.RESUBMITTED_BODY_EDITED] == "true"
    assert dl.RESUBMITTED_BODY_EDITED not in dl.resubmission(a, a.body).properties  # same bytes: not edited


def test_an_earlier_resubmissions_lineage_is_replaced_not_stacked() -> None:
    again = entry(properties={dl.RESUBMITTED_FROM: "older", dl.RESUBMITTED_BODY_EDITED: "true", "x": "y"})
    props = dl.resubmission(again).properties
    assert props[dl.RESUBMITTED_FROM] == "m-1"
    assert dl.RESUBMITTED_BODY_EDITED not in props and props["x"] == "y"


def test_bodies_are_checked_as_python_m_handlers_check_does() -> None:
    from handlers.__main__ import policy_from_args

    args = dl._parser().parse_args(["resubmit", "--all"])
    policy = policy_from_args(args, ALLOW)
    body = {"schemaVersion": "1.0", "jobId": "render", "update": {"priority": 3}}
    good = dl.prepare(entry(body), None, policy, NOW)
    assert good.valid is True
    assert good.check is not None and good.check["requests"][0]["method"] == "PATCH"
    bad = dl.prepare(entry(body), b'{"schemaVersion": "1.0", "jobId": "render", "update": {}}', policy, NOW)
    assert bad.valid is False
    assert bad.check is not None and bad.check["problems"]
    foreign = {**body, "endpoint": "https://elsewhere.westeurope.batch.azure.com"}
    assert dl.prepare(entry(foreign), None, policy, NOW).valid is False  # the allow-list, too
    assert dl.prepare(entry(body), None, None, NOW).valid is None  # --force without an allow-list


def test_edit_uses_the_editor_on_a_private_temporary_file(tmp_path: Path) -> None:
    script = tmp_path / "editor.py"
    seen = tmp_path / "seen.txt"
    script.write_text(
        "import json, os, stat, sys\n"
        "p = sys.argv[1]\n"
        f"open({str(seen)!r}, 'w').write(p + ' ' + oct(stat.S_IMODE(os.stat(p).st_mode)))\n"
        "doc = json.load(open(p))\n"
        "doc['update']['priority'] = 9\n"
        "json.dump(doc, open(p, 'w'))\n"
    )
    body = json.dumps({"schemaVersion": "1.0", "jobId": "render", "update": {"priority": 3}}).encode()
    edited = dl.edit_in_editor(body, f"{sys.executable} {script}")
    assert json.loads(edited)["update"]["priority"] == 9
    path, mode = seen.read_text().split()
    assert mode == "0o600"
    assert not Path(path).exists()  # removed afterwards
    untouched = dl.edit_in_editor(body, "true")
    assert untouched == body  # nothing changed: the original bytes
    with pytest.raises(UsageError):
        dl.edit_in_editor(body, "false")


# --- The command line: refusals before any connection ------------------------------------


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = dl.main(argv, environ=environ or {}, out=out, confirm=lambda _q: pytest.fail("asked"))
    return code, out.getvalue()


def test_no_state_file_and_no_target_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--state", str(tmp_path / "none.json"), "list"])[0] == 2
    assert "serve" in capsys.readouterr().err


def test_bad_options_are_usage_errors_and_keys_are_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    cs = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=TOPSECRETKEY;UseDevelopmentEmulator=true"
    assert run(["--connection-string", cs, "list", "--older-than", "soon"])[0] == 2
    assert run(["--connection-string", cs, "--limit", "0", "list"])[0] == 2
    assert run(["--connection-string", cs, "resubmit"])[0] == 2  # no scope: say which, or --all
    err = capsys.readouterr().err
    assert "--all" in err
    assert "TOPSECRETKEY" not in err
    with pytest.raises(SystemExit):
        run(["--connection-string", cs, "resubmit", "x", "--edit", "--body", "f.json"])


def test_the_target_comes_from_the_serve_state_with_its_allow_list(tmp_path: Path) -> None:
    state = tmp_path / "serve.json"
    state.write_text(
        json.dumps(
            {
                "connectionString": "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=a;SharedAccessKey=b",
                "queue": "q-from-state",
                "topic": "t-from-state",
                "settings": {
                    "BATCH_ALLOWED_ENDPOINTS": "https://localhost:7443",
                    "BATCH_ALLOW_EMULATOR": "true",
                },
            }
        )
    )
    args = dl._parser().parse_args(["--state", str(state), "inspect", "x"])
    target = dl._target(args, {})
    assert (target.queue, target.topic) == ("q-from-state", "t-from-state")
    assert dl._target(args, {"JOB_UPDATES_QUEUE": "q-env"}).queue == "q-env"
    args = dl._parser().parse_args(["--state", str(state), "resubmit", "--all"])
    assert dl._policy(args, {}, dl._target(args, {})) is not None
    args = dl._parser().parse_args(["--namespace", "ns.servicebus.windows.net", "resubmit", "--all"])
    azure = dl._target(args, {})
    assert (azure.queue, azure.connection_string, azure.namespace) == (
        "job-updates",
        None,
        "ns.servicebus.windows.net",
    )
    with pytest.raises(UsageError):
        dl._policy(args, {}, azure)  # no allow-list: refused ...
    forced = dl._parser().parse_args(
        ["--namespace", "ns.servicebus.windows.net", "resubmit", "--all", "--force"]
    )
    assert dl._policy(forced, {}, azure) is None  # ... unless --force
