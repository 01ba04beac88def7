"""Keep secrets out of events and logs.

An auto-pool specification can carry passwords (user accounts, container
registries, CIFS mounts), storage keys and SAS tokens (mounts, resource files),
and environment values. Anything that reaches an event or a log line passes
through `redact` first.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

REDACTED = "***"

# Field names whose values are secrets wherever they appear.
_SECRET_KEYS = re.compile(
    r"(password|secret|accountkey|saskey|sastoken|key$|token|credential|connectionstring)",
    re.IGNORECASE,
)
# Environment settings: every value, since producers put secrets there routinely.
_ENV_LISTS = frozenset({"environmentSettings", "containerRunOptions"})
# A SAS or signed URL: keep the resource, drop the query.
_SIGNED_URL = re.compile(r"^(https?://[^?#\s]+)\?[^\s]*$", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer|SharedKey)\s+\S+", re.IGNORECASE)


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` with secret-bearing fields replaced by `***`."""
    if isinstance(value, dict):
        return {k: _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


@lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None


def _redact_field(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _is_secret_key(key) and value != "":
        return REDACTED if not isinstance(value, (dict, list)) else redact(value, key)
    if key in _ENV_LISTS and isinstance(value, list):
        return [
            {**item, "value": REDACTED} if isinstance(item, dict) and "value" in item else REDACTED
            for item in value
        ]
    if key in _ENV_LISTS and isinstance(value, str):
        return REDACTED
    return redact(value, key)


def redact_text(text: str) -> str:
    """Drop SAS query strings from URLs and credentials from header-like text."""
    if "?" in text and (match := _SIGNED_URL.match(text)):
        return f"{match.group(1)}?{REDACTED}"
    if "Bearer" in text or "SharedKey" in text or "bearer" in text:
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text
