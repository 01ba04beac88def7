"""Canary secrets in every secret-bearing place of a job update, run through every outcome.

The places come from the Batch swagger (2025-06-01 `BatchService.json`: the properties marked
`x-ms-secret` — blobfuse `accountKey`/`sasKey`, Azure Files `accountKey` — and the
credential-bearing fields beside them: user account passwords and SSH keys, registry
passwords, CIFS passwords, identity references, resource-file SAS URLs, environment values,
extension settings, start-task command lines, metadata connection strings). Each canary is
unique, so a leak names its place; a leak is any 10-character window of a canary in an
event or a log record, so a cut-off prefix counts too.

The handler is the real one (plan, auth flow, retry loop, events) over httpx.MockTransport,
so every outcome can be scripted, including Batch errors that echo the request back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from handlers.auth import BatchAuth, TokenCache
from handlers.batch_client import BatchClient, RetryPolicy
from handlers.errors import RetryLater
from handlers.handler import Inbound, JobUpdateHandler
from handlers.settings import Settings
from handlers.transport import NoCookies
from tests.fakes import FakeCredential, RecordingPublisher

ENDPOINT = "https://acct.westeurope.batch.azure.com"
OTHER_ENDPOINT = "https://other.westeurope.batch.azure.com"  # a Batch endpoint, not listed
MAX_DELIVERIES = 3
TOKEN = "tok-canary-run"
WINDOW = 10


def canary(place: str) -> str:
    """A unique, deterministic secret for one place: `Q9` + 22 base32 characters."""
    digest = base64.b32encode(hashlib.sha256(place.encode()).digest()).decode()
    return "Q9" + digest[:22]


def leaked_in(secret: str, text: str, *, window: int = WINDOW) -> bool:
    """Does any `window`-character piece of `secret` appear in `text`?"""
    if len(secret) <= window:
        return secret in text
    return any(secret[i : i + window] in text for i in range(len(secret) - window + 1))


# Credential shapes as they turn up in free text; `{secret}` is the secret part.
SHAPES = {
    "basic": "Authorization: Basic {secret}",
    "bearer": "Authorization: Bearer {secret}",
    "sharedkey": "Authorization: SharedKey acct:{secret}",
    "servicebus-connection-string": (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={secret}"
    ),
    "storage-connection-string": (
        "DefaultEndpointsProtocol=https;AccountName=st;AccountKey={secret};EndpointSuffix=core.windows.net"
    ),
    "sas-connection-string": "BlobEndpoint=https://st.blob.core.windows.net/;SharedAccessSignature={secret}",
    "sas-url": "https://st.blob.core.windows.net/c/f.bin?sv=2024-08-04&sr=b&sig={secret}",
    "sas-token": "sv=2024-08-04&ss=b&srt=co&sp=r&sig={secret}",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\n{secret}\n{secret}==\n-----END RSA PRIVATE KEY-----",
    "pem-cut-short": "-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}",
    "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2JhdGNoIn0.{secret}",
    "url-userinfo": "https://deploy:{secret}@git.example.com/repo.git",
    "sql-password": "Server=tcp:db,1433;User ID=u;Password={secret};",
    "pwd": "pwd={secret}",
    "passphrase": "passphrase: {secret}",
    "client-secret": "clientSecret={secret}",
    "json-private-key": '"sshPrivateKey":"{secret}"',
}


def _pem(secret: str) -> str:
    return f"-----BEGIN RSA PRIVATE KEY-----\n{secret}\n-----END RSA PRIVATE KEY-----\n"


def canary_update() -> tuple[dict[str, Any], dict[str, str]]:
    """An update carrying a canary in every secret-bearing place: (update, {place: canary})."""
    c: dict[str, str] = {}

    def put(place: str) -> str:
        c[place] = canary(place)
        return c[place]

    identity = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
    pool = {
        "vmSize": "standard_d2s_v3",
        "userAccounts": [
            {
                "name": "ops",
                "password": put("userAccounts.password"),
                "linuxUserConfiguration": {
                    "uid": 1000,
                    "sshPrivateKey": _pem(put("userAccounts.sshPrivateKey")),
                },
            }
        ],
        "virtualMachineConfiguration": {
            "containerConfiguration": {
                "type": "dockerCompatible",
                "containerRegistries": [
                    {"registryServer": "r.azurecr.io", "username": "u", "password": put("registry.password")},
                    {
                        "registryServer": "m.azurecr.io",
                        "identityReference": {"resourceId": identity + put("registry.identityReference")},
                    },
                ],
            },
            "extensions": [
                {
                    "name": "ext",
                    "publisher": "p",
                    "type": "t",
                    "settings": {
                        "fileUris": [
                            f"https://st.blob.core.windows.net/x/s.sh?sig={put('extension.settings.sas')}"
                        ]
                    },
                    "protectedSettings": {
                        "commandToExecute": f"run --token {put('extension.protectedSettings')}",
                        "storageAccountKey": put("extension.protectedSettings.storageAccountKey"),
                    },
                },
                {
                    "name": "odd-keys",
                    "publisher": "p",
                    "type": "t",
                    "settings": {
                        "pwd": put("settings.pwd"),
                        "passphrase": put("settings.passphrase"),
                        "privateKeyPem": _pem(put("settings.privateKeyPem")),
                        "clientSecret": put("settings.clientSecret"),
                        "storageAccountKey": put("settings.storageAccountKey"),
                    },
                },
            ],
        },
        "mountConfiguration": [
            {
                "azureFileShareConfiguration": {
                    "accountName": "st",
                    "azureFileUrl": "https://st.file.core.windows.net/share",
                    "accountKey": put("azureFileShare.accountKey"),
                    "relativeMountPath": "files",
                }
            },
            {
                "cifsMountConfiguration": {
                    "username": "u",
                    "source": "//fs/share",
                    "relativeMountPath": "cifs",
                    "password": put("cifs.password"),
                }
            },
            {
                "nfsMountConfiguration": {
                    "source": "nfs:/export",
                    "relativeMountPath": "nfs",
                    "mountOptions": f"-o vers=4,password={put('nfs.mountOptions.password')}",
                }
            },
            {
                "azureBlobFileSystemConfiguration": {
                    "accountName": "st",
                    "containerName": "a",
                    "relativeMountPath": "a",
                    "accountKey": put("blobfuse.accountKey"),
                }
            },
            {
                "azureBlobFileSystemConfiguration": {
                    "accountName": "st",
                    "containerName": "b",
                    "relativeMountPath": "b",
                    "sasKey": f"sv=2024-08-04&sp=r&sig={put('blobfuse.sasKey')}",
                }
            },
            {
                "azureBlobFileSystemConfiguration": {
                    "accountName": "st",
                    "containerName": "c",
                    "relativeMountPath": "c",
                    "identityReference": {"resourceId": identity + put("blobfuse.identityReference")},
                }
            },
        ],
        "startTask": {
            "commandLine": (
                f"/bin/sh -c \"curl -H 'Authorization: Basic {put('startTask.basic')}' https://x"
                f' && mysql -uroot -p{put("startTask.mysql")}"'
            ),
            "resourceFiles": [
                {
                    "httpUrl": f"https://st.blob.core.windows.net/c/f?sv=2024&sig={put('resourceFile.httpUrl.sig')}"
                },
                {
                    "storageContainerUrl": f"https://st.blob.core.windows.net/c?sp=rl&sig={put('resourceFile.container.sig')}"
                },
                {
                    "autoStorageContainerName": "c",
                    "identityReference": {"resourceId": identity + put("resourceFile.identityReference")},
                },
            ],
            "environmentSettings": [{"name": "API_TOKEN", "value": put("startTask.environment")}],
            "containerSettings": {
                "imageName": "r.azurecr.io/i",
                "containerRunOptions": f"--env DB_PASSWORD={put('startTask.containerRunOptions')}",
                "registry": {
                    "registryServer": "r.azurecr.io",
                    "username": "u",
                    "password": put("startTask.registry.password"),
                },
            },
        },
        "metadata": [{"name": "conn", "value": f"AccountKey={put('pool.metadata')}"}],
    }
    metadata = [
        {
            "name": "servicebus",
            "value": SHAPES["servicebus-connection-string"].format(secret=put("metadata.SharedAccessKey")),
        },
        {
            "name": "storage",
            "value": SHAPES["storage-connection-string"].format(secret=put("metadata.AccountKey")),
        },
        {"name": "sas", "value": SHAPES["sas-url"].format(secret=put("metadata.sas"))},
        {"name": "plain", "value": put("metadata.plain")},  # a bare secret: no shape to spot
    ]
    update = {
        "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "pool": pool}},
        "metadata": metadata,
    }
    return update, c


# --- The rig: the real handler over a scripted Batch -----------------------------------------


Reply = Callable[[httpx.Request], httpx.Response]


@dataclass
class ScriptedBatch:
    script: list[Reply]
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return self.script.pop(0)(request)


def build_handler(
    script: list[Reply], **overrides: Any
) -> tuple[JobUpdateHandler, ScriptedBatch, RecordingPublisher]:
    values: dict[str, Any] = {
        "BATCH_ALLOWED_ENDPOINTS": ENDPOINT,
        "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "JOB_UPDATES_MAX_DELIVERY_COUNT": MAX_DELIVERIES,
        "BATCH_RETRY_BUDGET_SECONDS": 5,
        "BATCH_MAX_ATTEMPTS": 3,
        **overrides,
    }
    settings = Settings(**values)
    batch = ScriptedBatch(list(script))
    auth = BatchAuth(
        settings.allowed_endpoints, tokens=TokenCache(FakeCredential(TOKEN), settings.token_scope)
    )
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(batch), auth=auth, follow_redirects=False, trust_env=False
    )
    http._cookies = NoCookies()
    client = BatchClient(
        http, RetryPolicy(max_attempts=settings.max_attempts, initial_backoff=0.001, max_backoff=0.002)
    )
    publisher = RecordingPublisher()
    return JobUpdateHandler(settings, client, publisher), batch, publisher


# --- Batch replies, some echoing the request back ---------------------------------------------


def _job(update: dict[str, Any]) -> dict[str, Any]:
    # What a GET shows: the job as stored (here: with the same pool and no metadata).
    return {"id": "job-1", "state": "disabled", "priority": 0, "poolInfo": update["poolInfo"]}


def ok(body: dict[str, Any] | None = None) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        headers = {
            "ETag": "0x8DD0000000000B2",
            "Last-Modified": "Thu, 01 Jan 2026 12:00:01 GMT",
            "request-id": "r",
        }
        return httpx.Response(200, headers=headers, content=json.dumps(body).encode() if body else b"")

    return reply


def batch_error(status: int, code: str, message: str, values: list[dict[str, str]]) -> httpx.Response:
    content = json.dumps({"code": code, "message": {"lang": "en-US", "value": message}, "values": values})
    headers = {"request-id": "r-err", "Content-Type": "application/json", "Retry-After": "0"}
    return httpx.Response(status, headers=headers, content=content.encode())


def echo(status: int, code: str) -> Reply:
    """Batch quoting the body back: raw in the message, the pool as JSON in PropertyValue,
    one secret in Reason, and the whole body JSON-escaped once more."""

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        pool = body.get("poolInfo", {}).get("autoPoolSpecification", {}).get("pool", {})
        password = pool.get("userAccounts", [{}])[0].get("password", "")
        values = [
            {"key": "PropertyName", "value": "poolInfo"},
            {"key": "PropertyValue", "value": json.dumps(body.get("poolInfo"))},
            {"key": "Reason", "value": f"The password {password} does not meet the policy"},
            {"key": "Detail", "value": json.dumps(json.dumps(body))},
        ]
        return batch_error(status, code, f"Invalid value {json.dumps(body)}\nRequestId:r", values)

    return reply


def echo_across_the_cut() -> Reply:
    """A huge echo with a secret placed across the 16 KiB mark where the error text is cut."""

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        pool = body["poolInfo"]["autoPoolSpecification"]["pool"]
        head = f"Invalid value {pool['displayName']} for "
        secret = pool["userAccounts"][0]["password"]
        text = head + " " * (16 * 1024 - 12 - len(head)) + secret + " (rest of the echo)"
        return batch_error(400, "InvalidPropertyValue", text, [{"key": "PropertyName", "value": "poolInfo"}])

    return reply


def stored_secrets_echo(secrets: dict[str, str]) -> Reply:
    """A 409 quoting the *stored* job, whose secrets our request never carried: only the
    credential shapes (redact_text) stand between them and the event."""

    def reply(request: httpx.Request) -> httpx.Response:
        quoted = "; ".join(SHAPES[shape].format(secret=secret) for shape, secret in secrets.items())
        return batch_error(409, "OperationInvalidForCurrentState", f"The job's stored pool: {quoted}", [])

    return reply


def transport_error_quoting_body() -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"connection lost after sending {request.content.decode()[:20000]}")

    return reply


# --- Scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    outcome: str  # the outcome it must end in ("transient": no event, redelivery)
    message: dict[str, Any]
    script: list[Reply]
    delivery: int = 1
    extra: dict[str, str] = field(default_factory=dict)  # canaries outside the update
    # Canaries only credential shapes protect (not in the request): {shape: canary}.
    shaped: dict[str, str] = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    update, _ = canary_update()
    huge = json.loads(json.dumps(update))
    huge["poolInfo"]["autoPoolSpecification"]["pool"]["displayName"] = "D" * 15_600
    shaped = {shape: canary(f"stored.{shape}") for shape in SHAPES}
    userinfo, query = canary("endpoint.userinfo"), canary("jobUrl.query")
    fail3 = [echo(503, "ServerBusy")] * 3
    return [
        Scenario("applied-replace", "applied", {"update": update}, [ok()]),
        Scenario("applied-merge", "applied", {"mode": "merge", "update": update}, [ok(_job(update)), ok()]),
        Scenario("dry-run", "dry-run", {"update": update, "options": {"dryRun": True}}, [ok(_job(update))]),
        Scenario(
            "dry-run-merge",
            "dry-run",
            {"mode": "merge", "update": update, "options": {"dryRun": True}},
            [ok(_job(update))],
        ),
        Scenario("failed-400-echo", "failed", {"update": update}, [echo(400, "InvalidPropertyValue")]),
        Scenario(
            "failed-409-echo-merge",
            "failed",
            {"mode": "merge", "update": update},
            [ok(_job(update)), echo(409, "OperationInvalidForCurrentState")],
        ),
        Scenario("failed-huge-echo-cut", "failed", {"update": huge}, [echo_across_the_cut()]),
        Scenario(
            "failed-stored-secrets",
            "failed",
            {"update": update},
            [stored_secrets_echo(shaped)],
            shaped=shaped,
        ),
        Scenario(
            "precondition-failed-echo",
            "precondition-failed",
            {"update": update, "conditions": {"ifMatch": "0x8DD0000000000A1"}},
            [echo(412, "ConditionNotMet")],
        ),
        Scenario("given-up-echo", "given-up", {"update": update}, fail3, delivery=MAX_DELIVERIES),
        Scenario(
            "given-up-no-reply",
            "given-up",
            {"update": update},
            [transport_error_quoting_body()] * 3,
            delivery=MAX_DELIVERIES,
        ),
        Scenario("transient-retry", "transient", {"update": update}, fail3, delivery=1),
        Scenario("rejected-invalid-field", "rejected", {"update": {**update, "priority": "high"}}, []),
        Scenario(
            "rejected-endpoint-not-listed", "rejected", {"endpoint": OTHER_ENDPOINT, "update": update}, []
        ),
        Scenario(
            "rejected-endpoint-userinfo",
            "rejected",
            {"endpoint": f"https://ops:{userinfo}@acct.westeurope.batch.azure.com", "update": update},
            [],
            extra={"endpoint.userinfo": userinfo},
        ),
        Scenario(
            "rejected-joburl-query",
            "rejected",
            {"jobUrl": f"{ENDPOINT}/jobs/job-1?sig={query}", "update": update},
            [],
            extra={"jobUrl.query": query},
        ),
    ]


# --- Running them ----------------------------------------------------------------------------


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log record of every logger, every level, formatted with its traceback."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    capture = Capture(logging.DEBUG)
    capture.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


@dataclass
class ScenarioResult:
    name: str
    outcome: str
    expected: str
    canaries: dict[str, str]
    leaks: list[str]  # "place in events" / "place in logs"
    sent_all: bool  # control: the canaries really were in what went to Batch


@dataclass
class CanaryReport:
    results: list[ScenarioResult]

    @property
    def tried(self) -> int:
        return sum(len(r.canaries) for r in self.results)

    @property
    def leaked(self) -> int:
        return sum(len({leak.split(" in ")[0] for leak in r.leaks}) for r in self.results)

    @property
    def outcomes(self) -> list[str]:
        return sorted({r.outcome for r in self.results})


async def run_scenario(scenario: Scenario) -> ScenarioResult:
    _, places = canary_update()
    canaries = {**places, **scenario.extra, **{f"stored.{k}": v for k, v in scenario.shaped.items()}}
    handler, batch, publisher = build_handler(list(scenario.script))
    body = json.dumps({"schemaVersion": "1.0", "jobId": "job-1", **scenario.message}).encode()
    inbound = Inbound(body, f"m-{scenario.name}", scenario.delivery, datetime.now(UTC))
    outcome = "transient"
    with captured_logs() as lines:
        try:
            outcome = (await handler.handle(inbound)).outcome.value
        except RetryLater:
            if publisher.events:
                outcome = json.loads(publisher.events[-1].body)["data"]["outcome"]
        finally:
            await handler.batch.aclose()
    events = "\n".join(e.body.decode() for e in publisher.events)
    logs = "\n".join(lines)
    leaks = [f"{place} in events" for place, c in canaries.items() if leaked_in(c, events)]
    leaks += [f"{place} in logs" for place, c in canaries.items() if leaked_in(c, logs)]
    sent = [b.decode() for b in batch.bodies if b]
    sent_all = all(c in body for body in sent for c in places.values())
    return ScenarioResult(scenario.name, outcome, scenario.outcome, canaries, leaks, sent_all)


async def run_canaries() -> CanaryReport:
    return CanaryReport([await run_scenario(s) for s in scenarios()])
