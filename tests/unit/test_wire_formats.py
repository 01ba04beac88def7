from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.wire_formats import (
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
    "text", ["", "P", "PT", "P1Y", "P1M", "1h", "24:00:00", "00:60:00", "-01:00:00", "PT-1H"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|TimeSpan"):
        parse_duration(text)


def test_batch_unlimited_duration_round_trips() -> None:
    unlimited = parse_duration("P10675199DT2H48M5.4775807S")
    assert unlimited > timedelta(days=10_675_199)
    assert format_duration(unlimited).startswith("P10675199DT2H48M5.47758")


def test_http_dates() -> None:
    expected = datetime(2025, 2, 17, tzinfo=UTC)
    assert parse_http_date("Mon, 17 Feb 2025 00:00:00 GMT") == expected
    assert parse_http_date("2025-02-17T01:00:00+01:00") == expected
    assert parse_http_date("2025-02-17T00:00:00Z") == expected
    assert format_http_date(expected) == "Mon, 17 Feb 2025 00:00:00 GMT"
    for bad in ("2025-02-17T00:00:00", "17 February", "Mon, 17 Feb 2025 00:00:00"):
        with pytest.raises(ValueError, match=r"date|offset|zone"):
            parse_http_date(bad)


def test_etags_are_quoted_once() -> None:
    assert parse_etag("0x8D4100FC49F0278") == '"0x8D4100FC49F0278"'
    assert parse_etag('"0x8D4100FC49F0278"') == '"0x8D4100FC49F0278"'
    assert parse_etag("*") == "*"
