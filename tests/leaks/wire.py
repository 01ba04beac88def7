"""Hostile endpoints, redirects and a production-like configuration, over real sockets.

The function runs as deployed (`Runtime.from_settings`: the aiohttp transport, BatchAuth,
azure-identity's ManagedIdentityCredential against the local token endpoint) with these
loopback servers around it:

- the Batch emulator, allow-listed (`https://localhost:E`): the positive control;
- a redirecting HTTPS server, allow-listed (`https://localhost:R`), answering 301/302/303/
  307/308 with a Location pointing anywhere;
- two canaries, HTTPS (`C`, a certificate the client trusts for every hostile name) and
  plain HTTP (`H`): they record every request and every Authorization header;
- a fake `https://acct.westeurope.batch.azure.com` for the production-like run.

DNS is hijacked for aiohttp (servers.hijacked_dns): every name but the routed ones
resolves to a canary. So a hostile endpoint that got past the allow-list would arrive,
token and all, where it is counted; `guards_off` proves that by removing the guards.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
from pydantic import ValidationError

import handlers.plan
from handlers.auth import BatchAuth
from handlers.endpoints import is_emulator
from handlers.errors import RetryLater
from handlers.handler import Inbound
from handlers.runtime import Runtime
from handlers.settings import Settings
from standins.batch import BatchEmulator
from standins.identity import BATCH_RESOURCE, TokenEndpoint
from tests.leaks.canaries import RecordingPublisher, captured_logs
from tests.leaks.servers import Hit, RawServer, Response, hijacked_dns

SIGNING_KEY = b"leak-suite-hs256-signing-key-001"
ACCOUNT_KEY = "bGVhay1zdWl0ZS1zaGFyZWQta2V5LW5vdC1hLXJlYWwtb25l"  # base64, test only
CLIENT_ID = "33333333-3333-3333-3333-333333333333"
PROD = "https://acct.westeurope.batch.azure.com"
PROD_HOST = "acct.westeurope.batch.azure.com"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Names the canary's certificate covers, so TLS would succeed for a leaked request.
CANARY_NAMES = (
    "localhost",
    "127.0.0.1",
    "::1",
    "evil.example",
    "*.evil.example",
    "acct.westeurope.batch.azure.com.evil.example",
    "localhost.evil.example",
    "evil.localhost",
    "localhost.batch.azure.com",
    "other.westeurope.batch.azure.com",
)


def _settings_aliases() -> set[str]:
    return {f.alias for f in Settings.model_fields.values() if f.alias}


@contextlib.contextmanager
def isolated_env(extra: dict[str, str]) -> Iterator[None]:
    """No app setting from the caller's environment; the token endpoint's variables set."""
    names = _settings_aliases() | {"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"}
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name in names}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name in extra:
            os.environ.pop(name, None)
        os.environ.update(saved)


@dataclass
class Trial:
    """One hostile form through one door (message field or setting) and what it caused."""

    kind: str  # endpoint | jobUrl | allow-list | default-endpoint | redirect-...
    form: str
    outcome: str  # rejected / refused-by-settings / failed / applied ...
    wire: dict[str, int]  # requests per server this trial caused
    canary_hits: int
    tokens_at_canary: int
    followed: bool = False

    @property
    def leaked(self) -> bool:
        return self.canary_hits > 0 or self.tokens_at_canary > 0 or self.followed


@dataclass
class Harness:
    tokens: TokenEndpoint
    emulator: BatchEmulator
    canary: RawServer
    plain: RawServer
    redirector: RawServer
    prod: RawServer
    bundle: str
    lookups: list[tuple[str, int]] = field(default_factory=list)
    runtimes: list[Runtime] = field(default_factory=list)
    publishers: list[RecordingPublisher] = field(default_factory=list)
    redirect_to: tuple[int, str] = (302, "/")

    # --- building the function --------------------------------------------------------

    def base(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "BATCH_ALLOWED_ENDPOINTS": f"{self.emulator.endpoint},{self.redirector.endpoint}",
            "BATCH_ALLOW_EMULATOR": True,
            "BATCH_DEFAULT_ENDPOINT": self.emulator.endpoint,
            "BATCH_CA_BUNDLE": self.bundle,
            "ServiceBusConnection__fullyQualifiedNamespace": "unused.servicebus.windows.net",
            "AZURE_CLIENT_ID": CLIENT_ID,
            "JOB_UPDATES_MAX_DELIVERY_COUNT": 3,
            "BATCH_RETRY_BUDGET_SECONDS": 5,
            "BATCH_MAX_ATTEMPTS": 2,
            "BATCH_HTTP_TIMEOUT_SECONDS": 3,
        }
        values.update(overrides)
        return {k: v for k, v in values.items() if v is not None}

    def runtime(self, settings: Settings) -> Runtime:
        publisher = RecordingPublisher()
        runtime = Runtime.from_settings(settings, publisher=publisher)
        self.runtimes.append(runtime)
        self.publishers.append(publisher)
        return runtime

    async def aclose(self) -> None:
        for runtime in self.runtimes:
            await runtime.aclose()
        self.runtimes.clear()

    # --- observing the wire -----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "emulator": len(self.emulator.requests),
            "canary-https": len(self.canary.hits),
            "canary-http": len(self.plain.hits),
            "canary-connections": self.canary.connections + self.plain.connections,
            "redirector": len(self.redirector.hits),
            "prod": len(self.prod.hits),
        }

    def canary_hits_since(self, before: dict[str, int]) -> list[Hit]:
        return self.canary.hits[before["canary-https"] :] + self.plain.hits[before["canary-http"] :]

    async def send(self, runtime: Runtime, message: dict[str, Any], key: str) -> str:
        body = json.dumps({"schemaVersion": "1.0", **message}).encode()
        try:
            result = await runtime.handler.handle(Inbound(body, key, 1, datetime.now(UTC)))
        except RetryLater as later:
            return f"transient: {later}"
        return result.outcome.value

    async def trial(self, runtime: Runtime, kind: str, form: str, message: dict[str, Any]) -> Trial:
        before = self.counts()
        outcome = await self.send(runtime, message, f"{kind}-{len(self.lookups)}-{form!r}")
        after = self.counts()
        hits = self.canary_hits_since(before)
        wire = {k: after[k] - before[k] for k in after}
        return Trial(kind, form, outcome, wire, len(hits), sum(1 for h in hits if h.authorization))

    # --- redirects ------------------------------------------------------------------------

    def respond_redirect(self, hit: Hit) -> Response:
        status, location = self.redirect_to
        return status, [("Location", location), ("Content-Type", "text/html")], b"<a>moved</a>"


def respond_prod(hit: Hit) -> Response:
    headers = [("ETag", "0x8DD00000000C0DE"), ("Last-Modified", "Thu, 01 Jan 2026 12:00:01 GMT")]
    headers.append(("request-id", "prod-1"))
    if hit.method == "GET":
        job = {"id": "job-1", "state": "active", "priority": 0, "poolInfo": {"poolId": "p"}}
        return 200, [*headers, ("Content-Type", "application/json")], json.dumps(job).encode()
    return 200, headers, b""


@contextlib.contextmanager
def harness() -> Iterator[Harness]:
    """Every server up, the CA bundle written, DNS hijacked, the environment isolated."""
    ca = trustme.CA()
    tls_dir = Path(tempfile.mkdtemp(prefix="leaks-"))

    def server_context(*names: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        return context

    with (
        TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
        BatchEmulator(
            token_signing_key=SIGNING_KEY, account_name="leakbatch", account_key=ACCOUNT_KEY
        ) as emu,
    ):
        canary = RawServer("canary-https", server_context(*CANARY_NAMES)).start()
        plain = RawServer("canary-http", None).start()
        redirector = RawServer("redirector", server_context("localhost")).start()
        prod = RawServer("prod", server_context(PROD_HOST), respond_prod).start()
        bundle = tls_dir / "bundle.pem"
        bundle.write_text(Path(emu.ca_path).read_text() + ca.cert_pem.bytes().decode())
        h = Harness(tokens, emu, canary, plain, redirector, prod, str(bundle))
        redirector.respond = h.respond_redirect
        emu.add_job({"id": "job-1", "priority": 0})
        routes = {
            ("localhost", emu.port): ("127.0.0.1", emu.port),
            ("localhost", redirector.port): ("127.0.0.1", redirector.port),
            (PROD_HOST, 443): ("127.0.0.1", prod.port),
        }
        try:
            with (
                hijacked_dns(routes, ("127.0.0.1", canary.port), ("127.0.0.1", plain.port), h.lookups),
                isolated_env(tokens.env),
            ):
                yield h
        finally:
            for server in (canary, plain, redirector, prod):
                server.stop()
            for path in tls_dir.iterdir():
                path.unlink()
            tls_dir.rmdir()


# --- Hostile forms ---------------------------------------------------------------------------


def message_forms(h: Harness) -> list[str]:
    """Endpoint forms a message may name, none of which is an allow-listed origin."""
    e, c, p, r = h.emulator.port, h.canary.port, h.plain.port, h.redirector.port
    good = f"localhost:{e}"
    return [
        f"http://{good}",
        f"http://localhost:{p}",
        f"https://localhost:{c}",
        f"https://{good}@localhost:{c}",
        f"https://user:pw@{good}",
        f"https://{good}:{c}",
        f"https://127.0.0.1:{e}",
        f"https://127.0.0.1:{c}",
        f"https://[::1]:{e}",
        f"https://[::1]:{c}",
        f"https://[::ffff:127.0.0.1]:{c}",
        f"https://2130706433:{c}",
        f"https://0x7f000001:{c}",
        f"https://0177.0.0.1:{c}",
        f"https://127.1:{c}",
        f"https://0.0.0.0:{c}",
        f"https://[::]:{c}",
        f"https://localhost.:{e}",
        f"https://localhost..:{e}",
        f"https://LOCALHOST:{c}",
        f"https://xn--lcalhost-9aa:{e}",
        f"https://lоcalhost:{e}",  # Cyrillic o
        f"https://ｌｏｃａｌｈｏｓｔ:{e}",  # fullwidth
        f"https://ⓛocalhost:{e}",  # enclosed l: IDNA maps it to l
        f"https://localhost。:{e}",  # ideographic full stop
        f"https://{good}\\@localhost:{c}",
        f"https:\\\\{good}",
        f"https://{good}\\evil.example",
        f"https://local%68ost:{e}",
        f"https://%6c%6f%63%61%6c%68%6f%73%74:{e}",
        f"https://localhost%3a{c}",
        f"https://{good}%40evil.example",
        f"https://evil.example%2f@{good}",
        f"https://{good}/jobs",
        f"https://{good}/?x=1",
        f"https://{good}#frag",
        f"https://{good}/..;/",
        f"https://{good}/%2e%2e",
        f"https://{good}\n@localhost:{c}",
        f"https://{good}\r\nHost: evil.example",
        f"https://localhost\n:{e}",
        f" https://localhost:{c}",
        f"https://localhost:{e + 65536}",
        f"https://localhost:-{e}",
        f"https://localhost:{e}.evil.example",
        f"https://localhost.evil.example:{e}",
        f"https://evil.localhost:{e}",
        f"https://localhost.batch.azure.com:{e}",
        "https://acct.westeurope.batch.azure.com.evil.example",
        f"https://acct.westeurope.batch.azure.com.evil.example:{c}",
        f"https://acct.westeurope.batch.azure.com@localhost:{c}",
        "https://other.westeurope.batch.azure.com",
        "https://evil.example",
        f"https://evil.example#@{good}",
        f"https://{good}#@evil.example",
        f"https://evil.example?@{good}",
        f"https://{good}?@evil.example",
        f"ftp://{good}",
        f"wss://{good}",
        f"//localhost:{c}",
        good,
        f"https:/{good}",
        f"https:///{good}",
        f"httpS://localhost:{c}",
        f"HTTPS://LOCALHOST:{r + 1}",
        f"https://localhost%00.evil.example:{e}",
        f"https://localhost\x00:{e}",
        f"https://loca lhost:{e}",
        f"https://local_host:{e}",
        f"https://-localhost:{e}",
        f"https://localhost-:{e}",
        f"https://*.localhost:{e}",
        f"https://[localhost]:{e}",
        f"https://{good}:443",
        "",
    ]


def equivalent_forms(h: Harness) -> list[str]:
    """Other spellings of the allow-listed emulator: they must reach it, and only it."""
    e = h.emulator.port
    return [
        f"https://LOCALHOST:{e}",
        f"https://localhost:{e}/",
        f"HTTPS://localhost:{e}",
        f"hTTps://LocalHost:{e}",
    ]


def allow_list_forms(h: Harness) -> list[str]:
    """BATCH_ALLOWED_ENDPOINTS values the settings must refuse (BATCH_ALLOW_EMULATOR=true)."""
    e, c, p = h.emulator.port, h.canary.port, h.plain.port
    return [
        f"http://localhost:{e}",
        f"https://user@localhost:{e}",
        f"https://localhost:{e}@localhost:{c}",
        f"https://127.0.0.1:{e}",
        f"https://[::1]:{e}",
        f"https://localhost.:{e}",
        f"https://lоcalhost:{e}",
        f"https://localhost:{e}/jobs",
        f"https://localhost:{e}?x=1",
        f"https://localhost:{e}#f",
        "https://evil.example",
        "https://acct.westeurope.batch.azure.com.evil.example",
        "https://batch.azure.com",
        "https://.batch.azure.com",
        "https://acct..batch.azure.com",
        "https://acct.westeurope.batch.azure.com.",
        "https://acct.westeurope.batch.azure.com:99999",
        "https://acct.westeurope.batch.azure.com\\@evil.example",
        "https://acct.westeurope.batch.azure.com@evil.example",
        "https://acct.westeurope.batch.azure.com%2eevil.example",
        "https://acct.westeurope.batch.azure.com\n.evil.example",
        f"https://localhost:{e},https://evil.example",
        f"https://localhost:{e};http://localhost:{p}",
        "https://evilbatch.azure.com",
        "https://acct.batch.azure.com.cn",
        "https://2130706433",
        "https://0x7f000001.batch.azure.com.evil.example",
        "https://аcct.westeurope.batch.azure.com",  # Cyrillic a
        "https://*.batch.azure.com",
        "",
        " , ; ",
    ]


def default_endpoint_forms(h: Harness) -> list[str]:
    """BATCH_DEFAULT_ENDPOINT values outside the allow-list: refused by the settings."""
    e, c = h.emulator.port, h.canary.port
    return [
        "https://evil.example",
        f"https://localhost:{c}",
        f"http://localhost:{e}",
        f"https://user@localhost:{e}",
        PROD,
        f"https://localhost.:{e}",
    ]


def redirect_locations(h: Harness) -> list[str]:
    e, c, p, r = h.emulator.port, h.canary.port, h.plain.port, h.redirector.port
    return [
        f"https://localhost:{c}/jobs/job-1",
        f"http://localhost:{p}/jobs/job-1",
        f"https://127.0.0.1:{c}/jobs/job-1",
        f"https://[::1]:{c}/jobs/job-1",
        f"//localhost:{c}/jobs/job-1",
        f"https://localhost:{r}@localhost:{c}/jobs/job-1",
        "https://evil.example/jobs/job-1",
        "http://evil.example/jobs/job-1",
        "https://acct.westeurope.batch.azure.com.evil.example/jobs/job-1",
        f"https://LOCALHOST:{c}/jobs/job-1",
        f"https://localhost.:{c}/jobs/job-1",
        "/jobs/job-1?api-version=2025-06-01&redirected=1",
        f"https://localhost:{r}/jobs/job-2",
        f"https://localhost:{e}/jobs/job-1",  # the other allow-listed origin
        f"https:\\\\localhost:{c}\\jobs\\job-1",
        f"https://localhost:{c}/%2e%2e/jobs/job-1",
    ]


# --- Runs ------------------------------------------------------------------------------------


@dataclass
class WireReport:
    trials: list[Trial] = field(default_factory=list)
    controls: list[Trial] = field(default_factory=list)
    redirects: list[Trial] = field(default_factory=list)
    production: dict[str, Any] = field(default_factory=dict)
    guards_off: list[Trial] = field(default_factory=list)
    wire_attempts: int = 0
    dns_lookups: list[tuple[str, int]] = field(default_factory=list)
    tokens_in_logs_or_events: int = 0
    identity_header_in_logs: bool = False


def _refused(h: Harness, kind: str, form: str, values: dict[str, Any]) -> Trial | dict[str, Any]:
    """A Trial if the settings refuse `values` (nothing sent), else the settings to drive."""
    try:
        Settings(**values)
    except ValidationError:
        return Trial(kind, form, "refused-by-settings", {}, 0, 0)
    return values


async def run_hostile(h: Harness, report: WireReport) -> None:
    runtime = h.runtime(Settings(**h.base()))
    report.controls.append(await h.trial(runtime, "control", h.emulator.endpoint, _msg(h.emulator.endpoint)))
    for form in message_forms(h):
        report.trials.append(await h.trial(runtime, "endpoint", form, _msg(form)))
        job_url = {"jobUrl": f"{form}/jobs/job-1", "update": {"priority": 2}}
        report.trials.append(await h.trial(runtime, "jobUrl", form, job_url))
    for form in equivalent_forms(h):
        report.controls.append(await h.trial(runtime, "equivalent", form, _msg(form)))
    for kind, forms, setting in (
        ("allow-list", allow_list_forms(h), "BATCH_ALLOWED_ENDPOINTS"),
        ("default-endpoint", default_endpoint_forms(h), "BATCH_DEFAULT_ENDPOINT"),
    ):
        for form in forms:
            values = h.base(**{setting: form})
            if setting == "BATCH_ALLOWED_ENDPOINTS":
                values.pop("BATCH_DEFAULT_ENDPOINT")
            got = _refused(h, kind, form, values)
            if isinstance(got, Trial):
                report.trials.append(got)
                continue
            # Accepted: drive it, to the default and to the form itself, and count the wire.
            accepted = h.runtime(Settings(**got))
            first = await h.trial(accepted, kind, form, {"jobId": "job-1", "update": {"priority": 3}})
            second = await h.trial(accepted, kind, form, _msg(form.strip()))
            first.outcome = f"accepted-by-settings: {first.outcome}/{second.outcome}"
            first.canary_hits += second.canary_hits
            first.tokens_at_canary += second.tokens_at_canary
            report.trials.append(first)


def _msg(endpoint: str) -> dict[str, Any]:
    return {"jobId": "job-1", "endpoint": endpoint, "update": {"priority": 1}}


async def run_redirects(h: Harness, report: WireReport) -> None:
    entra = h.runtime(Settings(**h.base()))
    shared_key = h.runtime(
        Settings(
            **h.base(
                BATCH_AUTH_MODE="sharedkey", BATCH_ACCOUNT_NAME="leakbatch", BATCH_ACCOUNT_KEY=ACCOUNT_KEY
            )
        )
    )
    modes = (
        ("redirect-patch", entra, {"update": {"priority": 4}}),
        ("redirect-get", entra, {"update": {"priority": 5}, "options": {"dryRun": True}}),
        ("redirect-sharedkey", shared_key, {"update": {"priority": 6}}),
    )
    for kind, runtime, message in modes:
        for status in REDIRECT_STATUSES:
            for location in redirect_locations(h):
                h.redirect_to = (status, location)
                full = {"jobId": "job-1", "endpoint": h.redirector.endpoint, **message}
                trial = await h.trial(runtime, kind, f"{status} {location}", full)
                # Exactly the one request to the redirecting (allow-listed) server, nothing after it.
                trial.followed = trial.wire["redirector"] != 1 or trial.wire["emulator"] != 0
                report.redirects.append(trial)


async def run_production_like(h: Harness, report: WireReport) -> None:
    """Real-looking endpoint only, BATCH_ALLOW_EMULATOR unset, settings from the environment
    as the function reads them; the emulator rule checked from both sides."""
    env = {k: str(v) for k, v in h.base(BATCH_ALLOWED_ENDPOINTS=PROD, BATCH_DEFAULT_ENDPOINT=None).items()}
    env.pop("BATCH_ALLOW_EMULATOR")
    checks: dict[str, Any] = {}
    with _env(env):
        settings = Settings()  # type: ignore[call-arg]
        checks["allowEmulator"] = settings.allow_emulator
        checks["allowed"] = sorted(settings.allowed_endpoints)
        checks["defaultEndpoint"] = settings.endpoint_when_unnamed
        runtime = h.runtime(settings)
        before = h.counts()
        checks["unnamed"] = await h.send(runtime, {"jobId": "job-1", "update": {"priority": 7}}, "prod-1")
        checks["named"] = await h.send(runtime, _msg(PROD), "prod-2")
        new = h.prod.hits[before["prod"] :]
        checks["prodRequests"] = len(new)
        checks["prodBearer"] = sum(1 for hit in new if (hit.authorization or "").startswith("Bearer "))
        refused: dict[str, str] = {}
        for form in (
            h.emulator.endpoint,
            f"https://localhost:{h.prod.port}",
            f"https://localhost:{h.canary.port}",
        ):
            refused[form] = (await h.trial(runtime, "production", form, _msg(form))).outcome
        checks["emulatorMessages"] = refused
        checks["wireForRefused"] = h.counts()["emulator"] - before["emulator"]
    both = f"{PROD},{h.emulator.endpoint}"
    checks["emulatorInListWithoutFlag"] = _settings_outcome({**env, "BATCH_ALLOWED_ENDPOINTS": both})
    checks["emulatorInListFlagFalse"] = _settings_outcome(
        {**env, "BATCH_ALLOWED_ENDPOINTS": both, "BATCH_ALLOW_EMULATOR": "false"}
    )
    checks["emulatorInListFlagTrue"] = _settings_outcome(
        {**env, "BATCH_ALLOWED_ENDPOINTS": both, "BATCH_ALLOW_EMULATOR": "true"}
    )
    checks["prodWithFlagTrue"] = _settings_outcome({**env, "BATCH_ALLOW_EMULATOR": "true"})
    checks["isEmulator"] = {PROD: is_emulator(PROD), h.emulator.endpoint: is_emulator(h.emulator.endpoint)}
    report.production = checks


def _settings_outcome(env: dict[str, str]) -> str:
    with _env(env):
        try:
            Settings()  # type: ignore[call-arg]
        except ValidationError as invalid:
            return "refused: " + (
                "BATCH_ALLOW_EMULATOR" if "BATCH_ALLOW_EMULATOR" in str(invalid) else "other"
            )
    return "accepted"


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def guards_removed() -> Iterator[None]:
    """The allow-list check and BatchAuth's origin check turned off: what the canaries see then."""
    resolve, check = handlers.plan.resolve_endpoint, BatchAuth._check

    def anything(requested: str | None, allowed: frozenset[str], default: str | None) -> str:
        return (requested or default or "").rstrip("/")

    handlers.plan.resolve_endpoint = anything  # type: ignore[assignment]
    BatchAuth._check = lambda self, request: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        handlers.plan.resolve_endpoint = resolve
        BatchAuth._check = check  # type: ignore[method-assign]


def guard_forms(h: Harness) -> list[str]:
    c = h.canary.port
    return [
        f"https://localhost:{c}",
        f"https://127.0.0.1:{c}",
        "https://evil.example",
        "https://acct.westeurope.batch.azure.com.evil.example",
        "https://other.westeurope.batch.azure.com",
    ]


async def run_guards_off(h: Harness, report: WireReport) -> None:
    runtime = h.runtime(Settings(**h.base()))
    with guards_removed():
        for form in guard_forms(h):
            report.guards_off.append(await h.trial(runtime, "guards-off", form, _msg(form)))


async def run_wire(*, guards_off: bool = True) -> WireReport:
    report = WireReport()
    with harness() as h, captured_logs() as lines:
        try:
            await run_hostile(h, report)
            await run_redirects(h, report)
            await run_production_like(h, report)
            # Before the sensitivity run: its tokens reach the canary on purpose.
            issued = [str(entry["token"]) for entry in h.tokens.issued]
            events = "\n".join(e.body.decode() for p in h.publishers for e in p.events)
            logs = "\n".join(lines)
            report.tokens_in_logs_or_events = sum(1 for t in issued if t in logs or t in events)
            report.identity_header_in_logs = (
                h.tokens.identity_header in logs or h.tokens.identity_header in events
            )
            report.wire_attempts = sum(v for k, v in h.counts().items() if k != "canary-connections")
            report.dns_lookups = list(h.lookups)
            report.production["tokenRequests"] = h.tokens.requests[BATCH_RESOURCE]
            if guards_off:
                await run_guards_off(h, report)
        finally:
            await h.aclose()
    return report
