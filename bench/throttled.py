"""Throttled-account load test: N function hosts draining a backlog for one Batch
account at a fixed capacity, while a second, unthrottled account gets a stream.

    python bench/throttled.py                        # alone, flow control on, off; ~4 min
    python bench/throttled.py --modes flow-on --messages 500 --json out.json

Everything runs on loopback, each piece in its own process: the AMQP broker
(`python -m standins.servicebus`), two Batch emulators (`python -m standins.batch`;
account A with `--capacity-rps`, account B unlimited, both with `--latency-ms`),
and N host processes running function_app.py under the local host loop
(`tests/faults/host.py`, app settings from the environment). This process holds
the token endpoint, the producer and the subscriber that records every outcome
event. Modes:

- `calibrate`: the backlog for A with no capacity limit: what the fleet offers
  (the measured overload is this rate over `--capacity`);
- `alone`: account B's stream by itself (its reference latency);
- `flow-on` / `flow-off`: the backlog for A plus B's stream, with
  BATCH_FLOW_CONTROL=true / false (the baseline: each message retries on its own),
  JOB_UPDATES_SCHEDULED_RETRIES=true / false likewise (the baseline waits in place).

"Overload" is what the fleet sends to A without a limit (`calibrate`) over A's
capacity; the nominal figure, hosts x maxConcurrentCalls (16) / latency, is higher
because each message also spends time being received, published and settled. Books are reconciled with
tests/faults/accounting.py (lost, duplicates, untruthful outcomes, dead letters).
Prints a table and writes JSON (docs/flow-control.md has the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402

from standins.identity import TokenEndpoint  # noqa: E402
from tests.faults.accounting import BatchCall, DeadLetter, SentMessage, reconcile  # noqa: E402

SIGNING_KEY = b"throttled-load-token-signing-key"
CLIENT_ID = "88888888-8888-8888-8888-888888888888"
QUEUE, TOPIC, SUBSCRIPTION = "job-updates", "job-outcomes", "all-outcomes"
MAX_DELIVERY_COUNT = 10  # the production default (infra/, JOB_UPDATES_MAX_DELIVERY_COUNT)
MAX_CONCURRENT_CALLS = 16  # host.json
MODES = ("calibrate", "alone", "flow-on", "flow-off")
LOG_LINE = re.compile(r"job-update outcome=(\S+) .*messageId=(\S+)")


# --- processes ---------------------------------------------------------------------


def _spawn(argv: Sequence[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        text=True,
        **kw,
    )


def _stop(proc: subprocess.Popen[str], timeout: float = 20.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    endpoint: str
    ca_path: str
    record: Path

    @classmethod
    def start(cls, work: Path, name: str, jobs: int, latency_ms: float, capacity: float | None) -> Emulator:
        seed = work / f"{name}-jobs.json"
        seed.write_text(json.dumps([{"id": f"{name}-{i}", "priority": 0} for i in range(jobs)]))
        record = work / f"{name}-record.json"
        argv = ["-m", "standins.batch", "--account-name", name, "--seed", str(seed)]
        argv += ["--token-signing-key", SIGNING_KEY.decode(), "--latency-ms", str(latency_ms)]
        argv += ["--record", str(record)]
        if capacity is not None:
            argv += ["--capacity-rps", str(capacity)]
        proc = _spawn(argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        return cls(proc, info["endpoint"], info["ca_path"], record)

    def stop(self) -> dict[str, Any]:
        code = _stop(self.proc)
        if code != 0:
            raise RuntimeError(f"the emulator exited {code}")
        doc: dict[str, Any] = json.loads(self.record.read_text())
        return doc


def _ca_bundle(work: Path, *emulators: Emulator) -> Path:
    """One file trusting both emulators' CAs (BATCH_CA_BUNDLE takes one path)."""
    bundle = work / "ca-bundle.pem"
    bundle.write_text("".join(Path(e.ca_path).read_text() for e in emulators))
    return bundle


def broker_config(work: Path) -> Path:
    doc = json.loads((ROOT / "standins" / "servicebus" / "Config.json").read_text())
    for namespace in doc["UserConfig"]["Namespaces"]:
        for queue in namespace["Queues"]:
            queue["Properties"]["MaxDeliveryCount"] = MAX_DELIVERY_COUNT
    path = work / "broker-config.json"
    path.write_text(json.dumps(doc))
    return path


# --- one run -----------------------------------------------------------------------


@dataclass
class Sink:
    """The subscriber: every outcome event, with the time it arrived."""

    connection_string: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                async with (
                    ServiceBusClient.from_connection_string(self.connection_string) as client,
                    client.get_subscription_receiver(TOPIC, SUBSCRIPTION) as receiver,
                ):
                    while not self.stop.is_set():
                        got = await receiver.receive_messages(max_message_count=100, max_wait_time=0.3)
                        now = time.time()
                        for received in got:
                            self.events.append((now, json.loads(b"".join(received.body))))
                        for received in got:
                            await receiver.complete_message(received)
            except Exception:  # reconnect, as a subscriber would
                await asyncio.sleep(0.3)


def body(job_id: str, index: int) -> dict[str, Any]:
    return {"schemaVersion": "1.0", "jobId": job_id, "update": {"priority": 1 + index % 900}}


def _message(message_id: str, job_id: str, index: int, endpoint: str) -> ServiceBusMessage:
    doc = {**body(job_id, index), "endpoint": endpoint}
    return ServiceBusMessage(json.dumps(doc), message_id=message_id, content_type="application/json")


async def run_mode(args: argparse.Namespace, mode: str, work: Path) -> dict[str, Any]:
    backlog = 0 if mode == "alone" else args.messages
    stream_jobs = math.ceil(args.stream_rate * args.max_seconds) + 10
    capacity = None if mode == "calibrate" else args.capacity
    emu_a = Emulator.start(work, "acct-a", max(backlog, 1), args.latency_ms, capacity)
    emu_b = Emulator.start(work, "acct-b", stream_jobs + args.hosts * 4, args.latency_ms, None)
    tokens = TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID).start()
    broker = _spawn(
        ["-m", "standins.servicebus", "--port", "0", "--config", str(broker_config(work))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert broker.stdout is not None
    connection = broker.stdout.readline().strip()
    bundle = _ca_bundle(work, emu_a, emu_b)
    settings = {
        **tokens.env,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "ServiceBusConnection": connection,
        "JOB_UPDATES_QUEUE": QUEUE,
        "JOB_UPDATES_MAX_DELIVERY_COUNT": str(MAX_DELIVERY_COUNT),
        "OUTCOME_TOPIC": TOPIC,
        "BATCH_ALLOWED_ENDPOINTS": f"{emu_a.endpoint},{emu_b.endpoint}",
        "BATCH_ALLOW_EMULATOR": "true",
        "BATCH_CA_BUNDLE": str(bundle),
        "BATCH_FLOW_CONTROL": "false" if mode == "flow-off" else "true",
        # The baseline is today's behaviour before this work: no flow control and no
        # retries off the lock (every transient failure waits in place or is redelivered).
        "JOB_UPDATES_SCHEDULED_RETRIES": "false" if mode == "flow-off" else "true",
    }
    stream = mode != "calibrate"
    sent: list[SentMessage] = []
    sent_at: dict[str, float] = {}
    hosts: list[subprocess.Popen[str]] = []
    sink = Sink(connection)
    sink_task = asyncio.create_task(sink.run())
    crashed: list[str] = []
    started = time.time()
    try:
        async with (
            ServiceBusClient.from_connection_string(connection) as client,
            client.get_queue_sender(QUEUE) as sender,
        ):
            for first in range(0, backlog, 200):  # the backlog, before any host runs
                batch = [
                    _message(f"a-{i}", f"acct-a-{i}", i, emu_a.endpoint)
                    for i in range(first, min(first + 200, backlog))
                ]
                await sender.send_messages(batch)
                for i in range(first, first + len(batch)):
                    sent.append(SentMessage(f"a-{i}", f"acct-a-{i}", body(f"acct-a-{i}", i)))
                    sent_at[f"a-{i}"] = time.time()
            for index in range(args.hosts):
                log = work / f"{mode}-host-{index}.log"
                hosts.append(
                    _spawn(
                        [__file__, "host", str(log)],
                        env=settings,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            warm = stream_jobs if mode == "alone" else None
            await _hosts_up(args, sender, sink, sent, emu_b.endpoint, warm_jobs_from=warm)
            started = time.time()
            cpu_before = _cpu_times()
            deadline = started + args.max_seconds
            stream_until = started + (args.alone_seconds if mode == "alone" else args.max_seconds)
            next_send, index = started, 0
            while time.time() < deadline:
                done = {str(e.get("sourcemessageid")) for _, e in sink.events}
                backlog_done = all(f"a-{i}" in done for i in range(backlog))
                if mode != "alone" and backlog_done:
                    stream_until = min(stream_until, time.time())
                if time.time() >= stream_until and len(done) >= len(sent):
                    break
                now = time.time()
                while stream and now < stream_until and next_send <= now and index < stream_jobs:
                    mid, job = f"b-{index}", f"acct-b-{index}"
                    await sender.send_messages(_message(mid, job, index, emu_b.endpoint))
                    sent.append(SentMessage(mid, job, body(job, index)))
                    sent_at[mid] = time.time()
                    next_send += 1.0 / args.stream_rate
                    index += 1
                crashed = [
                    f"host {i} exited {h.returncode}" for i, h in enumerate(hosts) if h.poll() is not None
                ]
                if crashed:
                    break
                await asyncio.sleep(0.05)
        ended = time.time()
        busy = _busy(cpu_before, _cpu_times())
        await asyncio.sleep(1.0)  # late duplicates, if any, arrive now
    finally:
        codes = [_stop(h) for h in hosts]
        crashed += [f"host {i} exited {c} on SIGTERM" for i, c in enumerate(codes) if c not in (0, None)]
        sink.stop.set()
        await sink_task
    left, dead = await queue_counts(connection)
    _stop(broker)
    tokens.stop()
    record_a, record_b = emu_a.stop(), emu_b.stop()
    deliveries = _deliveries(work, mode, args.hosts)
    result = summarise(
        mode,
        args,
        sent=sent,
        sent_at=sent_at,
        events=sink.events,
        records=(record_a, record_b),
        left=left,
        dead=dead,
        deliveries=deliveries,
        started=started,
        ended=ended,
        crashed=crashed,
    )
    result["machineCpuBusy"] = busy
    return result


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (Linux /proc/stat), for the report."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 2) if total > 0 else None


async def _hosts_up(
    args: argparse.Namespace,
    sender: Any,
    sink: Sink,
    sent: list[SentMessage],
    endpoint: str,
    *,
    warm_jobs_from: int | None,
) -> None:
    """Wait until the hosts answer, so B's latencies do not include process start-up:
    the first outcome (of the backlog, or of warm-up messages to B when there is none),
    then a moment for the slower hosts to finish importing."""
    if warm_jobs_from is not None:
        for i in range(args.hosts * 4):
            mid, job = f"w-{i}", f"acct-b-{warm_jobs_from + i}"
            await sender.send_messages(_message(mid, job, i, endpoint))
            sent.append(SentMessage(mid, job, body(job, i)))
    give_up = time.time() + 60
    while not sink.events and time.time() < give_up:  # noqa: ASYNC110 - polls a list
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)


async def queue_counts(connection: str) -> tuple[int, list[DeadLetter]]:
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_receiver(QUEUE) as receiver:
            left = len(await receiver.peek_messages(max_message_count=5000))
        async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            dead = [
                DeadLetter(str(m.message_id), m.dead_letter_reason)
                for m in await receiver.peek_messages(max_message_count=5000)
            ]
    return left, dead


def _deliveries(work: Path, mode: str, hosts: int) -> Counter[str]:
    """Deliveries per message id: the handler logs exactly one line per invocation."""
    counts: Counter[str] = Counter()
    for index in range(hosts):
        path = work / f"{mode}-host-{index}.log"
        if path.exists():
            for line in path.read_text().splitlines():
                match = LOG_LINE.search(line)
                if match:
                    counts[match.group(2)] += 1
    return counts


# --- the figures -------------------------------------------------------------------


def _p(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summarise(
    mode: str,
    args: argparse.Namespace,
    *,
    sent: list[SentMessage],
    sent_at: dict[str, float],
    events: list[tuple[float, dict[str, Any]]],
    records: tuple[dict[str, Any], dict[str, Any]],
    left: int,
    dead: list[DeadLetter],
    deliveries: Counter[str],
    started: float,
    ended: float,
    crashed: list[str],
) -> dict[str, Any]:
    calls = [
        BatchCall(r["method"], r["jobId"], r["clientRequestId"], r["status"])
        for record in records
        for r in record["requests"]
    ]
    jobs = {**records[0]["jobs"], **records[1]["jobs"]}
    ledger = reconcile(sent, calls, [e for _, e in events], dead, jobs, left_on_queue=left)
    by_id = {str(e.get("sourcemessageid")): (at, e) for at, e in events}
    a_ids = [m.message_id for m in sent if m.message_id.startswith("a-")]
    b_ids = [m.message_id for m in sent if m.message_id.startswith("b-")]

    out: dict[str, Any] = {"mode": mode, "books": ledger.summary(), "crashed": crashed, "clean": ledger.clean}
    requests_a = records[0]["requests"]
    if a_ids:
        first = min(r["at"] for r in requests_a) if requests_a else started
        last_event = max((by_id[m][0] for m in a_ids if m in by_id), default=ended)
        drain = last_event - first
        ok = [r for r in requests_a if r["status"] is not None and 200 <= r["status"] < 300]
        settle = first + args.settle_seconds
        settled = [r for r in requests_a if settle <= r["at"] <= last_event]
        settled_ok = sum(1 for r in settled if r["status"] is not None and 200 <= r["status"] < 300)
        window = max(last_event - settle, 1e-9)
        a_events = [by_id[m][1]["data"] for m in a_ids if m in by_id]
        out["throttled"] = {
            "messages": len(a_ids),
            "capacityRps": args.capacity,
            "drainSeconds": round(drain, 1),
            "goodputOfCapacity": round(len(ok) / drain / args.capacity, 3) if drain > 0 else None,
            "goodputOfCapacityConverged": round(settled_ok / window / args.capacity, 3),
            "requests": len(requests_a),
            "share429": round(_share(requests_a, 429), 4),
            "share429Converged": round(_share(settled, 429), 4),
            "deliveriesPerMessage": round(sum(deliveries[m] for m in a_ids) / len(a_ids), 3),
            "attemptsPerMessage": round(statistics.fmean(d["attempts"] for d in a_events), 3)
            if a_events
            else None,
            # Each outcome says how many scheduled copies came before it.
            "scheduledCopiesPerMessage": round(
                statistics.fmean(d.get("scheduledCopies", 0) for d in a_events), 3
            )
            if a_events
            else None,
            "givenUp": sum(1 for d in a_events if d["outcome"] == "given-up"),
            "lost": sum(1 for m in a_ids if m not in by_id),
            "flowWaitMsP50": _p([d.get("flowWaitMs", 0.0) for d in a_events], 0.5),
            "flowWaitMsP99": _p([d.get("flowWaitMs", 0.0) for d in a_events], 0.99),
            "offeredRps": round(len(requests_a) / drain, 1) if drain > 0 else None,
            "timeline": _timeline(requests_a, first),
        }
    if b_ids:
        b_events = [by_id[m] for m in b_ids if m in by_id]
        handler = [e["data"]["durationMs"] for _, e in b_events]
        e2e = [(at - sent_at[str(e["sourcemessageid"])]) * 1000 for at, e in b_events]
        out["unthrottled"] = {
            "messages": len(b_ids),
            "lost": sum(1 for m in b_ids if m not in by_id),
            "handlerMsP50": _p(handler, 0.5),
            "handlerMsP99": _p(handler, 0.99),
            "endToEndMsP50": _round(_p(e2e, 0.5)),
            "endToEndMsP99": _round(_p(e2e, 0.99)),
            "deliveriesPerMessage": round(sum(deliveries[m] for m in b_ids) / len(b_ids), 3),
            "flowWaitMsP99": _p([e["data"].get("flowWaitMs", 0.0) for _, e in b_events], 0.99),
        }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _share(requests: Sequence[dict[str, Any]], status: int) -> float:
    return sum(1 for r in requests if r["status"] == status) / len(requests) if requests else 0.0


def _timeline(requests: Sequence[dict[str, Any]], first: float) -> list[dict[str, int]]:
    """Per second from the first request: 2xx and 429 answers."""
    seconds: dict[int, Counter[str]] = {}
    for r in requests:
        bucket = seconds.setdefault(int(r["at"] - first), Counter())
        status = r["status"]
        bucket["ok" if status is not None and 200 <= status < 300 else str(status)] += 1
    return [{"t": t, "ok": c["ok"], "429": c["429"]} for t, c in sorted(seconds.items())]


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| mode | goodput / capacity (converged) | 429 share (converged) | deliveries / msg | "
        "scheduled copies / msg | given up | lost | drain s | B p99 handler ms | B p99 end-to-end ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, b = r.get("throttled"), r.get("unthrottled", {})
        cells = [r["mode"]]
        if a:
            cells += [
                f"{a['goodputOfCapacity']} ({a['goodputOfCapacityConverged']})",
                f"{a['share429']:.1%} ({a['share429Converged']:.1%})",
                f"{a['deliveriesPerMessage']}",
                f"{a['scheduledCopiesPerMessage']}",
                str(a["givenUp"]),
                str(a["lost"] + b.get("lost", 0)),
                str(a["drainSeconds"]),
            ]
        else:
            cells += ["", "", "", "", "", str(b.get("lost", 0)), ""]
        cells += [str(b.get("handlerMsP99")), str(b.get("endToEndMsP99"))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- entry points ------------------------------------------------------------------


def host_main(log_path: str) -> None:
    """One host process: the handler's one line per delivery goes to `log_path`."""
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    job_log = logging.getLogger("handlers.job_update")
    job_log.setLevel(logging.INFO)
    job_log.addHandler(handler)
    from tests.faults.host import main

    asyncio.run(main())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2000, help="backlog for the throttled account")
    parser.add_argument("--latency-ms", type=float, default=500.0, help="Batch's time per request")
    parser.add_argument("--capacity", type=float, default=32.0, help="account A's requests per second")
    parser.add_argument("--stream-rate", type=float, default=4.0, help="account B's messages per second")
    parser.add_argument("--alone-seconds", type=float, default=20.0, help="length of B's stream alone")
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="convergence time excluded")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="give up on a run after this")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="throttled-") as name:
        yield Path(name)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for mode in args.modes:
        with workdir() as work:
            result = await run_mode(args, mode, work)
        result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "throttled"} | _brief(result)), flush=True)
    return results


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    a = result.get("throttled")
    return {"throttled": {k: v for k, v in a.items() if k != "timeline"}} if a else {}


def _measured_overload(results: Sequence[dict[str, Any]], capacity: float) -> float | None:
    for r in results:
        if r["mode"] == "calibrate" and r.get("throttled", {}).get("offeredRps"):
            return round(float(r["throttled"]["offeredRps"]) / capacity, 2)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["host"]:
        host_main(argv[1])
        return 0
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(run(args))
    doc = {
        "hosts": args.hosts,
        "messages": args.messages,
        "capacityRps": args.capacity,
        "latencyMs": args.latency_ms,
        "nominalOverload": round(
            args.hosts * MAX_CONCURRENT_CALLS / (args.latency_ms / 1000) / args.capacity, 2
        ),
        "measuredOverload": _measured_overload(results, args.capacity),
        "streamRate": args.stream_rate,
        "results": results,
    }
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    clean = all(r["clean"] and not r["crashed"] for r in results)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
