"""The one bench command (bench/run.py) at its tiny size, as CI runs it.

It asserts only that the run is complete: every variant at every concurrency has a
positive figure for each measure, and the plot exists. Never a time or a ratio: those
belong to the bench's own output and docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {"pipeline_publish", "pipeline", "aiohttp", "azure_batch_sdk", "httpx_default"}
CONCURRENCY = {"1", "16", "64"}


def run_bench(*argv: str, timeout: float) -> str:
    """Run a bench script; its stdout."""
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_tiny_bench_writes_every_figure_and_the_plot(tmp_path: Path) -> None:
    stdout = run_bench("bench/run.py", "--tiny", "--out-dir", str(tmp_path), "--name", "tiny", timeout=300)
    results = json.loads((tmp_path / "tiny.json").read_text())
    png = (tmp_path / "tiny.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000

    assert set(results["cpu"]) == VARIANTS
    assert set(results["latency"]) == VARIANTS
    for variant in VARIANTS:
        assert set(results["cpu"][variant]) == CONCURRENCY, variant
        assert set(results["latency"][variant]) == CONCURRENCY, variant
        for c in CONCURRENCY:
            cpu = results["cpu"][variant][c]
            assert cpu["cpu_ms"] > 0 and cpu["rps"] > 0, (variant, c, cpu)
            # Every call was a real PATCH the emulator answered.
            assert cpu["batch_requests"] >= results["sizes"]["messages"], (variant, c, cpu)
            latency = results["latency"][variant][c]
            assert 0 < latency["p50_ms"] <= latency["p99_ms"], (variant, c, latency)
            assert latency["samples"] == results["sizes"]["latency_messages"]
        rss = results["rss"][variant]
        assert 0 < rss["start_kb"] <= rss["peak_kb"] and rss["end_kb"] > 0, variant
        # Pooled clients and cached tokens: something was opened and fetched, once at least.
        assert results["connections_opened_total"][variant] > 0, variant
        assert results["token_requests_total"][variant] >= 1, variant
        assert results["cpu_ratio_to_aiohttp"][variant]["16"] > 0
    for variant in VARIANTS:
        rates = results["scale_out_per_instance"][variant]
        assert set(rates) == {f"c={c} L={latency}ms" for c in CONCURRENCY for latency in (20, 100)}
        assert all(rate > 0 for rate in rates.values()), (variant, rates)
    cold = results["cold_start"]
    assert cold["function_app"]["import_s"] > 0 and cold["function_app"]["first_message_s"] > 0
    assert cold["dependencies"]["import_s"] > 0
    assert "bare aiohttp" in stdout and "(1.00x)" in stdout


def test_publish_latency_bench_reports_every_link_count(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    run_bench(
        "bench/publish_latency.py", "--links", "1", "2", "--events", "64", "--rounds", "1",
        "--concurrency", "8", "--json", str(out), timeout=120,
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"8"} and set(results["8"]) == {"1", "2"}
    for figures in results["8"].values():
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], figures
        assert figures["events_per_transfer"] >= 1 and figures["cpu_ms_per_event"] > 0, figures
