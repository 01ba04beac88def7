"""A local App Service / Azure Functions managed-identity endpoint.

Azure sets `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` in a Function app; both
azure-identity's async `ManagedIdentityCredential` and the sync one (through
MSAL) then call `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...`
with the header `X-IDENTITY-HEADER: {IDENTITY_HEADER}` (and `client_id=` for a
user-assigned identity). This server answers that call over plain HTTP on
127.0.0.1, as the real one does, so the production credential code runs as is.

Protocol facts checked against azure-identity 1.27 (`_credentials/app_service.py`)
and msal 1.39 (`managed_identity.py::_obtain_token_on_app_service`): success is
JSON with `access_token`, `expires_on` (epoch seconds, a *string* on App Service),
`resource`, `token_type`, `client_id`; errors are JSON `{statusCode, message,
correlationId}`. A missing or wrong identity header is answered 401 here; the real
status for that case is not documented (reports show 400 and 401).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections import Counter
from typing import Self

from aiohttp import web

from standins import LoopThread, StartStop
from standins.identity.tokens import DEFAULT_TENANT_ID, issue_token

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"
DEFAULT_CLIENT_ID = "11111111-1111-1111-1111-111111111111"


class TokenEndpoint(StartStop):
    """Issues HS256 JWTs for any resource to callers that present the identity header.

    `requests` counts token requests per requested resource (refused ones too),
    so tests can assert that a client caches its token instead of fetching one
    per message. Thread-safe: the server runs on its own loop thread.
    """

    def __init__(
        self,
        signing_key: bytes,
        *,
        lifetime_seconds: int = 3600,
        client_id: str = DEFAULT_CLIENT_ID,
        object_id: str | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        allowed_client_ids: frozenset[str] | None = None,
        identity_header: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`client_id` is the system-assigned identity's; a request naming another
        `client_id` gets a token for that user-assigned identity, unless
        `allowed_client_ids` is given and does not contain it (then 400, as App
        Service answers for an identity the app does not have).

        `oid`/`sub` carry `object_id` when given, else the token's client id: a
        real token holds the principal's object id, but tests usually want a single
        id to assert on."""
        if lifetime_seconds <= 0:
            raise ValueError("lifetime_seconds must be positive")
        self.signing_key = signing_key
        self.lifetime_seconds = lifetime_seconds
        self.client_id = client_id
        self.object_id = object_id
        self.tenant_id = tenant_id
        self.allowed_client_ids = allowed_client_ids
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._rejected = 0
        self._issued: list[dict[str, object]] = []
        self._down_until = 0.0  # monotonic; see outage()
        self._down_status = 503
        self._slow_until = 0.0  # monotonic; see slow()
        self._slow_seconds = 0.0
        self._loop_thread = LoopThread("identity-endpoint")
        self._runner: web.AppRunner | None = None

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> Self:
        self._loop_thread.start()
        self._loop_thread.run(self._start_site())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._loop_thread.run(self._runner.cleanup())
            self._runner = None
        self._loop_thread.stop()

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_get(TOKEN_PATH, self._handle_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    # --- what tests read ----------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("TokenEndpoint is not started")
        return f"http://{self._host}:{self._port}{TOKEN_PATH}"

    @property
    def env(self) -> dict[str, str]:
        """The app settings Azure sets in a Function app with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.identity_header}

    @property
    def requests(self) -> Counter[str]:
        """Token requests per requested resource, refused ones included (a copy)."""
        with self._lock:
            return Counter(self._requests)

    @property
    def rejected(self) -> int:
        with self._lock:
            return self._rejected

    @property
    def issued(self) -> list[dict[str, object]]:
        """One entry per issued token: resource, client_id, expires_on, token."""
        with self._lock:
            return [dict(entry) for entry in self._issued]

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()
            self._rejected = 0
            self._issued.clear()

    # --- faults ---------------------------------------------------------------------

    def outage(self, seconds: float, status: int = 503) -> None:
        """Answer every token request with `status` for the next `seconds` (the
        local token service restarting or unhealthy; App Service answers 5xx then)."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_status = status

    def slow(self, delay_seconds: float, for_seconds: float) -> None:
        """Delay every token request by `delay_seconds` for the next `for_seconds`."""
        with self._lock:
            self._slow_until = time.monotonic() + for_seconds
            self._slow_seconds = delay_seconds

    # --- protocol -------------------------------------------------------------------

    async def _handle_token(self, request: web.Request) -> web.Response:
        resource = request.query.get("resource", "")
        with self._lock:
            self._requests[resource] += 1
            now = time.monotonic()
            down = self._down_status if now < self._down_until else None
            delay = self._slow_seconds if now < self._slow_until else 0.0
        if delay:
            await asyncio.sleep(delay)
        if down is not None:
            return self._refuse(down, "the managed identity endpoint is unavailable")
        presented = request.headers.get("X-IDENTITY-HEADER", "").encode()
        if not secrets.compare_digest(presented, self.identity_header.encode()):
            return self._refuse(401, "X-IDENTITY-HEADER is missing or does not match")
        if request.query.get("api-version") != API_VERSION:
            return self._refuse(400, f"api-version must be {API_VERSION}")
        if not resource:
            return self._refuse(400, "resource query parameter is required")
        client_id = request.query.get("client_id") or self.client_id
        if (
            self.allowed_client_ids is not None
            and client_id != self.client_id
            and client_id not in self.allowed_client_ids
        ):
            return self._refuse(400, f"Unable to load the managed identity {client_id}")
        object_id = request.query.get("object_id") or request.query.get("principal_id")
        extra = {"xms_mirid": request.query["mi_res_id"]} if "mi_res_id" in request.query else None
        token, expires_on = issue_token(
            self.signing_key,
            resource=resource,
            client_id=client_id,
            object_id=object_id or self.object_id or client_id,
            lifetime_seconds=self.lifetime_seconds,
            tenant_id=self.tenant_id,
            extra_claims=extra,
        )
        with self._lock:
            self._issued.append(
                {
                    "resource": resource,
                    "client_id": client_id,
                    "expires_on": expires_on,
                    "token": token,
                }
            )
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    def _refuse(self, status: int, message: str) -> web.Response:
        with self._lock:
            self._rejected += 1
        return web.json_response(
            {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())},
            status=status,
        )
