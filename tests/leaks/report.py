"""The counts: one dict from the canary scenarios and the wire runs (README.md explains each key)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.leaks.canaries import CanaryReport, run_canaries
from tests.leaks.wire import Trial, WireReport, run_wire

REFUSED = ("rejected", "refused-by-settings")


def hostile_leaked(trial: Trial) -> bool:
    """A hostile form leaked if anything at all reached the wire because of it."""
    return trial.leaked or any(trial.wire.values())


def summarise(canaries: CanaryReport, wire: WireReport) -> dict[str, Any]:
    hostile, redirects = wire.trials, wire.redirects
    canary_tokens = sum(t.tokens_at_canary for t in hostile + redirects)
    return {
        "canariesTried": canaries.tried,
        "canariesLeaked": canaries.leaked,
        "outcomesCovered": canaries.outcomes,
        "hostileEndpointsTried": len(hostile),
        "hostileEndpointsLeaked": sum(1 for t in hostile if hostile_leaked(t)),
        "wireAttempts": wire.wire_attempts,
        "redirectRuns": len(redirects),
        "redirectLeaks": sum(1 for t in redirects if t.leaked),
        # Beyond the interface: what the numbers above are made of.
        "hostileForms": len({t.form for t in hostile}),
        "hostileAccepted": sum(1 for t in hostile if t.outcome not in REFUSED),
        "canaryHits": sum(t.canary_hits for t in hostile + redirects),
        "tokensLeaked": canary_tokens + wire.tokens_in_logs_or_events + int(wire.identity_header_in_logs),
        "redirectsFollowed": sum(1 for t in redirects if t.followed),
        "redirectOutcomes": dict(Counter(t.outcome for t in redirects)),
        "controlsApplied": sum(
            1 for t in wire.controls if t.outcome == "applied" and t.wire["emulator"] == 1
        ),
        "controls": len(wire.controls),
        "dnsLookups": len(wire.dns_lookups),
        "productionLike": wire.production,
        "guardsOffTokensAtCanary": sum(t.tokens_at_canary for t in wire.guards_off),
        "guardsOffRuns": len(wire.guards_off),
        "scenarios": {
            r.name: {"outcome": r.outcome, "canaries": len(r.canaries), "leaks": r.leaks}
            for r in canaries.results
        },
    }


async def run_async() -> dict[str, Any]:
    canaries = await run_canaries()
    wire = await run_wire()
    return summarise(canaries, wire)


def run() -> dict[str, Any]:
    return asyncio.run(run_async())
