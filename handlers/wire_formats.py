"""Text formats Batch speaks: durations, HTTP dates, ETags, GUIDs.

Pure functions, no I/O. Each parser accepts what producers commonly send and
returns the one form that goes on the wire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

# ISO 8601 duration, day-time part only: .NET TimeSpan (what Batch stores) has
# no years or months. Weeks are accepted as 7 days.
_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
# .NET TimeSpan text: [d.]hh:mm[:ss[.fffffff]] (what PowerShell prints).
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{1,2})"
    r"(?::(?P<seconds>\d{1,2}(?:\.\d{1,7})?))?$"
)
# TimeSpan.MaxValue (P10675199DT2H48M5.4775807S, rounded up to microseconds): what
# Batch returns for "no limit"; a merge sends it back as read.
_MAX_DURATION = timedelta(days=10_675_199, hours=2, minutes=48, seconds=5, microseconds=477_581)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ETAG = re.compile(r"^[\x21\x23-\x7e]{1,256}$")  # visible ASCII, no quote


def parse_duration(text: str) -> timedelta:
    """Parse ISO 8601 (`PT1H`, `P1DT2H`) or .NET TimeSpan text (`1.02:03:04`)."""
    value = text.strip()
    if match := _ISO_DURATION.match(value.upper()):
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        result = timedelta(
            weeks=parts["weeks"],
            days=parts["days"],
            hours=parts["hours"],
            minutes=parts["minutes"],
            seconds=parts["seconds"],
        )
    elif match := _TIMESPAN.match(value):
        hours, minutes = int(match["hours"]), int(match["minutes"])
        seconds = float(match["seconds"] or 0)
        if hours > 23 or minutes > 59 or seconds >= 60:
            raise ValueError(f"{text!r} is not a valid TimeSpan (hours < 24, minutes and seconds < 60)")
        result = timedelta(days=int(match["days"] or 0), hours=hours, minutes=minutes, seconds=seconds)
    else:
        raise ValueError(
            f"{text!r} is not a duration: use ISO 8601 (e.g. PT1H30M, P2D) "
            "or .NET TimeSpan text (e.g. 01:30:00, 2.00:00:00)"
        )
    if result > _MAX_DURATION:
        raise ValueError(f"{text!r} exceeds the largest duration Batch accepts")
    return result


def format_duration(value: timedelta) -> str:
    """ISO 8601 as Batch returns it: `P{d}DT{h}H{m}M{s}S`, zero parts omitted."""
    total_us = value // timedelta(microseconds=1)
    days, rest_us = divmod(total_us, 86_400_000_000)
    hours, rest_us = divmod(rest_us, 3_600_000_000)
    minutes, rest_us = divmod(rest_us, 60_000_000)
    seconds, micros = divmod(rest_us, 1_000_000)
    out = "P" + (f"{days}D" if days else "")
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or micros:
        time += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def canonical_duration(text: str) -> str:
    return format_duration(parse_duration(text))


def parse_http_date(text: str) -> datetime:
    """Parse RFC 1123 (`Mon, 17 Feb 2025 00:00:00 GMT`) or ISO 8601 with an offset."""
    value = text.strip()
    if value[:1].isdigit():
        try:
            parsed = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
        return parsed.astimezone(UTC)
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{text!r} is not a date: use RFC 1123 (Mon, 17 Feb 2025 00:00:00 GMT) or ISO 8601"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; RFC 1123 dates end in GMT")
    return parsed.astimezone(UTC)


def format_http_date(value: datetime) -> str:
    """RFC 1123, as HTTP and Batch want it."""
    return format_datetime(value.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_etag(text: str) -> str:
    """Accept an ETag quoted or bare (or `*`); return it quoted as the SDK sends it."""
    value = text.strip()
    if value == "*":
        return value
    if value.startswith("W/"):
        raise ValueError("weak ETags are not used by Batch")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not _ETAG.match(value):
        raise ValueError(f"{text!r} is not an ETag (visible ASCII, at most 256 characters)")
    return f'"{value}"'


def bare_etag(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))
