"""Text formats Batch speaks: durations, HTTP dates, ETags, GUIDs.

Pure functions, no I/O. Each parser accepts exactly what its JSON Schema
pattern (`*_PATTERN`, ECMA-262 syntax, used by the message schema) describes and
returns the one form that goes on the wire. Parsers never strip: a value with a
trailing newline is not a value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

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

# ISO 8601, day-time part only (TimeSpan has no years or months); weeks are 7 days;
# letters in any case. Each part's digits are bounded so that any combination stays
# inside Int64 ticks (at most 10,567,676 days in all), and Batch's own "unlimited"
# is admitted exactly: a pattern a JSON Schema validator can check says the whole rule.
_W, _D = "[0-9]{1,4}[Ww]", "[0-9]{1,7}[Dd]"
_H, _M, _S = "[0-9]{1,7}[Hh]", "[0-9]{1,8}[Mm]", r"[0-9]{1,9}(?:\.[0-9]{1,7})?[Ss]"
_T = f"[Tt](?:{_H}(?:{_M})?(?:{_S})?|{_M}(?:{_S})?|{_S})"
_ISO = f"[Pp](?:{_W}(?:{_D})?(?:{_T})?|{_D}(?:{_T})?|{_T})|[Pp]10675199[Dd][Tt]2[Hh]48[Mm]5\\.4775807[Ss]"
# .NET TimeSpan text: [d.]hh:mm[:ss[.fffffff]] (what PowerShell prints).
_TIMESPAN = (
    r"(?:[0-9]{1,7}\.)?(?:[01]?[0-9]|2[0-3]):[0-5]?[0-9](?::[0-5]?[0-9](?:\.[0-9]{1,7})?)?"
    r"|10675199\.02:48:05\.4775807"
)
DURATION_PATTERN = f"^(?:{_ISO}|{_TIMESPAN})$"
_DURATION = re.compile(f"{_ISO}|{_TIMESPAN}")
_ISO_PART = re.compile(r"([0-9]+)(?:\.([0-9]+))?([A-Za-z])")
_TIMESPAN_PARTS = re.compile(
    r"(?:(?P<days>[0-9]+)\.)?(?P<hours>[0-9]+):(?P<minutes>[0-9]+)(?::(?P<seconds>[0-9]+)(?:\.(?P<fraction>[0-9]+))?)?"
)
_UNIT_SECONDS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}

GUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Visible ASCII but the quote, bare or quoted, or "*". Batch's are `0x8D...`.
ETAG_PATTERN = r'^(?:\*|(?!W/)[\x21\x23-\x7e]{1,256}|"(?!W/)[\x21\x23-\x7e]{1,256}")$'
_ETAG = re.compile(r"[\x21\x23-\x7e]{1,256}")
# RFC 1123 (what HTTP sends) or ISO 8601 with an explicit offset. Only days that exist
# (Feb 29 in leap years) and times within range, so the pattern says the whole rule.
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001-9999
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_CLOCK = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_ISO_DATE_TEXT = (
    f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29)[Tt]{_CLOCK}(?::[0-5][0-9](?:\\.[0-9]{{1,6}})?)?"
    f"(?:[Zz]|[+-]{_CLOCK})"
)
_DAY_MONTH = (
    "(?:(?:0[1-9]|1[0-9]|2[0-8]) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    "|(?:29|30) (?:Jan|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)|31 (?:Jan|Mar|May|Jul|Aug|Oct|Dec))"
)
_RFC1123_TEXT = (
    f"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?:{_DAY_MONTH} {_YEAR}|29 Feb {_LEAP}) {_CLOCK}:[0-5][0-9] GMT"
)
HTTP_DATE_PATTERN = f"^(?:{_RFC1123_TEXT}|{_ISO_DATE_TEXT})$"
_RFC1123 = re.compile(_RFC1123_TEXT)
_ISO_DATE = re.compile(_ISO_DATE_TEXT)


def parse_duration(text: str) -> int:
    """ISO 8601 (`PT1H`, `P1DT2H`) or .NET TimeSpan text (`1.02:03:04`), as ticks."""
    if _DURATION.fullmatch(text) is None:
        raise ValueError(
            "not a duration: use ISO 8601 (e.g. PT1H30M, P2D) or .NET TimeSpan "
            "text (e.g. 01:30:00, 2.00:00:00); at most 7 digits of days and 7 fractional digits"
        )
    if text[0] in "Pp":
        ticks = 0
        for number, fraction, unit in _ISO_PART.findall(text[1:]):
            ticks += int(number) * _UNIT_SECONDS[unit.lower()] * TICKS_PER_SECOND
            ticks += int(fraction.ljust(_FRACTION_DIGITS, "0")) if fraction else 0
    else:
        g = _TIMESPAN_PARTS.fullmatch(text)
        assert g is not None  # the pattern above admits only this shape
        seconds = ((int(g["days"] or 0) * 24 + int(g["hours"])) * 60 + int(g["minutes"])) * 60
        ticks = (seconds + int(g["seconds"] or 0)) * TICKS_PER_SECOND
        ticks += int(g["fraction"].ljust(_FRACTION_DIGITS, "0")) if g["fraction"] else 0
    if ticks > MAX_TICKS:  # unreachable by the pattern's bounds; kept as the invariant
        raise ValueError("exceeds the largest duration Batch holds")
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
            # strptime, not email.utils: it would read years 0001-0099 as 1969-2068.
            # The weekday is redundant and not checked; the date goes out with its own.
            return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # 0001-01-01 at +14:00; a weekday that is not the date's
        raise ValueError("not a date that exists in UTC (or its weekday is wrong)") from None
    raise ValueError(
        "not a date: use RFC 1123 (Mon, 17 Feb 2025 00:00:00 GMT) "
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
        raise ValueError("not an ETag (visible ASCII, at most 256 characters)")
    return f'"{value}"'


def bare_etag(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
