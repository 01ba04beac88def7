"""The emulator's per-account capacity: a token bucket answering 429 with Retry-After.

The bucket is checked with an injected clock (no sleeping): it never admits more
than `burst + rate x elapsed`, and a refused request's Retry-After is whole seconds
after which a token is really there. Over HTTPS: past the capacity a request gets
Batch's 429 TooManyRequests error with Retry-After and writes nothing; the CLI
takes the flags.
"""

from __future__ import annotations

import json
import math
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from standins.batch import BatchEmulator
from standins.batch.capacity import TokenBucket
from standins.identity import BATCH_RESOURCE, issue_token

SIGNING_KEY = b"batch-capacity-test-signing-key!"
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


rates = st.floats(min_value=0.05, max_value=500, allow_nan=False)
gaps = st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=200)


@given(rate=rates, burst=st.floats(min_value=1, max_value=100), gaps=gaps)
@settings(max_examples=200, deadline=None)
def test_bucket_never_admits_more_than_its_capacity(rate: float, burst: float, gaps: list[float]) -> None:
    clock = Clock()
    bucket = TokenBucket(rate, burst, clock=clock)
    start = clock.now
    for gap in gaps:
        clock.now += gap
        bucket.take()
        assert bucket.admitted <= burst + rate * (clock.now - start) + 1e-6
    assert bucket.admitted + bucket.refused == len(gaps)


@given(rate=rates, burst=st.floats(min_value=1, max_value=20), gaps=gaps)
@settings(max_examples=200, deadline=None)
def test_retry_after_is_whole_seconds_and_a_token_is_there_then(
    rate: float, burst: float, gaps: list[float]
) -> None:
    clock = Clock()
    bucket = TokenBucket(rate, burst, clock=clock)
    for gap in gaps:
        clock.now += gap
        retry_after = bucket.take()
        if retry_after is None:
            continue
        assert retry_after >= 1 and retry_after == math.floor(retry_after)
        # The earliest honest time: waiting it out finds a token (nobody else took one).
        probe = TokenBucket(rate, burst, clock=clock)
        probe._tokens, probe._at = bucket._tokens, bucket._at
        clock.now += retry_after
        assert probe.take() is None
        clock.now -= retry_after


def test_a_full_bucket_admits_its_burst_then_refuses_until_it_refills() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [None, None, None, 1.0]
    clock.now += 0.1  # one token back at 10 per second
    assert bucket.take() is None
    assert bucket.take() == 1.0


def test_a_slow_bucket_says_how_long_until_the_next_token() -> None:
    clock = Clock()
    bucket = TokenBucket(0.1, 1, clock=clock)  # one request every 10 s
    assert bucket.take() is None
    clock.now += 2.5
    assert bucket.take() == 8.0  # 7.5 s to go, rounded up


def test_default_burst_is_one_second_of_capacity() -> None:
    assert TokenBucket(40).burst == 40
    assert TokenBucket(0.5).burst == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (1, 0.5)])
def test_nonsense_capacities_are_refused(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match=r"capacity|burst"):
        TokenBucket(rate, burst)


# --- over HTTPS ----------------------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[BatchEmulator]:
    # One request per 100 s after a burst of 2: the third is refused however slow the machine.
    with BatchEmulator(token_signing_key=SIGNING_KEY, capacity_rps=0.01, capacity_burst=2) as emulator:
        emulator.add_job({"id": "job-1", "priority": 1})
        yield emulator


def _patch(emu: BatchEmulator, priority: int) -> httpx.Response:
    token, _ = issue_token(
        SIGNING_KEY, resource=BATCH_RESOURCE, client_id="c", object_id="o", lifetime_seconds=600
    )
    with httpx.Client(verify=emu.ssl_context()) as http:
        return http.patch(
            f"{emu.endpoint}/jobs/job-1",
            params={"api-version": "2025-06-01"},
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            content=json.dumps({"priority": priority}).encode(),
        )


def test_past_capacity_batch_answers_429_with_retry_after_and_writes_nothing(emu: BatchEmulator) -> None:
    assert _patch(emu, 2).status_code == 200
    assert _patch(emu, 3).status_code == 200
    refused = _patch(emu, 4)
    assert refused.status_code == 429
    assert refused.json()["code"] == "TooManyRequests"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 100
    assert refused.headers["request-id"]
    assert emu.job("job-1")["priority"] == 3  # type: ignore[index]
    assert len(emu.patch_log("job-1")) == 2
    assert [r.status for r in emu.requests] == [200, 200, 429]
    assert emu.capacity is not None and (emu.capacity.admitted, emu.capacity.refused) == (2, 1)


def test_without_a_capacity_nothing_is_throttled() -> None:
    with BatchEmulator(token_signing_key=SIGNING_KEY) as emu:
        emu.add_job({"id": "job-1"})
        assert emu.capacity is None
        assert {_patch(emu, p).status_code for p in range(5)} == {200}


def test_cli_takes_capacity_and_latency_and_records_on_shutdown(tmp_path: Path) -> None:
    seed = tmp_path / "jobs.json"
    seed.write_text(json.dumps([{"id": "job-1"}]))
    record = tmp_path / "record.json"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "standins.batch", "--seed", str(seed), "--capacity-rps", "0.01"),
            *("--capacity-burst", "1", "--latency-ms", "5", "--record", str(record)),
            *("--token-signing-key", SIGNING_KEY.decode()),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        token, _ = issue_token(
            SIGNING_KEY, resource=BATCH_RESOURCE, client_id="c", object_id="o", lifetime_seconds=600
        )
        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_path"])) as http:
            statuses = [
                http.get(
                    f"{info['endpoint']}/jobs/job-1",
                    params={"api-version": "2025-06-01"},
                    headers={"Authorization": f"Bearer {token}"},
                ).status_code
                for _ in range(2)
            ]
        assert statuses == [200, 429]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    recorded = json.loads(record.read_text())
    assert [r["status"] for r in recorded["requests"]] == [200, 429]
    assert recorded["jobs"]["job-1"]["id"] == "job-1"
