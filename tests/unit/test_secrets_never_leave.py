"""Canary secrets in every place a job update can carry one never reach an event or a log.

The canaries ride through the real handler loop (httpx over MockTransport) into every
outcome that can show message or Batch text: applied (replace), merge, dry run, failed
with a Batch 400 that echoes the body back, given-up, and rejected.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import httpx
import pytest

from handlers.errors import RetryLater
from tests.unit.test_handler_loop import MAX_DELIVERIES, Factory, error, inbound, ok
from tests.unit.test_handler_loop import rig as rig  # the fixture

CANARIES = {
    "password": "CANARY-pw-1f3a",
    "ssh": "CANARY-ssh-2b4c",
    "registry": "CANARY-reg-3c5d",
    "cifs": "CANARY-cifs-4d6e",
    "account_key": "CANARY-acctkey-5e7f",
    "sas": "CANARY-sig-6f80",
    "env": "CANARY-env-7091",
    "protected": "CANARY-prot-81a2",
    "basic": "CANARY-basic-92b3",
    "cmdline": "CANARY-cmd-a3c4",
    "pwd": "CANARY-pwd-b4d5",
    "passphrase": "CANARY-pass-c5e6",
    "pem": "CANARY-pem-d6f7",
    "client_secret": "CANARY-cs-e708",
    "storage_key": "CANARY-sk-f819",
    "meta_sas": "CANARY-metasas-0a2b",
    "meta_key": "CANARY-metakey-1b3c",
}
C = CANARIES
POOL = {
    "vmSize": "standard_d2s_v3",
    "userAccounts": [
        {"name": "ops", "password": C["password"], "linuxUserConfiguration": {"sshPrivateKey": C["ssh"]}}
    ],
    "virtualMachineConfiguration": {
        "containerConfiguration": {"containerRegistries": [{"username": "u", "password": C["registry"]}]},
        "extensions": [{"name": "e", "protectedSettings": {"anything": C["protected"]}}],
    },
    "mountConfiguration": [
        {"cifsMountConfiguration": {"password": C["cifs"]}},
        {"azureBlobFileSystemConfiguration": {"accountKey": C["account_key"]}},
    ],
    "startTask": {
        "commandLine": f"curl -H 'Authorization: Basic {C['basic']}' && mysql -p{C['cmdline']}",
        "resourceFiles": [{"httpUrl": f"https://s.blob.core.windows.net/c/f?sv=2024&sig={C['sas']}"}],
        "environmentSettings": [{"name": "TOKEN", "value": C["env"]}],
    },
    "x": {"pwd": C["pwd"], "passphrase": C["passphrase"], "privateKeyPem": C["pem"]},
    "y": {"clientSecret": C["client_secret"], "storageAccountKey": C["storage_key"]},
}
METADATA = [
    {"name": "sb", "value": f"Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey={C['meta_sas']}"},
    {"name": "st", "value": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={C['meta_key']}"},
]
UPDATE = {
    "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "pool": POOL}},
    "metadata": METADATA,
}
JOB_READ = {
    "id": "job-1",
    "state": "disabled",
    "priority": 0,
    "poolInfo": UPDATE["poolInfo"],
    "metadata": METADATA,
}


def echo_400(request: httpx.Request) -> httpx.Response:
    """Batch's InvalidPropertyValue, echoing the property value back."""
    body = json.loads(request.content)
    values = [
        {"key": "PropertyName", "value": "poolInfo"},
        {"key": "PropertyValue", "value": json.dumps(body["poolInfo"])},
        {"key": "Reason", "value": "bad"},
    ]
    message = {"lang": "en-US", "value": f"Invalid value {json.dumps(body)}"}
    content = json.dumps({"code": "InvalidPropertyValue", "message": message, "values": values}).encode()
    return httpx.Response(400, headers={"request-id": "r"}, content=content)


def leaked(text: str) -> list[str]:
    return [name for name, canary in CANARIES.items() if canary in text]


@pytest.mark.parametrize(
    ("case", "message", "replies", "delivery"),
    [
        ("applied-replace", {"update": UPDATE}, [ok()], 1),
        ("applied-merge", {"mode": "merge", "update": UPDATE}, [ok({**JOB_READ, "metadata": []}), ok()], 1),
        ("dry-run", {"update": UPDATE, "options": {"dryRun": True}}, [ok({**JOB_READ, "metadata": []})], 1),
        ("given-up", {"update": UPDATE}, [error(503, "ServerBusy", retry_after="0")] * 6, MAX_DELIVERIES),
        ("rejected", {"update": {**UPDATE, "priority": "high"}}, [], 1),
    ],
)
async def test_canaries_stay_out_of_events_and_logs(
    rig: Factory,
    caplog: pytest.LogCaptureFixture,
    case: str,
    message: dict[str, Any],
    replies: list[httpx.Response],
    delivery: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = rig(*replies, BATCH_MAX_ATTEMPTS="6", BATCH_RETRY_BUDGET_SECONDS="5")
    with contextlib.suppress(RetryLater):  # given-up raises after publishing; the event counts
        await r.handler.handle(inbound(message, delivery=delivery))
    assert r.publisher.events, case
    if case == "applied-replace":  # the canaries are real: the update goes to Batch whole
        assert leaked(r.batch.seen[0].body.decode()) == list(CANARIES)
    body = b"".join(e.body for e in r.publisher.events).decode()
    assert leaked(body) == [], case
    assert leaked(caplog.text) == [], case


async def test_a_batch_400_echoing_the_body_leaks_nothing(
    rig: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = rig(echo_400)
    await r.handler.handle(inbound({"update": UPDATE}))
    data = json.loads(r.publisher.events[0].body)["data"]
    assert data["outcome"] == "failed"
    assert data["error"]["values"]["PropertyName"] == "poolInfo"  # names still help the producer
    body = r.publisher.events[0].body.decode()
    assert leaked(body) == []
    assert leaked(caplog.text) == []
