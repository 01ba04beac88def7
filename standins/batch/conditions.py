"""Conditional headers, with Batch's restrictions on combining them.

From "Specifying conditional headers for Batch service requests": a request may
carry one conditional header, or exactly the pairs If-None-Match + If-Modified-Since
(evaluated on If-None-Match) or If-Match + If-Unmodified-Since (evaluated on
If-Match); any other combination is 400 MultipleConditionHeadersNotSupported.
An unmet condition on a write is 412 ConditionNotMet; on a read, If-None-Match and
If-Modified-Since answer 304 and the other two 412.

ETags are compared strongly after removing quotes (and a `W/` prefix): the SDK
quotes them, older clients sent them bare, and the service accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from multidict import CIMultiDictProxy

from standins.batch.errors import BatchServiceError, invalid_header
from standins.batch.timefmt import parse_rfc1123, truncate_to_second

IF_MATCH = "If-Match"
IF_NONE_MATCH = "If-None-Match"
IF_MODIFIED_SINCE = "If-Modified-Since"
IF_UNMODIFIED_SINCE = "If-Unmodified-Since"
CONDITION_HEADERS = (IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE)
ALLOWED_PAIRS = (
    frozenset({IF_NONE_MATCH, IF_MODIFIED_SINCE}),
    frozenset({IF_MATCH, IF_UNMODIFIED_SINCE}),
)


class Outcome(Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not-modified"  # 304, reads only
    PRECONDITION_FAILED = "precondition-failed"  # 412


@dataclass(frozen=True)
class Conditions:
    """The one condition a request is evaluated on (the service ignores the paired date)."""

    header: str | None
    etags: tuple[str, ...] = ()  # normalised; ("*",) for a wildcard
    moment: datetime | None = None

    def evaluate(self, *, current_etag: str, last_modified: datetime, is_write: bool) -> Outcome:
        if self.header is None:
            return Outcome.PROCEED
        if self.header == IF_MATCH:
            met = "*" in self.etags or current_etag in self.etags
            return Outcome.PROCEED if met else Outcome.PRECONDITION_FAILED
        if self.header == IF_NONE_MATCH:
            met = not ("*" in self.etags or current_etag in self.etags)
            return Outcome.PROCEED if met else _read_or_write(is_write)
        assert self.moment is not None
        modified = truncate_to_second(last_modified)
        if self.header == IF_MODIFIED_SINCE:
            return Outcome.PROCEED if modified > self.moment else _read_or_write(is_write)
        return Outcome.PROCEED if modified <= self.moment else Outcome.PRECONDITION_FAILED


def _read_or_write(is_write: bool) -> Outcome:
    return Outcome.PRECONDITION_FAILED if is_write else Outcome.NOT_MODIFIED


def parse_conditions(headers: CIMultiDictProxy[str]) -> Conditions:
    present = frozenset(name for name in CONDITION_HEADERS if name in headers)
    if len(present) > 1 and present not in ALLOWED_PAIRS:
        raise BatchServiceError(400, "MultipleConditionHeadersNotSupported")
    # Validate every header that is present, even the one the pair rule ignores.
    parsed_dates = {
        name: _parse_date(name, headers[name])
        for name in (IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE)
        if name in present
    }
    for name in (IF_MATCH, IF_NONE_MATCH):
        if name in present:
            return Conditions(name, etags=_parse_etags(name, headers[name]))
    for name, moment in parsed_dates.items():
        return Conditions(name, moment=moment)
    return Conditions(None)


def normalise_etag(raw: str) -> str:
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    return value


def _parse_etags(name: str, raw: str) -> tuple[str, ...]:
    etags = tuple(normalise_etag(part) for part in raw.split(",") if part.strip())
    if not etags or any(not etag for etag in etags):
        raise invalid_header(name, raw, "expected an ETag, a comma-separated list of ETags, or *")
    return etags


def _parse_date(name: str, raw: str) -> datetime:
    try:
        return parse_rfc1123(raw)
    except ValueError:
        raise invalid_header(name, raw, "expected an RFC 1123 date") from None
