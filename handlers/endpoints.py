"""Batch endpoint allow-list: where a credential may ever be sent.

A token or shared key goes only over HTTPS to an origin that the operator
listed. Both the settings and each message go through the same strict parser,
and a message's endpoint must then equal a listed origin exactly: no userinfo,
no other port, no path, no IP literal, no trailing dot or non-ASCII look-alike.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from handlers.errors import EndpointError

__all__ = [
    "BATCH_DNS_SUFFIXES",
    "EndpointError",
    "default_endpoint",
    "is_emulator",
    "normalise_endpoint",
    "parse_allow_list",
    "parse_allowed_endpoint",
    "resolve_endpoint",
]

# Public and sovereign Batch DNS suffixes, plus `localhost` for the local emulator.
BATCH_DNS_SUFFIXES = (
    ".batch.azure.com",
    ".batch.chinacloudapi.cn",
    ".batch.usgovcloudapi.net",
    ".batch.microsoftazure.de",
)
_ORIGIN = re.compile(r"https://(?P<host>[a-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/?")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def normalise_endpoint(raw: str) -> str:
    """Return `https://host[:port]` in canonical form, or raise EndpointError.

    Canonical: lower-case host, default port 443 dropped, no trailing slash.
    """
    value = raw.strip()
    lowered = value.lower()
    if not lowered.startswith("https://"):
        raise EndpointError("endpoint must use https://")
    if "@" in value:
        raise EndpointError("endpoint must not carry userinfo")
    if not value.isascii():
        raise EndpointError("endpoint host must be ASCII (no look-alike characters)")
    match = _ORIGIN.fullmatch(lowered)
    if match is None:
        raise EndpointError(
            "endpoint must be an origin only: https://host[:port], no path, query or fragment"
        )
    host, port = match.group("host"), match.group("port")
    if host.endswith(".") or ".." in host:
        raise EndpointError("endpoint host must not have empty labels or a trailing dot")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise EndpointError("endpoint host must be a DNS name, not an IP literal")
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise EndpointError("endpoint host has an invalid DNS label")
    if port is not None and int(port) != 443:
        number = int(port)
        if not 0 < number < 65536:
            raise EndpointError("endpoint port out of range")
        return f"https://{host}:{number}"
    return f"https://{host}"


def parse_allowed_endpoint(raw: str) -> str:
    """Parse an allow-list entry (settings): a Batch account endpoint or the local emulator."""
    origin = normalise_endpoint(raw)
    host = origin.removeprefix("https://").split(":", 1)[0]
    if host != "localhost" and not host.endswith(BATCH_DNS_SUFFIXES):
        raise EndpointError(
            f"{origin} is not a Batch account endpoint (expected *.batch.azure.com "
            "or a sovereign-cloud Batch suffix, or localhost for the emulator)"
        )
    return origin


def is_emulator(origin: str) -> bool:
    return origin.removeprefix("https://").split(":", 1)[0] == "localhost"


def parse_allow_list(raw: str | Iterable[str], *, allow_emulator: bool) -> frozenset[str]:
    """BATCH_ALLOWED_ENDPOINTS (comma- or semicolon-separated) as canonical origins.

    The one parser for the allow-list: Settings and `python -m handlers check` both
    call it, so a list `check` accepts is one the function accepts.
    """
    items = raw.replace(";", ",").split(",") if isinstance(raw, str) else [str(item) for item in raw]
    origins = frozenset(parse_allowed_endpoint(item) for item in items if item.strip())
    if not origins:
        raise EndpointError("BATCH_ALLOWED_ENDPOINTS must name at least one Batch endpoint")
    if not allow_emulator and any(is_emulator(origin) for origin in origins):
        raise EndpointError(
            "BATCH_ALLOWED_ENDPOINTS names localhost, the local emulator: "
            "set BATCH_ALLOW_EMULATOR=true to allow it"
        )
    return origins


def default_endpoint(allowed: frozenset[str], configured: str | None) -> str | None:
    """Where a message without `endpoint` goes: BATCH_DEFAULT_ENDPOINT, else the one
    allow-listed endpoint when there is exactly one, else nowhere (it is rejected)."""
    if configured:
        return configured
    if len(allowed) == 1:
        return next(iter(allowed))
    return None


def resolve_endpoint(requested: str | None, allowed: frozenset[str], default: str | None) -> str:
    """The allow-listed origin a message's request goes to, or raise EndpointError."""
    if requested is None:
        if default is None:
            raise EndpointError(
                "message names no endpoint and no default is configured (BATCH_DEFAULT_ENDPOINT)"
            )
        return default
    origin = normalise_endpoint(requested)
    if origin not in allowed:
        raise EndpointError(f"endpoint {origin} is not in the allow-list (BATCH_ALLOWED_ENDPOINTS)")
    return origin
