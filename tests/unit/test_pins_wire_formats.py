"""Pins for the text formats (found by mutation testing: tests/mutation): each unit,
each digit bound and each fraction rule from both sides, and ETags and dates at
their edges. Durations are also checked against an independent tick count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.wire_formats import (
    MAX_TICKS,
    TICKS_PER_SECOND,
    bare_etag,
    canonical_duration,
    format_duration,
    format_http_date,
    parse_duration,
    parse_etag,
    parse_http_date,
)

S = TICKS_PER_SECOND


@pytest.mark.parametrize(
    ("text", "ticks"),
    [
        ("P1W", 7 * 86_400 * S),
        ("p2w3d", 17 * 86_400 * S),
        ("P1D", 86_400 * S),
        ("PT1H", 3_600 * S),
        ("PT1M", 60 * S),
        ("PT1S", S),
        ("PT0.1S", S // 10),
        ("PT0.0000001S", 1),
        ("PT1.1234567S", S + 1_234_567),
        ("P1DT1H1M1.5S", (86_400 + 3_600 + 60 + 1) * S + S // 2),
        ("pt1h2m", 3_720 * S),
        ("PT1H3S", 3_603 * S),
        ("PT2M3S", 123 * S),
        ("P9999W", 9999 * 7 * 86_400 * S),
        ("P9999999D", 9_999_999 * 86_400 * S),
        ("PT9999999H", 9_999_999 * 3_600 * S),
        ("PT99999999M", 99_999_999 * 60 * S),
        ("PT999999999S", 999_999_999 * S),
        ("01:02", (3_600 + 120) * S),
        ("1:02", (3_600 + 120) * S),
        ("23:59:59", (86_399) * S),
        ("0:0:0", 0),
        ("2.03:04:05.5", ((2 * 24 + 3) * 3_600 + 4 * 60 + 5) * S + S // 2),
        ("00:00:00.0000001", 1),
        ("9999999.00:00", 9_999_999 * 86_400 * S),
        ("10675199.02:48:05.4775807", MAX_TICKS),
    ],
)
def test_durations_are_exact_ticks(text: str, ticks: int) -> None:
    assert parse_duration(text) == ticks


@pytest.mark.parametrize(
    "text",
    [
        "P10000W",
        "P10000000D",
        "PT10000000H",
        "PT100000000M",
        "PT1000000000S",
        "PT0.12345678S",
        "PT1.S",
        "24:00",
        "00:60",
        "00:00:60",
        "00:00:00.12345678",
        "10000000.00:00",
        "1.2.03:04",
        "PT",
        "P1DT",
        "P1H",
        "01:02:03:04",
    ],
)
def test_one_past_each_bound_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ticks", "text"),
    [
        (0, "PT0S"),
        (1, "PT0.0000001S"),
        (S // 2, "PT0.5S"),
        (S + 1_000_000, "PT1.1S"),
        (60 * S, "PT1M"),
        (3_600 * S, "PT1H"),
        (86_400 * S, "P1D"),
        (86_400 * S + 1, "P1DT0.0000001S"),
        ((86_400 + 3_600 + 60 + 1) * S, "P1DT1H1M1S"),
        (3_601 * S, "PT1H1S"),
        (10 * S, "PT10S"),
    ],
)
def test_format_omits_zero_parts(ticks: int, text: str) -> None:
    assert format_duration(ticks) == text


# Up to 7 digits of days: the text form has no more (P9999W9999999D parses, but its
# canonical P10069993D is the one text Batch gets, not one a message may carry).
@settings(max_examples=60)
@given(st.integers(min_value=0, max_value=10_000_000 * 86_400 * S - 1))
def test_any_tick_count_round_trips(ticks: int) -> None:
    text = format_duration(ticks)
    assert parse_duration(text) == ticks
    assert canonical_duration(text) == text


@settings(max_examples=60)
@given(
    st.integers(0, 9_999_999),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 9_999_999),
)
def test_timespan_text_agrees_with_timedelta(
    days: int, hours: int, minutes: int, seconds: int, fraction: int
) -> None:
    text = f"{days}.{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:07d}"
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    assert parse_duration(text) == (expected // timedelta(microseconds=1)) * 10 + fraction


# --- HTTP dates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02-17t00:00:00z", datetime(2025, 2, 17, tzinfo=UTC)),
        ("2025-02-17T00:00Z", datetime(2025, 2, 17, tzinfo=UTC)),
        ("2025-02-17T00:00:00.123456Z", datetime(2025, 2, 17, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2025-02-17T00:00:00-01:30", datetime(2025, 2, 17, 1, 30, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2000-02-29T00:00:00Z", datetime(2000, 2, 29, tzinfo=UTC)),
        ("Thu, 29 Feb 2024 23:59:59 GMT", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("Sun, 31 Dec 9999 23:59:59 GMT", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("Mon, 30 Apr 2025 00:00:00 GMT", datetime(2025, 4, 30, tzinfo=UTC)),  # weekday not checked
    ],
)
def test_dates_accepted(text: str, expected: datetime) -> None:
    assert parse_http_date(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2025-02-29T00:00:00Z", "not a date:"),
        ("1900-02-29T00:00:00Z", "not a date:"),
        ("Sat, 29 Feb 2025 00:00:00 GMT", "not a date:"),
        ("Wed, 31 Apr 2025 00:00:00 GMT", "not a date:"),
        ("2025-02-17T24:00:00Z", "not a date:"),
        ("0000-01-01T00:00:00Z", "not a date:"),
        ("0001-01-01T00:00:00+14:00", "exists in UTC"),
        ("Mon, 17 Feb 2025 00:00:00 UTC", "not a date:"),
    ],
)
def test_dates_refused_with_their_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_http_date(text)


def test_format_http_date_is_utc_without_microseconds() -> None:
    local = datetime(2025, 2, 17, 2, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert format_http_date(local) == "Mon, 17 Feb 2025 00:00:00 GMT"


# --- ETags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("*", "*"),
        ("a", '"a"'),
        ('"a"', '"a"'),
        ("x" * 256, '"' + "x" * 256 + '"'),
        ('"' + "x" * 256 + '"', '"' + "x" * 256 + '"'),
        ("0x8D!~", '"0x8D!~"'),
        ("W", '"W"'),
    ],
)
def test_etags_accepted(text: str, sent: str) -> None:
    assert parse_etag(text) == sent


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x" * 257, "not an ETag"),
        ('"' + "x" * 257 + '"', "not an ETag"),
        ("", "not an ETag"),
        ('""', "not an ETag"),
        ('"', "not an ETag"),
        ('a"b', "not an ETag"),
        ("a b", "not an ETag"),
        ("a\n", "not an ETag"),
        ("W/a", "weak"),
        ('"W/a"', "weak"),
    ],
)
def test_etags_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_etag(text)


def test_bare_etag() -> None:
    assert bare_etag('"0x1"') == "0x1"
    assert bare_etag("0x1") == "0x1"
    assert bare_etag('"') == '"'
    assert bare_etag('""') == ""
    assert bare_etag("*") == "*"


def test_odd_quotes_are_kept() -> None:
    assert bare_etag('a"') == 'a"'
    assert bare_etag('"a') == '"a'


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_duration, "Q" + "x" * 99),
        (parse_http_date, "Q" + "x" * 99),
        (parse_http_date, "0001-01-01T00:00:00+14:00" + "x" * 0),
        (parse_etag, "Q" + " " * 99),
    ],
)
def test_a_refusal_never_quotes_the_text(parse: Any, text: str) -> None:
    # The message reaches the rejected event; the text may be anything, a secret too.
    with pytest.raises(ValueError, match=r"^not ") as caught:
        parse(text)
    assert "Q" not in str(caught.value) and "0001" not in str(caught.value)
