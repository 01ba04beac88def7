"""The one bench command: the pipeline against its peers, side by side, from one run.

    python bench/run.py --size tiny          # what CI runs (~1 min): every figure, few messages
    python bench/run.py --size medium        # ~10 min
    python bench/run.py --size full          # the figures docs/performance.md shows

Writes bench/results/<name>.json and <name>.png (CPU per message against concurrency,
one line per variant) and prints the table with ratios to bare aiohttp.

Processes: the Batch emulators and the token endpoint in one (bench/servers.py), the
AMQP broker in another, and each variant in its own fresh process (bench/worker.py),
so the CPU time and RSS a worker reports are its own. Rounds are interleaved, the
variant order rotated per round, and the median over rounds is reported: these shared
2-core machines swing by 20-30 % between runs, so the ratios, not the absolute times,
are the figures to hold on to. Under valgrind (when installed) it also counts
instructions per message, which repeat within about 1 %.

Measures: client CPU time per message (time.process_time of the worker), throughput;
callgrind instructions; latency p50/p99 against an emulator that takes --latency-ms
over each request; import time and first-message latency (fresh processes,
bench/coldstart.py); RSS over many messages (start, end, peak, flat or not); TCP
connections the emulator accepted; token requests the identity stand-in answered.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.summary import (  # noqa: E402
    BASELINE,
    EXTRA_VARIANTS,
    LABELS,
    VARIANTS,
    format_table,
    messages_per_second,
    percentile,
    ratios_to_baseline,
    rotation,
    rss_trend,
)

KEY = "bench-token-signing-key-00000001"


@dataclass(frozen=True)
class Size:
    rounds: int
    messages: int  # per round, variant and concurrency
    latency_messages: int
    rss_messages: int
    cold_starts: int
    callgrind_messages: int  # 0: no callgrind


SIZES = {
    "tiny": Size(
        rounds=1, messages=64, latency_messages=64, rss_messages=256, cold_starts=1, callgrind_messages=0
    ),
    "medium": Size(
        rounds=3,
        messages=1000,
        latency_messages=500,
        rss_messages=5000,
        cold_starts=3,
        callgrind_messages=128,
    ),
    "full": Size(
        rounds=5,
        messages=1000,
        latency_messages=2000,
        rss_messages=20000,
        cold_starts=5,
        callgrind_messages=512,
    ),
}


class Proc:
    """A child speaking one JSON line per request and per reply."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args!r} ended (exit {self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, request: str) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(request + "\n")
        stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def bench_broker_config(path: Path) -> Path:
    """The checked-in broker config with the outcome topic's subscriptions removed.

    The bench measures the client; undrained subscriptions would grow the broker's
    backlog over a 20,000-message run and slow it down (issue 11, item 5).
    """
    config = json.loads((ROOT / "standins" / "servicebus" / "Config.json").read_text())
    for namespace in config["UserConfig"]["Namespaces"]:
        for topic in namespace["Topics"]:
            if topic["Name"] == "job-outcomes":
                topic["Subscriptions"] = []
    path.write_text(json.dumps(config))
    return path


def start_broker(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "standins.servicebus", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


class Bench:
    def __init__(self, args: argparse.Namespace, size: Size, workdir: Path) -> None:
        self.args = args
        self.size = size
        self.workdir = workdir
        self.servers = Proc(
            ["-m", "bench.servers", "--signing-key", KEY, "--latency-ms", str(args.latency_ms)]
        )
        self.info = self.servers.read()
        self.broker = start_broker(bench_broker_config(workdir / "broker-config.json"))
        assert self.broker.stdout is not None
        self.info["connection_string"] = self.broker.stdout.readline().strip()
        self.info_path = workdir / "servers.json"
        self.info_path.write_text(json.dumps(self.info))
        self.workers: dict[str, Proc] = {}
        self.counts: dict[str, dict[str, int]] = {
            v: {"connections": 0, "token_requests": 0} for v in args.variants
        }
        self.stats()  # zero the counters

    def stats(self) -> dict[str, Any]:
        return self.servers.ask("stats")

    def ask(self, variant: str, command: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The worker's reply, and what the servers saw while it ran."""
        reply = self.workers[variant].ask(json.dumps(command))
        seen = self.stats()
        self.counts[variant]["connections"] += sum(seen["connections"].values())
        self.counts[variant]["token_requests"] += seen["token_requests"]
        return reply, seen

    def start_workers(self) -> dict[str, int]:
        """One at a time, so that a token fetched at start-up is charged to its worker."""
        ready: dict[str, int] = {}
        for variant in self.args.variants:
            self.workers[variant] = worker = Proc(
                ["-m", "bench.worker", variant, "--info", str(self.info_path)]
            )
            ready[variant] = worker.read()["rss_kb"]
            seen = self.stats()
            self.counts[variant]["connections"] += sum(seen["connections"].values())
            self.counts[variant]["token_requests"] += seen["token_requests"]
        return ready

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.servers.close()
        self.broker.terminate()
        self.broker.wait(timeout=10)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_rounds(bench: Bench) -> dict[str, Any]:
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {
        v: {c: [] for c in bench.args.concurrency} for v in bench.args.variants
    }
    for r in range(bench.size.rounds):
        for c in bench.args.concurrency:
            for variant in rotation(bench.args.variants, r + c):
                reply, seen = bench.ask(variant, {"op": "cpu", "n": bench.size.messages, "c": c})
                reply["connections"] = sum(seen["connections"].values())
                reply["batch_requests"] = seen["batch_requests"]["plain"]
                rows[variant][c].append(reply)
            log(f"round {r + 1}/{bench.size.rounds} c={c} done")
    out: dict[str, Any] = {}
    for variant, by_c in rows.items():
        out[variant] = {
            str(c): {
                "cpu_ms": statistics.median(x["cpu_ms"] for x in runs),
                "cpu_ms_rounds": [round(x["cpu_ms"], 4) for x in runs],
                "rps": statistics.median(x["rps"] for x in runs),
                "connections_opened": sum(x["connections"] for x in runs),
                "batch_requests": sum(x["batch_requests"] for x in runs),
            }
            for c, runs in by_c.items()
        }
    return out


def latency_phase(bench: Bench) -> dict[str, Any]:
    out: dict[str, Any] = {v: {} for v in bench.args.variants}
    for c in bench.args.concurrency:
        for variant in rotation(bench.args.variants, c):
            reply, _ = bench.ask(variant, {"op": "latency", "n": bench.size.latency_messages, "c": c})
            samples = reply["latencies_ms"]
            out[variant][str(c)] = {
                "p50_ms": percentile(samples, 50),
                "p99_ms": percentile(samples, 99),
                "samples": len(samples),
            }
        log(f"latency c={c} done")
    return out


def rss_phase(bench: Bench, ready: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in bench.args.variants:
        reply, seen = bench.ask(variant, {"op": "rss", "n": bench.size.rss_messages, "c": 16})
        trend = rss_trend(reply["samples_kb"])
        out[variant] = {
            **trend,
            "messages": reply["messages"],
            "concurrency": 16,
            "after_start_kb": ready[variant],
            "ru_maxrss_kb": reply["ru_maxrss_kb"],
            "connections_opened": sum(seen["connections"].values()),
            "samples_kb": reply["samples_kb"],
        }
        log(f"rss {variant}: {trend}")
    return out


def cold_start_phase(bench: Bench) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"function_app": [], "dependencies": []}
    for _ in range(bench.size.cold_starts):
        for kind, extra in (("function_app", []), ("dependencies", ["--deps"])):
            done = subprocess.run(
                [sys.executable, "-m", "bench.coldstart", "--info", str(bench.info_path), *extra],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
            )
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    bench.stats()
    return {
        kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"runs": len(rs)}
        for kind, rs in runs.items()
    }


def callgrind_phase(bench: Bench) -> dict[str, Any] | None:
    n = bench.size.callgrind_messages
    valgrind = shutil.which("valgrind")
    if not n or bench.args.no_callgrind or valgrind is None:
        return None
    out: dict[str, Any] = {}
    for variant in bench.args.variants:
        prefix = bench.workdir / f"callgrind-{variant}"
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--zero-before=os_getppid",
                "--dump-before=os_getpgrp",
                f"--callgrind-out-file={prefix}.out",
                sys.executable,
                "-m",
                "bench.worker",
                variant,
                "--info",
                str(bench.info_path),
                "--callgrind",
                str(n),
                "--concurrency",
                *map(str, bench.args.concurrency),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        totals = callgrind_totals(prefix)
        if done.returncode != 0 or len(totals) != len(bench.args.concurrency):
            # A variant that fails under valgrind loses its instruction counts, not the run.
            log(f"callgrind {variant} failed (exit {done.returncode}): {done.stderr[-500:]}")
            continue
        out[variant] = {str(c): totals[i] / n for i, c in enumerate(bench.args.concurrency)}
        bench.stats()
        log(f"callgrind {variant}: {out[variant]}")
    return out


def callgrind_totals(prefix: Path) -> list[int]:
    """Instruction totals of the os_getpgrp dumps, in order (the windows callgrind() marks)."""
    dumps = sorted(prefix.parent.glob(prefix.name + ".out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    totals = []
    for dump in dumps:
        text = dump.read_text()
        if "--dump-before=os_getpgrp" in text:
            match = re.search(r"^totals:\s*(\d+)", text, re.MULTILINE)
            assert match, dump
            totals.append(int(match.group(1)))
    return totals


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or these machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in (*VARIANTS, *EXTRA_VARIANTS):
        by_c = results["cpu"].get(variant)
        if not by_c:
            continue
        cs = sorted(int(c) for c in by_c)
        ax.plot(cs, [by_c[str(c)]["cpu_ms"] for c in cs], marker="o", label=LABELS[variant])
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["concurrency"], [str(c) for c in results["concurrency"]])
    ax.set_xlabel("concurrency (messages in flight)")
    ax.set_ylabel("client CPU per message (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"CPU per message, {results['size']} run, {results['taken']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES[args.size]
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    bench = Bench(args, size, workdir)
    results: dict[str, Any] = {
        "size": args.size,
        "taken": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "note": args.note,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "sizes": size.__dict__,
        "variants": list(args.variants),
        "concurrency": list(args.concurrency),
        "latency_ms_at_emulator": args.latency_ms,
    }
    try:
        ready = bench.start_workers()
        results["cpu"] = cpu_rounds(bench)
        results["latency"] = latency_phase(bench)
        results["rss"] = rss_phase(bench, ready)
        results["connections_opened_total"] = {v: c["connections"] for v, c in bench.counts.items()}
        results["token_requests_total"] = {v: c["token_requests"] for v, c in bench.counts.items()}
    finally:
        for worker in bench.workers.values():
            worker.close()
        bench.workers.clear()
    try:
        results["cold_start"] = cold_start_phase(bench)
        results["instructions_per_message"] = callgrind_phase(bench)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    cpu_ms = {v: {int(c): x["cpu_ms"] for c, x in by_c.items()} for v, by_c in results["cpu"].items()}
    results["cpu_ratio_to_aiohttp"] = (
        {v: {str(c): r for c, r in by_c.items()} for v, by_c in ratios_to_baseline(cpu_ms).items()}
        if BASELINE in cpu_ms
        else None
    )
    results["scale_out_per_instance"] = scale_out(cpu_ms)
    results["loadavg_at_end"] = os.getloadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def scale_out(cpu_ms: dict[str, dict[int, float]]) -> dict[str, Any]:
    """Messages/s one instance carries at Batch latencies of 20 and 100 ms (one core).

    One core: the Python worker runs one event loop in one process, whatever the
    instance size (summary.messages_per_second has the formula).
    """
    return {
        variant: {
            f"c={c} L={latency}ms": round(messages_per_second(cpu, c, latency))
            for c, cpu in by_c.items()
            for latency in (20, 100)
        }
        for variant, by_c in cpu_ms.items()
    }


def print_report(results: dict[str, Any]) -> None:
    cpu_ms = {v: {int(c): x["cpu_ms"] for c, x in by_c.items()} for v, by_c in results["cpu"].items()}
    ins = results.get("instructions_per_message")
    instructions = {v: {int(c): x for c, x in by_c.items()} for v, by_c in ins.items()} if ins else None
    print(
        f"\nCPU per message (median of {results['sizes']['rounds']} interleaved rounds), "
        "ratio to bare aiohttp"
    )
    print(format_table(cpu_ms, instructions, results["concurrency"]))
    print(f"\nlatency at a {results['latency_ms_at_emulator']:g} ms Batch delay: p50 / p99 ms")
    for variant in results["variants"]:
        cells = [
            f"c={c}: {x['p50_ms']:.1f} / {x['p99_ms']:.1f}" for c, x in results["latency"][variant].items()
        ]
        print(f"  {LABELS[variant]:<40} " + "   ".join(cells))
    print(
        "\nRSS (MB) start / end / peak over",
        results["sizes"]["rss_messages"],
        "messages at c=16; connections; token fetches",
    )
    for variant in results["variants"]:
        r = results["rss"][variant]
        print(
            f"  {LABELS[variant]:<40} {r['start_kb'] / 1024:.0f} / {r['end_kb'] / 1024:.0f} / "
            f"{r['peak_kb'] / 1024:.0f} {'flat' if r['flat'] else 'GROWING'}; "
            f"{results['connections_opened_total'][variant]} connections; "
            f"{results['token_requests_total'][variant]} token requests"
        )
    print("\nconnections the emulator accepted in the CPU rounds (warm-ups included), per concurrency")
    for variant in results["variants"]:
        cells = [f"c={c}: {x['connections_opened']}" for c, x in results["cpu"][variant].items()]
        requests = sum(x["batch_requests"] for x in results["cpu"][variant].values())
        print(f"  {LABELS[variant]:<40} " + "   ".join(cells) + f"   (for {requests} requests)")
    cold = results["cold_start"]
    print(
        f"\ncold start: import function_app {cold['function_app']['import_s']:.3f} s "
        f"(dependencies alone {cold['dependencies']['import_s']:.3f} s); first message "
        f"{cold['function_app']['first_message_s']:.3f} s after import "
        f"({cold['function_app']['first_message_cpu_s'] * 1000:.0f} ms CPU)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--tiny", dest="size", action="store_const", const="tiny", help="same as --size tiny")
    parser.add_argument("--name", help="results file name without extension (default: <date>-<size>)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. 'taken under contention')")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS + EXTRA_VARIANTS, default=list(VARIANTS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, help="the emulator's delay for the latency figures"
    )
    parser.add_argument("--no-callgrind", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    name = args.name or f"{datetime.now(UTC):%Y-%m-%d}-{args.size}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out_dir / f"{name}.png")
    print_report(results)
    print(f"\nwrote {args.out_dir / name}.json and .png in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
