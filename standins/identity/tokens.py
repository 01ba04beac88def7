"""Access tokens the local identity endpoint issues and the Batch emulator checks.

Real Entra tokens are RS256 and validated against published keys; locally both
sides share one HMAC key instead (HS256), which keeps the emulator free of any
key-discovery machinery while still making a forged or mis-addressed token fail.
The claim names follow Entra v1 app-only tokens (`aud`, `appid`, `oid`, `tid`,
`idtyp`) so code that logs or inspects claims sees familiar shapes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt

ALGORITHM = "HS256"
DEFAULT_TENANT_ID = "00000000-0000-0000-0000-00000000feed"
# Resource (v1 audience) strings as the SDKs turn scopes into them: the scope minus
# "/.default". Batch's keeps its trailing slash and the service insists on it.
BATCH_RESOURCE = "https://batch.core.windows.net/"
SERVICEBUS_RESOURCE = "https://servicebus.azure.net"


def issue_token(
    signing_key: bytes,
    *,
    resource: str,
    client_id: str,
    object_id: str,
    lifetime_seconds: int,
    tenant_id: str = DEFAULT_TENANT_ID,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """Return `(jwt, expires_on)` for an app-only token addressed to `resource`."""
    issued_at = int(time.time() if now is None else now)
    expires_on = issued_at + lifetime_seconds
    claims: dict[str, Any] = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_on,
        "appid": client_id,
        "oid": object_id,
        "sub": object_id,
        "tid": tenant_id,
        "idtyp": "app",
        "ver": "1.0",
        # Unique per token so a test can tell a re-fetched token from a cached one.
        "jti": str(uuid.uuid4()),
    }
    if extra_claims:
        claims.update(extra_claims)
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM), expires_on


def decode_token(
    token: str, signing_key: bytes, *, audience: str, leeway_seconds: float = 0
) -> dict[str, Any]:
    """Verify signature, audience and expiry; raise `jwt.InvalidTokenError` if any fails."""
    return jwt.decode(
        token,
        signing_key,
        algorithms=[ALGORITHM],
        audience=audience,
        leeway=leeway_seconds,
        options={"require": ["exp", "aud"]},
    )
