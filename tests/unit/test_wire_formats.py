from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.wire_formats import (
    MAX_TICKS,
    canonical_duration,
    format_duration,
    format_http_date,
    parse_duration,
    parse_etag,
    parse_http_date,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H", "PT1H"),
        ("pt90m", "PT1H30M"),
        ("P2D", "P2D"),
        ("P1W", "P7D"),
        ("PT0.5S", "PT0.5S"),
        ("01:00:00", "PT1H"),
        ("1.02:03:04", "P1DT2H3M4S"),
        ("00:00:01.25", "PT1.25S"),
        ("00:30", "PT30M"),
        ("PT0S", "PT0S"),
    ],
)
def test_durations_are_sent_as_iso(text: str, expected: str) -> None:
    assert canonical_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "P1Y", "P1M", "1h", "24:00:00", "00:60:00", "-01:00:00", "PT-1H", " PT1H", "PT1H\n"],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|TimeSpan"):
        parse_duration(text)


def test_batch_unlimited_duration_round_trips_exactly() -> None:
    unlimited = parse_duration("P10675199DT2H48M5.4775807S")
    assert unlimited == MAX_TICKS == 2**63 - 1
    assert format_duration(unlimited) == "P10675199DT2H48M5.4775807S"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("P10675199DT2H48M5.4775808S")


@pytest.mark.parametrize("ticks", [0, 1, 9_999_999, 10_000_000, 36_000_000_000, 864_000_000_001, MAX_TICKS])
def test_ticks_round_trip_through_text(ticks: int) -> None:
    assert parse_duration(format_duration(ticks)) == ticks


def test_http_dates() -> None:
    expected = datetime(2025, 2, 17, tzinfo=UTC)
    assert parse_http_date("Mon, 17 Feb 2025 00:00:00 GMT") == expected
    assert parse_http_date("2025-02-17T01:00:00+01:00") == expected
    assert parse_http_date("2025-02-17T00:00:00Z") == expected
    assert format_http_date(expected) == "Mon, 17 Feb 2025 00:00:00 GMT"
    for bad in (
        "2025-02-17T00:00:00",
        "17 February",
        "Mon, 17 Feb 2025 00:00:00",
        "2025-02-17T00:00:00Z\n",
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: no datetime holds it
        "2025-02-30T00:00:00Z",
    ):
        with pytest.raises(ValueError, match=r"date|offset|zone"):
            parse_http_date(bad)


def test_etags_are_quoted_once() -> None:
    assert parse_etag("0x8D4100FC49F0278") == '"0x8D4100FC49F0278"'
    assert parse_etag('"0x8D4100FC49F0278"') == '"0x8D4100FC49F0278"'
    assert parse_etag("*") == "*"


@pytest.mark.parametrize("year", [1, 68, 99, 2025])
def test_rfc1123_years_are_read_as_written(year: int) -> None:
    weekday = datetime(year, 1, 1).strftime("%a")
    assert parse_http_date(f"{weekday}, 01 Jan {year:04d} 00:00:00 GMT").year == year


def test_weak_etags_are_refused() -> None:
    for text in ("W/abc", '"W/abc"'):
        with pytest.raises(ValueError, match="weak"):
            parse_etag(text)
