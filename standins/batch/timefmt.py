"""Time stamps and ETags in the forms the Batch service puts on the wire.

- Headers (`Last-Modified`, `ocp-date`, `If-Modified-Since`) use RFC 1123
  (`Tue, 17 Oct 2023 08:48:43 GMT`), second precision.
- Bodies (`lastModified`, `creationTime`) use ISO 8601 with up to 7 fractional
  digits and trailing zeros dropped (`2023-10-17T08:48:43.423611Z`).
- ETags are .NET DateTime ticks in hex (`0x8DBCEEDDE3E0ACE`), sent bare in the
  `ETag` header and in the body's `eTag`: recorded responses of the real service
  show no quotes. They only ever grow, so two writes in one tick still differ.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

# 100 ns ticks between 0001-01-01 (.NET DateTime epoch) and 1970-01-01.
_DOTNET_UNIX_OFFSET_TICKS = 621_355_968_000_000_000


def format_rfc1123(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def parse_rfc1123(text: str) -> datetime:
    """Parse an HTTP date; raise ValueError if it is not one (RFC 1123 with GMT)."""
    if not text.strip().endswith("GMT"):
        raise ValueError(f"not an RFC 1123 date: {text!r}")
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not an RFC 1123 date: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_odata_time(moment: datetime, *, digits: int = 6) -> str:
    """ISO 8601 UTC with `Z`, trailing fractional zeros dropped (as Batch bodies show)."""
    moment = moment.astimezone(UTC)
    fraction = f"{moment.microsecond:06d}" + "0" * max(0, digits - 6)
    fraction = fraction[:digits].rstrip("0")
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def truncate_to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class ETagClock:
    """Hands out strictly increasing DateTime-tick ETags, like `0x8DBCEEDDE3E0ACE`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        ticks = time.time_ns() // 100 + _DOTNET_UNIX_OFFSET_TICKS
        with self._lock:
            self._last = max(self._last + 1, ticks)
            return f"0x{self._last:X}"
