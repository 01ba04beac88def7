"""What every localrun command shares: where things are, the stand-ins' fixed local
values, the sample jobs, and how an outcome event is shown on one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "standins" / "servicebus" / "Config.json"
SAMPLES = ROOT / "samples"
QUEUE, TOPIC, SUBSCRIPTION = "job-updates", "job-outcomes", "all-outcomes"
SIGNING_KEY = b"local-run-token-signing-key-0001"
CLIENT_ID = "33333333-3333-3333-3333-333333333333"
POOL = {"vmSize": "standard_d2s_v3", "userAccounts": [{"name": "ops", "password": "example-not-a-secret"}]}

# Jobs the samples refer to, in the states that show each outcome.
JOBS: list[dict[str, Any]] = [
    {"id": "nightly-render", "priority": 0},
    {
        "id": "etl-daily",
        "constraints": {"maxWallClockTime": "PT8H", "maxTaskRetryCount": 3},
        "metadata": [{"name": "owner", "value": "etl"}, {"name": "tier", "value": "gold"}],
    },
    {"id": "busy-job", "priority": 0},
    {"id": "finished-job", "state": "completed"},
    {
        "id": "autopool-job",
        "state": "disabled",
        "poolInfo": {
            "autoPoolSpecification": {
                "autoPoolIdPrefix": "render",
                "poolLifetimeOption": "job",
                "keepAlive": False,
                "pool": POOL,
            }
        },
    },
]


def seed(emu: Any, jobs: list[dict[str, Any]] | None) -> None:
    """Your jobs exactly as given (state, eTag, lastModified kept), or the sample jobs."""
    from standins.batch import Fault

    if jobs is not None:
        for job in jobs:
            emu.add_job(job)
        return
    for job in JOBS:
        spec = dict(job)
        state = spec.pop("state", None)
        emu.add_job(spec)
        if state:
            emu.set_job_state(spec["id"], state)
    # busy-job is throttled three times, with Retry-After: 1.
    emu.inject(Fault.throttled(retry_after=1, method="PATCH", job_id="busy-job", times=3))


def line(event: dict[str, Any], *, with_id: bool = False) -> str:
    d = event["data"]
    detail = d.get("error", {}).get("code") or ", ".join(p["path"] for p in d.get("problems", [])) or ""
    extra = " (already applied)" if d.get("alreadyApplied") else ""
    changes = ",".join(d.get("changes", {}))
    # Your own messages: say which one (the samples' ids are their file names).
    who = f"{event.get('sourcemessageid')!s:<24} " if with_id else ""
    return (
        f"  {who}{d['outcome']:<20} job={d.get('jobId')!s:<15} http={d.get('httpStatus')!s:<4} "
        f"attempts={d['attempts']} {detail}{extra}{'  changes=' + changes if changes else ''}"
    )
