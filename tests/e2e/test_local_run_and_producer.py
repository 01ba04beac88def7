"""The README's main job and the producer command, run for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient as SyncClient
from azure.servicebus.aio import ServiceBusClient

from localrun.produce import main as produce
from tests.e2e.conftest import Stack, event_of, message, running_function, send

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_runs_end_to_end_and_exits_cleanly() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "localrun", "--timeout", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(
        proc.stdout[proc.stdout.index("{", proc.stdout.index("summary")) : proc.stdout.rindex("}") + 1]
    )
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
