"""ISO 8601 durations as the Batch service reads and writes them.

The service is .NET: a duration is a TimeSpan, an Int64 count of 100 ns ticks,
read and written with `XmlConvert` (whose parser is `XsdDuration` in
dotnet/runtime, `src/libraries/System.Private.Xml/src/System/Xml/Schema/XsdDuration.cs`).
This module follows that parser, in exact integer arithmetic (never float):

- grammar `[-]P[nY][nM][nD][T[nH][nM][n][.f]S]`, ASCII digits only, at least one
  part, surrounding whitespace trimmed; no weeks. As in XsdDuration, seconds
  may be written `.5S` or `5.S`;
- every component (years, months, days, hours, minutes, whole seconds) must fit
  an Int32, or the value is refused (XsdDuration: OverflowException);
- fractional seconds are truncated, never rounded: digits past the 9th are
  dropped by the parser and nanoseconds become ticks by integer division, so
  `PT1.99999999S` is `PT1.9999999S`;
- days = (years + months // 12) * 365 + (months % 12) * 30 + days;
- the total must fit an Int64 tick count: the largest duration is
  `P10675199DT2H48M5.4775807S` (TimeSpan.MaxValue, what GET shows for
  "unlimited"); one tick more, or `...5.477581S` as a microsecond-rounding client
  sends it, is refused (XsdDuration: OverflowException in a checked cast).

Negative durations parse in XsdDuration; the emulator refuses them (no Batch
duration property means anything negative; the service's answer is
undocumented). It prints the canonical form XmlConvert writes (`PT1H30M`, `P3D`,
`PT0S`) no matter how the client spelled the value; azure-batch 15.1, for one,
sends `PT01H30M01.5S`.
"""

from __future__ import annotations

import re

TICKS_PER_SECOND = 10_000_000
TICKS_PER_MINUTE = 60 * TICKS_PER_SECOND
TICKS_PER_HOUR = 60 * TICKS_PER_MINUTE
TICKS_PER_DAY = 24 * TICKS_PER_HOUR
TIMESPAN_MAX_TICKS = 2**63 - 1
INT32_MAX = 2**31 - 1
FRACTION_DIGITS = 7  # one tick is 10**-7 s
UNLIMITED = "P10675199DT2H48M5.4775807S"

_DURATION = re.compile(
    r"(?P<negative>-)?P(?:(?P<years>[0-9]+)Y)?(?:(?P<months>[0-9]+)M)?(?:(?P<days>[0-9]+)D)?"
    r"(?P<time>T(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?"
    r"(?:(?P<seconds>[0-9]*)\.(?P<fraction>[0-9]*)S|(?P<whole_seconds>[0-9]+)S)?)?"
)
_PARTS = ("years", "months", "days", "hours", "minutes", "seconds", "whole_seconds")


def parse_duration(text: str) -> int:
    """Return the duration in ticks; raise ValueError for anything XmlConvert refuses."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not _has_part(match):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. PT1H, P2DT30M)")
    if match["negative"]:
        raise ValueError(f"{text!r} is negative")
    parts = {name: int(match[name] or 0) for name in _PARTS}
    for name, value in parts.items():
        if value > INT32_MAX:
            raise ValueError(f"{text!r}: the {name.replace('whole_', '')} part exceeds Int32")
    seconds = parts["seconds"] + parts["whole_seconds"]
    days = (parts["years"] + parts["months"] // 12) * 365 + (parts["months"] % 12) * 30 + parts["days"]
    fraction = (match["fraction"] or "")[:FRACTION_DIGITS].ljust(FRACTION_DIGITS, "0")
    ticks = (
        days * TICKS_PER_DAY
        + parts["hours"] * TICKS_PER_HOUR
        + parts["minutes"] * TICKS_PER_MINUTE
        + seconds * TICKS_PER_SECOND
        + int(fraction)
    )
    if ticks > TIMESPAN_MAX_TICKS:
        raise ValueError(f"{text!r} exceeds the largest duration, {UNLIMITED} (Int64 ticks)")
    return ticks


def _has_part(match: re.Match[str]) -> bool:
    time_given = match["time"] is not None
    time_parts = any(match[name] is not None for name in ("hours", "minutes", "fraction", "whole_seconds"))
    if time_given and not time_parts:
        return False  # "PT", "P1DT": a T needs something after it
    return time_parts or any(match[name] is not None for name in ("years", "months", "days"))


def format_duration(ticks: int) -> str:
    """XmlConvert's canonical text for a non-negative TimeSpan."""
    days, rest = divmod(ticks, TICKS_PER_DAY)
    hours, rest = divmod(rest, TICKS_PER_HOUR)
    minutes, rest = divmod(rest, TICKS_PER_MINUTE)
    seconds, fraction = divmod(rest, TICKS_PER_SECOND)
    text = "P"
    if days:
        text += f"{days}D"
    if hours or minutes or seconds or fraction:
        text += "T"
        if hours:
            text += f"{hours}H"
        if minutes:
            text += f"{minutes}M"
        if seconds or fraction:
            text += f"{seconds}"
            if fraction:
                text += "." + f"{fraction:0{FRACTION_DIGITS}d}".rstrip("0")
            text += "S"
    return text if text != "P" else "PT0S"


def normalise_duration(text: str) -> str:
    return format_duration(parse_duration(text))
