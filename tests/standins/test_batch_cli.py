"""The Batch emulator's CLI: fault flags parse into the faults they name, refuse what
they cannot mean, and fire, at start-up and through the loopback admin endpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from standins.batch import BatchEmulator
from standins.batch.__main__ import parse_args
from standins.batch.admin import ALWAYS, FaultAdmin, describe_fault, parse_fault_spec

ROOT = Path(__file__).resolve().parents[2]
JOB = "/jobs/j1?api-version=2025-06-01"


# --- specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("429", {"status": 429, "retry_after": 1.0, "times": 1, "method": None, "job_id": None}),
        ("throttle:retry-after=2.5,times=3", {"status": 429, "retry_after": 2.5, "times": 3}),
        ("429:retry-after=none", {"status": 429, "retry_after": None}),
        (
            "503:job=nightly-render,method=patch",
            {"status": 503, "job_id": "nightly-render", "method": "PATCH"},
        ),
        ("busy:times=always", {"status": 503, "times": ALWAYS}),
        ("500", {"status": 500, "retry_after": None, "code": None}),
        ("502:code=BadGateway,times=2", {"status": 502, "code": "BadGateway", "times": 2}),
        ("error:status=504", {"status": 504}),
        ("408:retry-after=3", {"status": 408, "retry_after": 3.0}),
        ("delay:seconds=5", {"delay_seconds": 5.0, "status": None, "reset": False}),
        ("reset", {"reset": True, "status": None}),
        ("reset:delay=0.5,method=GET", {"reset": True, "delay_seconds": 0.5, "method": "GET"}),
        (" RESET : times = 2 ", {"reset": True, "times": 2}),
    ],
)
def test_a_spec_names_the_fault(spec: str, expected: dict[str, Any]) -> None:
    fault = parse_fault_spec(spec)
    assert {name: getattr(fault, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "starts with its kind"),
        ("teapot", "starts with its kind"),
        ("429:jobs=x", "is not one of"),
        ("429:job", "is not one of"),
        ("429:times=0", "at least 1"),
        ("429:times=two", "whole number"),
        ("429:retry-after=-1", "0 to 3600"),
        ("429:retry-after=nan", "0 to 3600"),
        ("429:status=503", "429 is 429, not status=503"),
        ("error", "error needs status=NNN"),
        ("200", "4xx/5xx"),
        ("delay", "delay needs seconds=S"),
        ("reset:status=500", "does not apply to reset"),
        ("reset:retry-after=1", "does not apply to reset"),
        ("429:method=DELETE", "GET or PATCH"),
        ("429:times=1,times=2", "times given twice"),
    ],
)
def test_a_bad_spec_says_why(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_fault_spec(spec)


def test_cli_fault_flags_parse_in_order_and_a_bad_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args(["--fault", "429:times=3", "--fault", "reset:job=j2", "--admin-port", "0"])
    assert [f.describe() for f in args.fault] == ["429 TooManyRequests", "connection-reset"]
    assert args.fault[0].times == 3 and args.fault[1].job_id == "j2"
    assert args.admin_port == 0
    assert parse_args([]).admin_port is None  # no admin endpoint unless asked
    with pytest.raises(SystemExit) as exited:
        parse_args(["--fault", "429:nope=1"])
    assert exited.value.code == 2
    assert "'429:nope=1'" in capsys.readouterr().err


# --- the CLI, for real ---------------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "standins.batch",
            "--fault",
            "429:method=GET,job=j1,retry-after=2",
            "--fault",
            "reset:job=j1",
            "--admin-port",
            "0",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield {"proc": proc, **info}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0


def test_start_up_faults_fire_in_order_then_requests_go_through(cli: dict[str, Any]) -> None:
    with httpx.Client(
        base_url=cli["endpoint"], verify=ssl.create_default_context(cafile=cli["ca_path"])
    ) as client:
        throttled = client.get(JOB)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "2")
        assert throttled.json()["code"] == "TooManyRequests"
        with pytest.raises(httpx.TransportError):
            client.get(JOB)  # the reset: no response at all
        # Both consumed: the next request reaches authentication (no token: 403).
        assert client.get(JOB).status_code == 403
    with httpx.Client(base_url=cli["admin"]) as admin:
        assert admin.get("/faults").json() == {"pending": []}
        log = admin.get("/requests", params={"last": 3}).json()["requests"]
    assert [(r["status"], r["fault"]) for r in log] == [
        (429, "429 TooManyRequests"),
        (None, "connection-reset"),
        (403, None),
    ]


def test_faults_added_while_running_fire_and_can_be_cleared(cli: dict[str, Any]) -> None:
    with httpx.Client(base_url=cli["admin"]) as admin:
        admin.delete("/faults")
        added = admin.post("/faults", content=b"500:code=Boom,times=2\n\n503:job=other")
        assert added.status_code == 201
        assert [f["does"] for f in added.json()["added"]] == ["500 Boom", "503 ServerBusy"]
        with httpx.Client(
            base_url=cli["endpoint"], verify=ssl.create_default_context(cafile=cli["ca_path"])
        ) as client:
            assert [client.get(JOB).status_code for _ in range(3)] == [500, 500, 403]
        pending = admin.get("/faults").json()["pending"]
        assert [(f["does"], f["job"], f["fired"]) for f in pending] == [("503 ServerBusy", "other", 0)]
        refused = admin.post("/faults", content=b"429:times=0")
        assert refused.status_code == 400 and "at least 1" in refused.json()["error"]
        assert admin.post("/faults", content=b"\n").status_code == 400
        assert admin.delete("/faults").json() == {"cleared": 1}
        assert admin.get("/faults").json() == {"pending": []}
        assert admin.get("/nothing").status_code == 404


def test_the_admin_endpoint_listens_on_loopback_only() -> None:
    with BatchEmulator() as emu, FaultAdmin(emu) as admin:
        assert admin.url.startswith("http://127.0.0.1:")
        emu.inject(parse_fault_spec("delay:seconds=0.01,times=always"))
        assert describe_fault(emu.pending_faults[0])["times"] == "always"
