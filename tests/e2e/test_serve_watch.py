"""`python -m localrun serve` stays up; a message from the producer gets its outcome
through `python -m localrun watch`; a fault added by hand ends in `given-up` and a
dead letter. Real processes, real sockets, any free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localrun.fault import main as fault
from localrun.produce import main as produce

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
START_GUARD_SECONDS = 60  # a guard against a hung start, not a timing assertion


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "ok-job"}) + "\n" + json.dumps({"id": "doomed-job"}) + "\n")
    state = tmp_path / "serve.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localrun",
            "serve",
            "--free-ports",
            "--state",
            str(state),
            "--jobs",
            str(jobs),
            # Each of the queue's 5 deliveries gives up on Batch after about a second
            # (redelivery-only mode: with scheduled copies the path is the copies').
            "--setting",
            "BATCH_RETRY_BUDGET_SECONDS=1",
            "--setting",
            "JOB_UPDATES_SCHEDULED_RETRIES=false",
            "--write-settings",
            str(tmp_path / "local.settings.json"),
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_GUARD_SECONDS
        while not state.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield proc, json.loads(state.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localrun", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _fault(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert fault(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_serve_produce_watch_fault_given_up_and_a_clean_stop(
    served: tuple[subprocess.Popen[str], dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, state = served
    state_file = str(tmp_path / "serve.json")
    written = json.loads((tmp_path / "local.settings.json").read_text())
    assert written["Values"]["ServiceBusConnection"] == state["connectionString"]
    assert written["Values"]["BATCH_RETRY_BUDGET_SECONDS"] == "1"
    assert written["Values"]["BATCH_ALLOWED_ENDPOINTS"] == state["batchEndpoint"]

    # A fault by hand, while serve runs: every PATCH of doomed-job is 503 with Retry-After.
    added = _fault(capsys, "--state", state_file, "503:job=doomed-job,method=PATCH,times=always")
    assert added["added"][0]["does"] == "503 ServerBusy"

    cs = state["connectionString"]
    assert (
        produce(["--connection-string", cs, "--job", "ok-job", "--priority", "7", "--message-id", "m-ok"])
        == 0
    )
    assert (
        produce(
            [
                "--local",
                "--state",
                state_file,
                "--job",
                "doomed-job",
                "--priority",
                "1",
                "--message-id",
                "m-doomed",
            ]
        )
        == 0
    )

    # applied on all-outcomes; given-up on all-outcomes and failures; the dead letter.
    watched = _cli("watch", "--state", state_file, "--json", "--count", "4", "--timeout", "60")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    items = [json.loads(line) for line in watched.stdout.splitlines()]
    seen = sorted(
        (i["source"], i["event"]["sourcemessageid"], i["event"]["data"]["outcome"])
        if "event" in i
        else (i["source"], i["messageId"], i["reason"])
        for i in items
    )
    assert seen == [
        ("all-outcomes", "m-doomed", "given-up"),
        ("all-outcomes", "m-ok", "applied"),
        ("dead-letter", "m-doomed", "MaxDeliveryCountExceeded"),
        ("failures", "m-doomed", "given-up"),
    ]
    dead = next(i for i in items if i["source"] == "dead-letter")
    assert dead["jobId"] == "doomed-job"
    assert "body" not in dead  # a dead letter is shown without its body

    # The fault stays pending (times=always) until cleared, and it fired. How often depends on
    # timing: its Retry-After (1 s) gates the account, and the host loop redelivers fast enough
    # that the later deliveries fall inside the gate and give up without calling Batch. The 5
    # deliveries themselves are what MaxDeliveryCountExceeded above shows.
    listed = _fault(capsys, "--state", state_file)["pending"]
    assert [(f["job"], f["times"], f["fired"] >= 1) for f in listed] == [("doomed-job", "always", True)]
    assert _fault(capsys, "--state", state_file, "--clear") == {"cleared": 1}

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert not (tmp_path / "serve.json").exists()  # watch/fault/produce --local stop finding it


def test_watch_without_a_running_serve_says_so_and_exits_2(tmp_path: Path) -> None:
    result = _cli("watch", "--state", str(tmp_path / "none.json"), timeout=30)
    assert result.returncode == 2
    assert "start `python -m localrun serve` first" in result.stderr


async def test_watch_sees_a_dead_letter_that_sorts_before_one_already_shown() -> None:
    """Dead letters keep their original sequence numbers on the local broker: the later
    one dead-lettered first must not hide the earlier one that follows it."""
    import asyncio
    import io

    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    from localrun.watch import DEAD_LETTER, sources, watch
    from standins.servicebus import LocalBroker

    with LocalBroker(config=str(ROOT / "standins" / "servicebus" / "Config.json"), port=0) as broker:
        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            async with client.get_queue_sender("job-updates") as sender:
                await sender.send_messages([ServiceBusMessage(b"{}", message_id=f"d-{n}") for n in (1, 2)])
            receiver = client.get_queue_receiver("job-updates", max_wait_time=5)
            async with receiver:
                got: list[Any] = []
                while len(got) < 2:
                    got += await receiver.receive_messages(max_message_count=2, max_wait_time=5)
                first, second = sorted(got, key=lambda m: m.sequence_number)
                await receiver.dead_letter_message(second, reason="by-hand")
                printed = asyncio.Event()

                class Out(io.StringIO):
                    def write(self, text: str) -> int:
                        printed.set()
                        return super().write(text)

                out = Out()
                dlq = [s for s in sources("job-updates", "job-outcomes") if s.label == DEAD_LETTER]
                watching = asyncio.create_task(
                    watch(client, dlq, new_only=False, count=2, poll_seconds=0.1, as_json=True, out=out)
                )
                await asyncio.wait_for(printed.wait(), 30)
                await receiver.dead_letter_message(first, reason="by-hand")
                assert await asyncio.wait_for(watching, 30) == 0
    shown = [json.loads(line)["messageId"] for line in out.getvalue().splitlines()]
    assert shown == ["d-2", "d-1"]
