"""Authentication as the Batch service does it: Microsoft Entra bearer tokens or Shared Key.

Shared Key follows the documented algorithm ("Authenticate requests to the Azure
Batch service", summarised in shared/reference/batch-update-job.md):

    StringToSign = VERB \\n Content-Encoding \\n Content-Language \\n Content-Length \\n
                   Content-MD5 \\n Content-Type \\n Date \\n If-Modified-Since \\n If-Match \\n
                   If-None-Match \\n If-Unmodified-Since \\n Range \\n
                   CanonicalizedHeaders CanonicalizedResource

- CanonicalizedHeaders: every `ocp-*` header, name lower-cased, sorted, `name:value\\n`.
- CanonicalizedResource: `/{account}{encoded path}`, then for each query parameter
  `\\n{lower-cased name}:{decoded value}`, sorted by name, repeated values sorted
  and comma-joined.
- A zero Content-Length is signed as the empty string; Date is signed empty when
  `ocp-date` is sent.

azure-batch 15.1's `BatchSharedKeyAuthPolicy` differs at the edges: it does not
lower-case query names (`timeOut:30`), signs a zero or missing Content-Length of
a non-GET/HEAD request as `0`, drops empty query values, signs only the first of
repeated values, and signs a Date header even when ocp-date is set. Those
variants are accepted only with `accept_sdk_variant=True`; where the two agree
(a JSON body, no `timeOut`) the SDK passes either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import jwt
from multidict import CIMultiDictProxy

from standins.batch.errors import BatchServiceError, authentication_failed, invalid_header
from standins.batch.timefmt import format_odata_time, parse_rfc1123

BATCH_AUDIENCE = "https://batch.core.windows.net/"
SIGNED_STANDARD_HEADERS = (
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-MD5",
    "Content-Type",
    "Date",
    "If-Modified-Since",
    "If-Match",
    "If-None-Match",
    "If-Unmodified-Since",
    "Range",
)


@dataclass(frozen=True)
class Principal:
    """Who a request was authenticated as, for the request log."""

    scheme: str  # "Bearer" or "SharedKey"
    name: str  # token appid / account name
    claims: Mapping[str, object] | None = None
    signing_variant: str | None = None  # "documented" or "azure-batch-sdk"


@dataclass(frozen=True)
class AuthSettings:
    account_name: str
    account_key: str  # base64
    token_signing_key: bytes | None
    allow_shared_key: bool = True
    accept_sdk_variant: bool = False
    token_leeway_seconds: float = 300.0
    max_clock_skew: timedelta = timedelta(minutes=15)


def authenticate(
    settings: AuthSettings,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: CIMultiDictProxy[str],
    now: datetime | None = None,
) -> Principal:
    """Return the caller's principal or raise the error the service would answer with."""
    now = now or datetime.now(UTC)
    check_request_date(headers, settings.max_clock_skew, now)
    authorization = headers.get("Authorization")
    if not authorization:
        raise authentication_failed("The request does not carry an Authorization header.")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme == "Bearer" and credentials:
        return _verify_bearer(settings, credentials, now)
    if scheme == "SharedKey" and ":" in credentials:
        return _verify_shared_key(settings, credentials, method, raw_path, raw_query, headers)
    raise BatchServiceError(
        400,
        "InvalidAuthenticationInfo",
        values=(
            (
                "AuthenticationErrorDetail",
                "Expected 'Bearer <token>' or 'SharedKey <account>:<signature>'.",
            ),
        ),
    )


def check_request_date(headers: CIMultiDictProxy[str], max_skew: timedelta, now: datetime) -> None:
    """`ocp-date` (or Date) must parse and be within the allowed skew of the server clock."""
    for name in ("ocp-date", "Date"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            sent = parse_rfc1123(value)
        except ValueError:
            raise invalid_header(name, value, "expected an RFC 1123 date") from None
        if abs(now - sent) > max_skew:
            raise authentication_failed(
                f"Request date header too old: '{value}'; server time is "
                f"'{format_odata_time(now)}' (allowed skew {int(max_skew.total_seconds() // 60)} minutes)."
            )
        return


def _verify_bearer(settings: AuthSettings, token: str, now: datetime) -> Principal:
    if settings.token_signing_key is None:
        raise authentication_failed("This emulator was started without a token signing key.")
    try:
        claims = jwt.decode(
            token,
            settings.token_signing_key,
            algorithms=["HS256"],
            audience=BATCH_AUDIENCE,
            leeway=settings.token_leeway_seconds,
            options={"require": ["exp", "aud"]},
        )
    except jwt.InvalidAudienceError:
        audience = _unverified_claim(token, "aud")
        raise authentication_failed(
            f"The access token has been obtained from wrong audience or resource '{audience}'. "
            f"It should exactly match (including forward slash) with one of the allowed "
            f"audiences '{BATCH_AUDIENCE}'."
        ) from None
    except jwt.ExpiredSignatureError:
        expiry = _unverified_claim(token, "exp")
        expiry_text = (
            format_odata_time(datetime.fromtimestamp(expiry, UTC)) if isinstance(expiry, int) else "?"
        )
        raise authentication_failed(
            f"The access token expiry UTC time '{expiry_text}' is earlier than current UTC time "
            f"'{format_odata_time(now)}'."
        ) from None
    except jwt.InvalidTokenError as exc:
        raise authentication_failed(f"The access token is invalid: {exc}.") from None
    name = str(claims.get("appid") or claims.get("oid") or "unknown")
    return Principal("Bearer", name, claims=claims)


def _unverified_claim(token: str, claim: str) -> object:
    try:
        return jwt.decode(token, options={"verify_signature": False}).get(claim)
    except jwt.InvalidTokenError:
        return None


def _verify_shared_key(
    settings: AuthSettings,
    credentials: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: CIMultiDictProxy[str],
) -> Principal:
    account, _, signature = credentials.rpartition(":")
    if not settings.allow_shared_key:
        raise authentication_failed(
            "The specified type of authentication SharedKey is not allowed for this account."
        )
    if account.lower() != settings.account_name.lower():
        raise authentication_failed(f"The account '{account}' is not this Batch account.")
    if headers.get("ocp-date") is None and headers.get("Date") is None:
        raise authentication_failed("Request date header not specified (ocp-date or Date).")
    try:
        key = base64.b64decode(settings.account_key, validate=True)
    except binascii.Error as exc:  # pragma: no cover - constructor validates the key
        raise RuntimeError("emulator account key is not base64") from exc

    documented = documented_string_to_sign(account, method, raw_path, raw_query, headers)
    if hmac.compare_digest(sign(key, documented), signature):
        return Principal("SharedKey", account, signing_variant="documented")
    if settings.accept_sdk_variant:
        variant = sdk_string_to_sign(account, method, raw_path, raw_query, headers)
        if hmac.compare_digest(sign(key, variant), signature):
            return Principal("SharedKey", account, signing_variant="azure-batch-sdk")
    raise authentication_failed(
        f"The MAC signature found in the HTTP request '{signature}' is not the same as any "
        f"computed signature. Server used following string to sign: '{documented}'."
    )


def sign(key: bytes, string_to_sign: str) -> str:
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def documented_string_to_sign(
    account: str, method: str, raw_path: str, raw_query: str, headers: CIMultiDictProxy[str]
) -> str:
    values = _standard_header_values(headers)
    if values["Content-Length"] == "0":
        values["Content-Length"] = ""
    if "ocp-date" in headers:
        values["Date"] = ""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), []).append(value)
    resource = f"/{account}{raw_path}" + "".join(
        f"\n{name}:{','.join(sorted(grouped[name]))}" for name in sorted(grouped)
    )
    return _assemble(method, values.values(), headers, resource)


def sdk_string_to_sign(
    account: str, method: str, raw_path: str, raw_query: str, headers: CIMultiDictProxy[str]
) -> str:
    """What azure-batch 15.1's BatchSharedKeyAuthPolicy signs for the same request."""
    values = _standard_header_values(headers)
    if method not in ("GET", "HEAD") and not values["Content-Length"]:
        values["Content-Length"] = "0"
    first_values: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=False):
        first_values.setdefault(name, value)
    resource = f"/{account}{raw_path}" + "".join(
        f"\n{name}:{first_values[name]}" for name in sorted(first_values)
    )
    return _assemble(method, values.values(), headers, resource)


def _standard_header_values(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    return {name: headers.get(name, "") for name in SIGNED_STANDARD_HEADERS}


def _assemble(
    method: str, standard_values: Iterable[str], headers: CIMultiDictProxy[str], resource: str
) -> str:
    ocp_headers = sorted(
        (name.lower(), value.strip()) for name, value in headers.items() if name.lower().startswith("ocp-")
    )
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in ocp_headers)
    return method + "\n" + "\n".join(standard_values) + "\n" + canonical_headers + resource


def redact_authorization(value: str | None) -> str | None:
    """Keep only the scheme: recorded requests must not hold tokens or signatures."""
    if value is None:
        return None
    return value.split(" ", 1)[0] + " <redacted>"
