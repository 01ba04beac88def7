"""The README's main job and the producer command, run for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient as SyncClient
from azure.servicebus.aio import ServiceBusClient

from localrun.produce import main as produce
from tests.e2e.conftest import Stack, event_of, message, running_function, send

ROOT = Path(__file__).resolve().parents[2]


def local_run(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "localrun", "--timeout", "50", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(
        proc.stdout[proc.stdout.index("{", proc.stdout.index("summary")) : proc.stdout.rindex("}") + 1]
    )
    return proc, summary


def test_main_job_runs_end_to_end_and_exits_cleanly() -> None:
    proc, summary = local_run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    samples = len(list((ROOT / "samples").glob("*.json")))
    assert summary["messages"] == summary["events"] == samples
    assert summary["outcomes"] == {
        "applied": 4,
        "dry-run": 1,
        "failed": 1,
        "precondition-failed": 1,
        "rejected": 1,
    }
    assert summary["leftOnQueue"] == 0
    assert summary["tokenFetches"] == {"https://batch.core.windows.net/": 1}
    assert "OK: every message has exactly one outcome" in proc.stdout


def test_own_messages_against_own_jobs_with_every_event_written_out(tmp_path: Path) -> None:
    # Seeded as GET shows them: the eTag, lastModified and state stay as given, so
    # conditions written against the real job behave the same here.
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps(
            {
                "odata.metadata": "https://acct.westeurope.batch.azure.com/$metadata#jobs/@Element",
                "id": "cond-job",
                "eTag": "0x8DC0123456789AB",
                "lastModified": "2024-01-02T03:04:05.1234567Z",
                "state": "active",
                "priority": 1,
            }
        )
        + "\n"
        + json.dumps({"id": "done-job", "state": "completed"})
        + "\n"
    )
    lines = [
        b'{"schemaVersion":"1.0","jobId":"cond-job","update":{"priority":2},"conditions":{"ifMatch":"0x8DC0123456789AB"}}',
        b"",
        b'{"schemaVersion":"1.0","jobId":"cond-job","update":{"priority":3,"priority":1000}}',
        b'\xef\xbb\xbf{ "schemaVersion" : "1.0", "jobId":"cond-job", "update":{"priority":4},'
        b' "conditions":{"ifUnmodifiedSince":"Mon, 01 Jan 2024 00:00:00 GMT"}}\r',
        b'{"schemaVersion":"1.0","jobId":"done-job","update":{"priority":5}}',
        # A sample job: with --jobs, the sample jobs are not seeded.
        b'{"schemaVersion":"1.0","jobId":"nightly-render","update":{"priority":6}}',
    ]
    messages = tmp_path / "mine.jsonl"
    messages.write_bytes(b"\n".join(lines) + b"\n")
    events_out = tmp_path / "events.jsonl"
    proc, summary = local_run(
        "--messages", str(messages), "--jobs", str(jobs), "--events-out", str(events_out)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(text) for text in events_out.read_bytes().split(b"\n")[:-1]]
    by_id = {e["sourcemessageid"]: e["data"] for e in events}
    assert len(events) == len(by_id) == summary["events"] == summary["messages"] == 5
    assert {k: v["outcome"] for k, v in by_id.items()} == {
        "mine-1": "applied",
        "mine-3": "rejected",
        "mine-4": "precondition-failed",
        "mine-5": "failed",
        "mine-6": "failed",
    }
    assert {"path": "$.update.priority", "code": "duplicate_key"} in [
        {"path": p["path"], "code": p["code"]} for p in by_id["mine-3"]["problems"]
    ]
    assert (by_id["mine-5"]["httpStatus"], by_id["mine-5"]["error"]["code"]) == (409, "JobCompleted")
    assert (by_id["mine-6"]["httpStatus"], by_id["mine-6"]["error"]["code"]) == (404, "JobNotFound")
    assert all(e["specversion"] == "1.0" and e["type"].endswith(e["data"]["outcome"]) for e in events)
    assert "mine-3" in proc.stdout  # the printed lines name your message ids


def test_a_folder_runs_against_the_sample_jobs_and_a_message_too_big_to_send_fails_the_run(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "msgs"
    folder.mkdir()
    (folder / "mine.json").write_bytes((ROOT / "samples" / "replace-priority.json").read_bytes())
    (folder / "twice.json").write_bytes(
        b'{"schemaVersion":"1.0","jobId":"nightly-render","update":{"priority":1},"options":{"dryRun":true,"dryRun":false}}'
    )
    (folder / "big.json").write_text(
        json.dumps(
            {
                "schemaVersion": "1.0",
                "jobId": "nightly-render",
                "update": {"metadata": [{"name": "a", "value": "x" * 300_000}]},
            }
        )
    )
    proc, summary = local_run("--messages", str(folder))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary["withoutOutcome"] == ["big"]
    assert (summary["messages"], summary["events"]) == (3, 2)
    assert summary["outcomes"] == {"applied": 1, "rejected": 1}
    assert "$.options.dryRun" in proc.stdout
    assert "NOT OK" in proc.stdout


def test_producer_sends_a_message_file_as_the_bytes_written(fresh: Stack) -> None:
    body = b'\xef\xbb\xbf{ "schemaVersion":"1.0",\t"jobId":"nightly-render",\r\n "update":{"priority":1} }\n'
    path = Path(fresh.emu.ca_path).parent / "as-written.json"
    path.write_bytes(body)
    code = produce(
        ["--connection-string", fresh.connection_string, "--message", str(path), "--message-id", "as-written"]
    )
    assert code == 0
    with (
        SyncClient.from_connection_string(fresh.connection_string) as client,
        client.get_queue_receiver("job-updates", max_wait_time=5) as receiver,
    ):
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(received)
    assert (received.message_id, b"".join(received.body)) == ("as-written", body)


def test_producer_validates_then_sends(fresh: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # Invalid: refused before anything is sent.
    assert (
        produce(["--connection-string", fresh.connection_string, "--job", "bad id", "--priority", "1"]) == 1
    )
    assert '"$.jobId"' in capsys.readouterr().out
    body = ROOT / "samples" / "replace-priority.json"
    update = json.loads(body.read_text())["update"]
    (Path(fresh.emu.ca_path).parent / "body.json").write_text(json.dumps(update))
    code = produce(
        [
            "--connection-string",
            fresh.connection_string,
            "--queue",
            "job-updates",
            "--job",
            "nightly-render",
            "--file",
            str(Path(fresh.emu.ca_path).parent / "body.json"),
            "--metadata",
            "owner=me",
            "--if-match",
            "0x8D1",
            "--message-id",
            "produced-1",
        ]
    )
    assert code == 0
    with (
        SyncClient.from_connection_string(fresh.connection_string) as client,
        client.get_queue_receiver("job-updates", max_wait_time=5) as receiver,
    ):
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(received)
    sent = json.loads(b"".join(received.body))
    assert received.message_id == "produced-1"
    assert sent["jobId"] == "nightly-render"
    assert sent["update"] == {**update, "metadata": [{"name": "owner", "value": "me"}]}
    assert sent["conditions"] == {"ifMatch": "0x8D1"}


async def test_outcomes_carry_the_job_as_session_id_when_the_topic_needs_it(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh.emu.add_job({"id": "s-job"})
    async with running_function(
        fresh, monkeypatch, OUTCOME_TOPIC="job-outcomes-sessions", OUTCOME_TOPIC_REQUIRES_SESSION="true"
    ):
        await send(
            fresh, "job-updates", [message({"jobId": "s-job", "update": {"priority": 2}}, "m-session")]
        )
        async with (
            ServiceBusClient.from_connection_string(fresh.connection_string) as client,
            client.get_subscription_receiver(
                "job-outcomes-sessions", "all-outcomes", session_id="s-job", max_wait_time=20
            ) as receiver,
        ):
            received = await receiver.receive_messages(max_message_count=1, max_wait_time=20)
            for item in received:
                await receiver.complete_message(item)
    assert [r.session_id for r in received] == ["s-job"]
    assert event_of(received[0])["data"]["outcome"] == "applied"
