"""BatchEmulator: one emulated Batch account over HTTPS on 127.0.0.1.

The server runs on its own event loop in a background thread, so a synchronous
client (azure-batch's BatchClient over requests) and an async one (httpx,
aiohttp) can both call it from a test. TLS uses a throwaway trustme CA whose
certificate covers `localhost` and `127.0.0.1`; clients trust `ca_path`
(azure-core: `connection_verify=emu.ca_path`; httpx: `verify=emu.ssl_context()`).
The endpoint is `https://localhost:{port}` because the function's endpoint
allow-list accepts `localhost` but never an IP literal.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import trustme
from aiohttp import web

from standins import LoopThread, StartStop
from standins.batch.auth import AuthSettings
from standins.batch.capacity import TokenBucket
from standins.batch.faults import Fault, FaultQueue
from standins.batch.recording import RecordedRequest, RequestLog
from standins.batch.service import SUPPORTED_API_VERSIONS, BatchService, ServiceSettings
from standins.batch.store import AppliedPatch, JobStore, render_job


class BatchEmulator(StartStop):
    """A local Batch account implementing GET/PATCH /jobs/{jobId} (Update Job contract)."""

    def __init__(
        self,
        *,
        account_name: str = "localbatch",
        account_key: str | None = None,
        token_signing_key: bytes | None = None,
        allow_shared_key: bool = True,
        accept_sdk_shared_key_variant: bool = False,
        token_leeway_seconds: float = 300.0,
        max_clock_skew: timedelta = timedelta(minutes=15),
        supported_api_versions: Iterable[str] = SUPPORTED_API_VERSIONS,
        max_body_bytes: int = 1024 * 1024,
        capacity_rps: float | None = None,
        capacity_burst: float | None = None,
        latency_seconds: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`token_signing_key` is the TokenEndpoint's key (None: bearer tokens are refused).

        `accept_sdk_shared_key_variant` also accepts what azure-batch 15.1 signs where
        it departs from the documented algorithm (see auth.py); off by default so a
        client that follows the SDK's quirks is caught.

        `capacity_rps`: the account's request rate; past it (a token bucket holding
        `capacity_burst` requests, default one second's worth) requests get 429
        TooManyRequests with Retry-After (capacity.py). None: unlimited.
        `latency_seconds`: how long the service takes over each admitted request.
        """
        self.account_name = account_name
        self.account_key = account_key or base64.b64encode(secrets.token_bytes(64)).decode()
        base64.b64decode(self.account_key, validate=True)  # fail fast on a bad key
        self._settings = ServiceSettings(
            auth=AuthSettings(
                account_name=account_name,
                account_key=self.account_key,
                token_signing_key=token_signing_key,
                allow_shared_key=allow_shared_key,
                accept_sdk_variant=accept_sdk_shared_key_variant,
                token_leeway_seconds=token_leeway_seconds,
                max_clock_skew=max_clock_skew,
            ),
            supported_api_versions=tuple(supported_api_versions),
            max_body_bytes=max_body_bytes,
            latency_seconds=latency_seconds,
        )
        self.capacity = TokenBucket(capacity_rps, capacity_burst) if capacity_rps is not None else None
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._store = JobStore()
        self._faults = FaultQueue()
        self._log = RequestLog()
        self._loop_thread = LoopThread(f"batch-emulator-{account_name}")
        self._runner: web.AppRunner | None = None
        self._tls_dir: Path | None = None
        self._ca: trustme.CA | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        if self._runner is not None:
            return self
        self._ca = trustme.CA()
        self._tls_dir = Path(tempfile.mkdtemp(prefix="batch-emulator-"))
        self._ca.cert_pem.write_to_path(str(self._tls_dir / "ca.pem"))
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
        service = BatchService(
            self._settings, self._store, self._faults, self._log, lambda: self.endpoint, self.capacity
        )
        self._loop_thread.start()
        self._loop_thread.run(self._start_site(service.build_app(), server_context))
        return self

    async def _start_site(self, app: web.Application, context: ssl.SSLContext) -> None:
        # A short shutdown timeout: stop() must not wait out a long injected delay.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._requested_port, ssl_context=context).start()
        self._port = runner.addresses[0][1]
        self._runner = runner

    def stop(self) -> None:
        if self._runner is not None:
            self._loop_thread.run(self._runner.cleanup())
            self._runner = None
        self._loop_thread.stop()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    # --- where and how to connect -------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("BatchEmulator is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        port = self._port if self._port is not None else self._requested_port
        return f"https://localhost:{port}"

    @property
    def ca_path(self) -> str:
        if self._tls_dir is None:
            raise RuntimeError("BatchEmulator is not started")
        return str(self._tls_dir / "ca.pem")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the emulator's CA."""
        return ssl.create_default_context(cafile=self.ca_path)

    # --- jobs ------------------------------------------------------------------------

    def add_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Create a job (only `id` is required); returns it as GET would show it."""
        return render_job(self._store.add(job), self.endpoint)

    def seed(
        self, jobs: Iterable[Mapping[str, Any]] | Mapping[str, Any] | str | Path
    ) -> list[dict[str, Any]]:
        """Add many jobs: a list of job dicts, `{"jobs": [...]}`, or a JSON file of either."""
        loaded: Any = jobs
        if isinstance(loaded, (str, Path)):
            loaded = json.loads(Path(loaded).read_text(encoding="utf-8"))
        if isinstance(loaded, Mapping):
            loaded = loaded["jobs"]
        return [self.add_job(job) for job in loaded]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A snapshot of the job as GET /jobs/{id} would return it, or None."""
        fields = self._store.snapshot(job_id)
        return render_job(fields, self.endpoint) if fields is not None else None

    def set_job_state(self, job_id: str, state: str) -> dict[str, Any]:
        return self.change_job(job_id, {"state": state})

    def change_job(self, job_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a job as another writer would (top-level replace, new ETag)."""
        return render_job(self._store.change(job_id, changes), self.endpoint)

    def patch_log(self, job_id: str) -> list[AppliedPatch]:
        """Successful Update Job calls on this job, oldest first."""
        return self._store.patch_log(job_id)

    # --- faults and the request log ---------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        self._faults.add(fault)
        return fault

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    def clear_faults(self) -> int:
        """Drop every pending fault (jobs and the request log stay); how many were pending."""
        pending = len(self._faults.pending())
        self._faults.clear()
        return pending

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._log.entries()

    def reset(self) -> None:
        """Forget jobs, faults and recorded requests (the server keeps running)."""
        self._store.clear()
        self._faults.clear()
        self._log.clear()
