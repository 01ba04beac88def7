"""Keep secrets out of events and logs.

An auto-pool specification can carry passwords (user accounts, container
registries, CIFS mounts), storage keys and SAS tokens (mounts, resource files),
and environment values. Anything that reaches an event or a log line passes
through `redact` first.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

REDACTED = "***"

# Field names whose values are secrets wherever they appear.
_SECRET_KEYS = re.compile(
    r"(password|secret|accountkey|saskey|sastoken|key$|token|credential|connectionstring|protectedsettings)",
    re.IGNORECASE,
)
# Environment settings: every value, since producers put secrets there routinely.
_ENV_LISTS = frozenset({"environmentSettings", "containerRunOptions"})
# A URL's query may be a SAS token: keep the resource, drop the query, wherever it appears.
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer|SharedKey)\s+[^\s\"']+", re.IGNORECASE)
# `password=...` / `"accountKey": "..."` inside free text (Batch error messages echo values).
_INLINE_SECRET = re.compile(
    r"((?:password|secret|accountkey|saskey|sig|token)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+", re.IGNORECASE
)


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
        return REDACTED  # whole value, objects too (protectedSettings can hold anything)
    if key in _ENV_LISTS and isinstance(value, list):
        return [
            {**item, "value": REDACTED} if isinstance(item, dict) and "value" in item else REDACTED
            for item in value
        ]
    if key in _ENV_LISTS and isinstance(value, str):
        return REDACTED
    return redact(value, key)


def redact_text(text: str) -> str:
    """Secrets inside a string: embedded JSON (Batch echoes rejected values as JSON
    text), URL queries (SAS), credentials in headers and `key=value` text."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and len(text) <= 1_000_000:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(redact(parsed), separators=(",", ":"))
    if "://" in text and "?" in text:
        text = _URL_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)
    lowered = text.lower()
    if "bearer" in lowered or "sharedkey" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if any(word in lowered for word in ("password", "secret", "key", "sig", "token")):
        text = _INLINE_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text
