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
    r"(password|passwd|pwd|passphrase|secret|accountkey|saskey|sastoken|key$|privatekey|token|credential"
    r"|connectionstring|protectedsettings|sharedaccess|^sig$|signature)",
    re.IGNORECASE,
)
# Environment settings: every value, since producers put secrets there routinely.
_ENV_LISTS = frozenset({"environmentSettings", "containerRunOptions"})
# A URL's query may be a SAS token: keep the resource, drop the query, wherever it appears.
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer|SharedKey)\s+[^\s\"']+", re.IGNORECASE)
# Basic credentials are base64; requiring that shape leaves prose ("Basic tier") alone.
_BASIC = re.compile(r"(Basic)\s+[A-Za-z0-9+/_-]{6,}={0,2}", re.IGNORECASE)
# `password=...` / `"accountKey": "..."` / `SharedAccessKey=...` inside free text (Batch error
# messages echo values; connection strings end up in metadata). A backslash may precede a
# quote: JSON quoted inside a JSON string.
_INLINE_SECRET = re.compile(  # factored, with a first-letter guard: it runs on every error text
    r"(?=[acpst])((?:pass(?:word|wd|phrase)|pwd|secret|accountkey|sharedaccess(?:key|signature)"
    r"|sas(?:key|token)|privatekey|apikey|sig(?:nature)?|token|credential)\\?[\"']?\s*[=:]\s*\\?[\"']?)"
    r"[^\s\"',;&\\]+",
    re.IGNORECASE,
)
# A PEM private key, to its END line (or the end of the text, when cut short).
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
# A JWT (a bearer token without its scheme): base64url JSON header and payload, then a signature.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Userinfo in a URL: `scheme://user:password@host`.
_USERINFO = re.compile(r"(://[^/\s:@\"'<>]+:)[^/\s@\"'<>]+@")
_INLINE_WORDS = ("pass", "pwd", "secret", "key", "sig", "token", "credential")


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
    text), URL queries (SAS) and userinfo, credentials in headers (Bearer, SharedKey,
    Basic), bare JWTs, PEM private keys and `key=value` text (connection strings)."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and len(text) <= 1_000_000:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(redact(parsed), separators=(",", ":"))
    if "PRIVATE KEY" in text:
        text = _PEM.sub(f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "://" in text:
        if "?" in text:
            text = _URL_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)
        if "@" in text:
            text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    lowered = text.lower()
    if "bearer" in lowered or "sharedkey" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "basic" in lowered:
        text = _BASIC.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if any(word in lowered for word in _INLINE_WORDS):
        text = _INLINE_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


# --- What may appear in an event, by construction ------------------------------------
#
# An allow-list, not the deny-list above: a property's values appear only where the
# property is known to hold no secret. The pool specification (user accounts,
# registries, mounts, resource-file SAS URLs, environment, protectedSettings ...) and
# metadata values (connection strings end up there) appear as structure only: their
# names, with every leaf value replaced by its JSON type. `redact_text` stays as the
# second line behind it, on text Batch writes.

# Top-level update properties whose values are plain settings, shown as they are.
_PLAIN = frozenset(
    {"priority", "allowTaskPreemption", "maxParallelTasks", "onAllTasksComplete", "constraints"}
)
_PLAIN_POOL_INFO = frozenset({"poolId", "keepAlive", "poolLifetimeOption", "autoPoolIdPrefix"})
_PLAIN_NETWORK = frozenset({"subnetId", "skipWithdrawFromVNet"})
# Batch error details that name things rather than echo values.
_PLAIN_ERROR_VALUES = frozenset({"PropertyName", "Reason", "RequestId", "QueryParameterName", "HeaderName"})


def shape(value: Any) -> Any:
    """Structure without values: object keys kept, every leaf replaced by its JSON type."""
    if isinstance(value, dict):
        return {str(k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, (int, float)):
        return "<number>"
    if value is None:
        return None
    return "<string>"


def public_property(name: str, value: Any) -> Any:
    """A job property's value as an event may show it."""
    if name in _PLAIN:
        return value
    if name == "metadata" and isinstance(value, list):
        return [
            {"name": item.get("name"), "value": "<string>"} if isinstance(item, dict) else shape(item)
            for item in value
        ]
    if name == "poolInfo" and isinstance(value, dict):
        return _public_pool_info(value)
    if name == "networkConfiguration" and isinstance(value, dict):
        return {k: (v if k in _PLAIN_NETWORK else shape(v)) for k, v in value.items()}
    return shape(value)


def _public_pool_info(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "autoPoolSpecification" and isinstance(item, dict):
            out[key] = {k: (v if k in _PLAIN_POOL_INFO else shape(v)) for k, v in item.items()}
        else:
            out[key] = item if key in _PLAIN_POOL_INFO else shape(item)
    return out


def public_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """`{property: {"from": ..., "to": ...}}` with each value as an event may show it."""
    return {
        name: {side: public_property(name, v) for side, v in change.items()}
        for name, change in changes.items()
    }


def public_error_values(values: dict[str, str]) -> dict[str, str]:
    """Batch's error details: names pass; echoed values (PropertyValue ...) do not."""
    return {k: (redact_text(v) if k in _PLAIN_ERROR_VALUES else "<string>") for k, v in values.items()}


def request_strings(value: Any) -> frozenset[str]:
    """Every string leaf of a request body worth hiding (4+ characters), raw and as
    JSON text: the forms in which an error message can echo it back."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= 4:
            found.add(item)
            found.add(json.dumps(item)[1:-1])
    return frozenset(found)


def without_echoes(text: str, strings: frozenset[str]) -> str:
    """`text` with every request string replaced, longest first (Batch errors may
    quote the body they refuse)."""
    for value in sorted((s for s in strings if s in text), key=len, reverse=True):
        text = text.replace(value, "<request value>")
    return text
