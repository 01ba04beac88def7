"""Text formats Batch speaks: durations, HTTP dates, ETags, GUIDs.

Pure functions, no I/O. Each parser accepts exactly what its JSON Schema
pattern (`*_PATTERN`, ECMA-262 syntax, used by the message schema) describes and
returns the one form that goes on the wire. Parsers never strip: a value with a
trailing newline is not a value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

__all__ = [
    "DURATION_PATTERN",
    "ETAG_PATTERN",
    "GUID_PATTERN",
    "HTTP_DATE_PATTERN",
    "MAX_TICKS",
    "bare_etag",
    "canonical_duration",
    "format_duration",
    "format_http_date",
    "is_guid",
    "parse_duration",
    "parse_etag",
    "parse_http_date",
]

# Batch stores durations as .NET TimeSpan: Int64 ticks of 100 ns. The largest,
# P10675199DT2H48M5.4775807S, is what GET returns for "no limit" (and PowerShell's
# [TimeSpan]::MaxValue); it must go back out exactly, never rounded past it.
TICKS_PER_SECOND = 10_000_000
MAX_TICKS = 2**63 - 1
_FRACTION_DIGITS = 7

# ISO 8601, day-time part only (TimeSpan has no years or months); weeks are 7 days.
# Letters in any case (XmlConvert accepts upper case; producers send both).
_ISO = (
    r"[Pp](?=[0-9]|[Tt][0-9])(?:(?P<weeks>[0-9]+)[Ww])?(?:(?P<days>[0-9]+)[Dd])?"
    r"(?:[Tt](?=[0-9])(?:(?P<hours>[0-9]+)[Hh])?(?:(?P<minutes>[0-9]+)[Mm])?"
    r"(?:(?P<seconds>[0-9]+)(?:\.(?P<fraction>[0-9]{1,7}))?[Ss])?)?"
)
# .NET TimeSpan text: [d.]hh:mm[:ss[.fffffff]] (what PowerShell prints).
_TIMESPAN = (
    r"(?:(?P<tdays>[0-9]+)\.)?(?P<thours>[0-9]{1,2}):(?P<tminutes>[0-9]{1,2})"
    r"(?::(?P<tseconds>[0-9]{1,2})(?:\.(?P<tfraction>[0-9]{1,7}))?)?"
)
# The schema's copy without group names: JSON Schema validators differ on their syntax.
DURATION_PATTERN = "^(?:" + re.sub(r"\?P<[a-z]+>", "?:", f"{_ISO}|{_TIMESPAN}") + ")$"
_DURATION = re.compile(f"{_ISO}|{_TIMESPAN}")

GUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID = re.compile(GUID_PATTERN[1:-1])
# Visible ASCII but the quote, bare or quoted, or "*". Batch's are `0x8D...`.
ETAG_PATTERN = r'^(?:\*|[\x21\x23-\x7e]{1,256}|"[\x21\x23-\x7e]{1,256}")$'
_ETAG = re.compile(r"[\x21\x23-\x7e]{1,256}")
# RFC 1123 (what HTTP sends) or ISO 8601 with an explicit offset.
_RFC1123_TEXT = (
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_ISO_DATE_TEXT = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
HTTP_DATE_PATTERN = f"^(?:{_RFC1123_TEXT}|{_ISO_DATE_TEXT})$"
_RFC1123 = re.compile(_RFC1123_TEXT)
_ISO_DATE = re.compile(_ISO_DATE_TEXT)


def _ticks(seconds: str | None, fraction: str | None) -> int:
    whole = int(seconds or 0) * TICKS_PER_SECOND
    return whole + (int((fraction or "").ljust(_FRACTION_DIGITS, "0")) if fraction else 0)


def parse_duration(text: str) -> int:
    """ISO 8601 (`PT1H`, `P1DT2H`) or .NET TimeSpan text (`1.02:03:04`), as ticks."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text[:40]!r} is not a duration: use ISO 8601 (e.g. PT1H30M, P2D) "
            "or .NET TimeSpan text (e.g. 01:30:00, 2.00:00:00), at most 7 fractional digits"
        )
    g = match.groupdict()
    if g["thours"] is not None:
        hours, minutes, seconds = int(g["thours"]), int(g["tminutes"]), int(g["tseconds"] or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ValueError(f"{text!r} is not a valid TimeSpan (hours < 24, minutes and seconds < 60)")
        days = int(g["tdays"] or 0)
        ticks = ((days * 24 + hours) * 60 + minutes) * 60 * TICKS_PER_SECOND + _ticks(
            g["tseconds"], g["tfraction"]
        )
    else:
        days = int(g["weeks"] or 0) * 7 + int(g["days"] or 0)
        minutes = (days * 24 + int(g["hours"] or 0)) * 60 + int(g["minutes"] or 0)
        ticks = minutes * 60 * TICKS_PER_SECOND + _ticks(g["seconds"], g["fraction"])
    if ticks > MAX_TICKS:
        raise ValueError(
            f"{text[:40]!r} exceeds the largest duration Batch holds (P10675199DT2H48M5.4775807S)"
        )
    return ticks


def format_duration(ticks: int) -> str:
    """ISO 8601 as Batch returns it: `P{d}DT{h}H{m}M{s}.{f}S`, zero parts omitted."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    out = "P" + (f"{days}D" if days else "")
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or fraction:
        time += (f"{seconds}.{fraction:07d}".rstrip("0").rstrip(".") if fraction else str(seconds)) + "S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def canonical_duration(text: str) -> str:
    return format_duration(parse_duration(text))


def parse_http_date(text: str) -> datetime:
    """RFC 1123 (`Mon, 17 Feb 2025 00:00:00 GMT`) or ISO 8601 with an offset, in UTC."""
    try:
        if _ISO_DATE.fullmatch(text):
            return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).astimezone(UTC)
        if _RFC1123.fullmatch(text):
            return parsedate_to_datetime(text).astimezone(UTC)
    except (ValueError, OverflowError):  # day 31 of February; 0001-01-01 at +14:00
        raise ValueError(f"{text[:40]!r} is not a date that exists in UTC") from None
    raise ValueError(
        f"{text[:40]!r} is not a date: use RFC 1123 (Mon, 17 Feb 2025 00:00:00 GMT) "
        "or ISO 8601 with an offset (2025-02-17T00:00:00Z)"
    )


def format_http_date(value: datetime) -> str:
    """RFC 1123, as HTTP and Batch want it."""
    return format_datetime(value.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_etag(text: str) -> str:
    """Accept an ETag quoted or bare (or `*`); return it quoted as the SDK sends it."""
    if text == "*":
        return text
    value = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    if value.startswith("W/"):
        raise ValueError("weak ETags are not used by Batch")
    if not _ETAG.fullmatch(value):
        raise ValueError(f"{text[:40]!r} is not an ETag (visible ASCII, at most 256 characters)")
    return f'"{value}"'


def bare_etag(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def is_guid(text: str) -> bool:
    return _GUID.fullmatch(text) is not None
