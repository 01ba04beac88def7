"""The bench's arithmetic (bench/summary.py): percentiles, rotation, ratios, RSS trend,
per-instance throughput and the table. No timing here: only what the figures mean."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.summary import (
    BASELINE,
    VARIANTS,
    format_table,
    messages_per_second,
    percentile,
    ratio,
    ratios_to_baseline,
    rotation,
    rss_trend,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
samples = st.lists(finite, min_size=1, max_size=200)


@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_lies_within_the_samples_and_grows_with_q(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) <= p <= max(values)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)
    assert percentile(values, q) <= percentile(values, min(100.0, q + 1)) + 1e-9


@given(st.lists(finite, min_size=2, max_size=200))
def test_percentile_agrees_with_the_inclusive_quantiles_of_the_standard_library(values: list[float]) -> None:
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    for q, expected in zip((25, 50, 75), quartiles, strict=True):
        assert percentile(values, q) == pytest.approx(expected, abs=1e-6)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), abs=1e-6)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 99) == pytest.approx(10.9)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_what_is_not_a_percentile(q: float) -> None:
    with pytest.raises(ValueError, match="must be within"):
        percentile([1.0], q)
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8, unique=True), st.integers(0, 1000))
def test_rotation_is_a_rotation_and_each_item_leads_once_per_cycle(items: list[str], r: int) -> None:
    order = rotation(items, r)
    assert sorted(order) == sorted(items)
    assert order[0] == items[r % len(items)]
    leaders = {rotation(items, r + k)[0] for k in range(len(items))}
    assert leaders == set(items)


def test_ratios_divide_by_the_baseline_at_the_same_concurrency() -> None:
    cpu = {"aiohttp": {1: 0.2, 16: 0.25}, "pipeline": {1: 0.5, 16: 1.0, 64: 2.0}}
    r = ratios_to_baseline(cpu)
    assert r["aiohttp"] == {1: 1.0, 16: 1.0}
    assert r["pipeline"][1] == pytest.approx(2.5)
    assert r["pipeline"][16] == pytest.approx(4.0)
    assert r["pipeline"][64] is None  # no baseline figure there: no ratio, not a made-up one
    assert ratio(1.0, 0.0) is None


@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=100))
def test_rss_trend_reports_start_end_peak(values: list[int]) -> None:
    trend = rss_trend(values)
    assert (trend["start_kb"], trend["end_kb"], trend["peak_kb"]) == (values[0], values[-1], max(values))


def test_rss_growth_early_is_flat_growth_to_the_end_is_not() -> None:
    warming_up = [50_000, 70_000, 80_000, 80_100, 80_100, 80_200]
    assert rss_trend(warming_up)["flat"] is True
    leaking = [50_000, 60_000, 70_000, 80_000, 90_000, 100_000]
    trend = rss_trend(leaking)
    assert trend["flat"] is False
    assert trend["second_half_growth"] == pytest.approx(0.25)


def test_throughput_is_bound_by_cpu_or_by_concurrency_whichever_is_lower() -> None:
    # 0.5 ms CPU: one core carries 2,000/s; 16 in flight at 20 ms carry 16/0.0205 = 780/s.
    assert messages_per_second(0.5, 16, 20) == pytest.approx(16_000 / 20.5)
    # 64 in flight at 20 ms would carry 3,122/s: the core's 2,000/s is the cap.
    assert messages_per_second(0.5, 64, 20) == pytest.approx(2000)
    assert messages_per_second(0.5, 64, 20, cores=2) == pytest.approx(64_000 / 20.5)
    with pytest.raises(ValueError, match="must be positive"):
        messages_per_second(0, 16, 20)


@given(
    st.floats(min_value=0.01, max_value=100),
    st.integers(1, 1000),
    st.floats(min_value=0, max_value=10_000),
)
def test_throughput_never_exceeds_either_bound(cpu_ms: float, concurrency: int, latency_ms: float) -> None:
    rate = messages_per_second(cpu_ms, concurrency, latency_ms)
    assert rate <= 1000 / cpu_ms + 1e-9
    assert rate <= concurrency * 1000 / (latency_ms + cpu_ms) + 1e-9


def test_table_has_a_row_per_variant_and_the_baseline_at_one() -> None:
    cpu = {v: {1: 0.2 * (i + 1), 16: 0.1 * (i + 1)} for i, v in enumerate(VARIANTS)}
    instructions = {v: {1: 5e5 * (i + 1), 16: 5e5 * (i + 1)} for i, v in enumerate(VARIANTS)}
    table = format_table(cpu, instructions, (1, 16))
    lines = table.splitlines()
    assert len(lines) == 2 + len(VARIANTS)
    baseline_row = next(line for line in lines if "bare aiohttp" in line)
    assert baseline_row.count("(1.00x)") == 4
    pipeline_row = next(line for line in lines if "pipeline + publish" in line)
    assert BASELINE in cpu and "(0.33x)" in pipeline_row  # 0.2 / 0.6: the figures, not a constant


def test_callgrind_windows_are_read_in_dump_order_and_only_the_marked_ones(tmp_path: Path) -> None:
    from bench.run import callgrind_totals

    def dump(number: int, trigger: str, total: int) -> None:
        text = f"version: 1\ndesc: Trigger: {trigger}\nevents: Ir\nsummary: {total}\ntotals: {total}\n"
        (tmp_path / f"callgrind-x.out.{number}").write_text(text)

    # Numbered past 9 so that a text sort would put 10 before 2.
    for number, total in ((1, 500), (2, 700), (10, 900)):
        dump(number, "--dump-before=os_getpgrp", total)
    dump(11, "Program termination", 123)
    (tmp_path / "callgrind-x.out").write_text("totals: 1\n")
    assert callgrind_totals(tmp_path / "callgrind-x") == [500, 700, 900]
