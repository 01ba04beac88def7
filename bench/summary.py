"""Pure arithmetic for bench/run.py: percentiles, medians over rounds, ratios, the table.

No I/O here (bench/run.py does the processes and files), so every figure the bench
prints can be checked by tests/unit/test_bench_summary.py.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

# The variants, in the order the table shows them; BASELINE is the ratio's denominator.
VARIANTS = ("pipeline_publish", "pipeline", "aiohttp", "azure_batch_sdk", "httpx_default")
BASELINE = "aiohttp"
LABELS = {
    "pipeline_publish": "(a) pipeline + publish",
    "pipeline": "(b) pipeline, no publish",
    "aiohttp": "(c) bare aiohttp",
    "azure_batch_sdk": "(d) azure-batch update_job, pooled",
    "httpx_default": "(e) httpx default transport",
    "azure_batch_sdk_ca_file": "azure-batch, connection_verify=<CA file>",
    "pipeline_publish_2links": "(a) with OUTCOME_PUBLISH_LINKS=2",
}
# Not in a default run: the configuration behind the old 6.5 ms figure, kept to show why;
# and (a) with a second topic link (the publish's latency, docs/performance.md).
EXTRA_VARIANTS = ("azure_batch_sdk_ca_file", "pipeline_publish_2links")


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default and statistics.quantiles(method="inclusive").
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rotation(items: Sequence[str], round_index: int) -> list[str]:
    """The variant order for one round: rotated by one per round, so none always goes first."""
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def median_by_key(rounds: Sequence[Mapping[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline, or None when the baseline is not positive (no ratio to speak of)."""
    if baseline <= 0:
        return None
    return value / baseline


def ratios_to_baseline(
    per_variant: Mapping[str, Mapping[int, float]], baseline: str = BASELINE
) -> dict[str, dict[int, float | None]]:
    """{variant: {concurrency: value / baseline's value at that concurrency}}."""
    base = per_variant[baseline]
    return {
        variant: {c: ratio(v, base[c]) if c in base else None for c, v in by_c.items()}
        for variant, by_c in per_variant.items()
    }


def rss_trend(samples_kb: Sequence[int], tolerance: float = 0.05) -> dict[str, object]:
    """Start, end and peak RSS, and whether it is flat over the second half of the run.

    The first half is excluded from the flatness test: pools, caches and the allocator's
    arenas fill up early; a leak shows as growth that continues to the end.
    """
    if not samples_kb:
        raise ValueError("no RSS samples")
    middle = samples_kb[len(samples_kb) // 2]
    end = samples_kb[-1]
    growth = (end - middle) / middle if middle > 0 else 0.0
    return {
        "start_kb": samples_kb[0],
        "end_kb": end,
        "peak_kb": max(samples_kb),
        "second_half_growth": round(growth, 4),
        "flat": growth <= tolerance,
    }


def messages_per_second(
    cpu_ms_per_message: float, concurrency: int, latency_ms: float, cores: float = 1.0
) -> float:
    """What one instance carries: the lesser of the CPU bound and the concurrency bound.

    CPU bound: cores / CPU seconds per message. Concurrency bound (Little's law):
    concurrency / (Batch latency + the client's own CPU time per message).
    """
    if cpu_ms_per_message <= 0 or concurrency <= 0 or latency_ms < 0 or cores <= 0:
        raise ValueError("CPU, concurrency and cores must be positive, latency not negative")
    cpu_bound = cores * 1000 / cpu_ms_per_message
    concurrency_bound = concurrency * 1000 / (latency_ms + cpu_ms_per_message)
    return min(cpu_bound, concurrency_bound)


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(
    cpu_ms: Mapping[str, Mapping[int, float]],
    instructions: Mapping[str, Mapping[int, float]] | None = None,
    concurrencies: Sequence[int] = (1, 16, 64),
) -> str:
    """The side-by-side table: CPU ms per message (ratio to bare aiohttp), per concurrency.

    With instruction counts, each cell also shows millions of instructions and their ratio.
    """
    cpu_ratio = ratios_to_baseline(cpu_ms)
    ins_ratio = ratios_to_baseline(instructions) if instructions and BASELINE in instructions else None
    header = ["variant", *(f"c={c}" for c in concurrencies)]
    rows = [header]
    for variant in (*VARIANTS, *EXTRA_VARIANTS):
        if variant not in cpu_ms:
            continue
        cells = [LABELS.get(variant, variant)]
        for c in concurrencies:
            value = cpu_ms[variant].get(c)
            text = f"{_cell(value, 3)} ms ({_cell(cpu_ratio[variant].get(c), 2)}x)"
            if instructions and variant in instructions and c in instructions[variant]:
                mi = instructions[variant][c] / 1e6
                r = ins_ratio[variant].get(c) if ins_ratio else None
                text += f" / {mi:.2f} M ({_cell(r, 2)}x)"
            cells.append(text)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
