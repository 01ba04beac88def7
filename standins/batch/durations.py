"""ISO 8601 durations as the Batch service reads and writes them.

The service is .NET: a duration is a TimeSpan (100 ns ticks), read and written
with `XmlConvert`. So it prints the canonical form (`PT1H30M`, `P3D`,
`P10675199DT2H48M5.4775807S` for "unlimited", which is TimeSpan.MaxValue) no
matter how the client spelled it; azure-batch 15.1, for one, sends
`PT01H30M01.5S`. Years and months are accepted as 365 and 30 days, as
XmlConvert does; weeks are not part of that grammar and are refused.
"""

from __future__ import annotations

import re

TICKS_PER_SECOND = 10_000_000
TICKS_PER_MINUTE = 60 * TICKS_PER_SECOND
TICKS_PER_HOUR = 60 * TICKS_PER_MINUTE
TICKS_PER_DAY = 24 * TICKS_PER_HOUR
TIMESPAN_MAX_TICKS = 2**63 - 1
UNLIMITED = "P10675199DT2H48M5.4775807S"

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+)(?:\.(?P<fraction>\d+))?S)?)?$"
)


def parse_duration(text: str) -> int:
    """Return the duration in ticks; raise ValueError for anything XmlConvert refuses."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. PT1H, P2DT30M)")
    parts = {name: int(value) for name, value in match.groupdict().items() if value and name != "fraction"}
    fraction = match.group("fraction") or ""
    ticks = (
        (parts.get("years", 0) * 365 + parts.get("months", 0) * 30 + parts.get("days", 0)) * TICKS_PER_DAY
        + parts.get("hours", 0) * TICKS_PER_HOUR
        + parts.get("minutes", 0) * TICKS_PER_MINUTE
        + parts.get("seconds", 0) * TICKS_PER_SECOND
        + int((fraction + "0000000")[:7])
    )
    if ticks > TIMESPAN_MAX_TICKS:
        raise ValueError(f"{text!r} exceeds the largest duration the service stores")
    return ticks


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
                text += "." + f"{fraction:07d}".rstrip("0")
            text += "S"
    return text if text != "P" else "PT0S"


def normalise_duration(text: str) -> str:
    return format_duration(parse_duration(text))
