"""Credentials never leave for a hostile endpoint or a redirect, over real sockets.

The function as deployed (Runtime.from_settings: aiohttp transport, BatchAuth, azure-identity's
ManagedIdentityCredential against the local token endpoint) next to recording canaries, with
DNS hijacked so every name but the allow-listed ones resolves to a canary (tests/leaks/wire.py).
The whole run takes a few seconds; it runs once and each test reads its part.
"""

from __future__ import annotations

from collections import Counter

from tests.leaks.__main__ import failures
from tests.leaks.canaries import CanaryReport
from tests.leaks.report import REFUSED, hostile_leaked, summarise
from tests.leaks.wire import PROD, PROD_HOST, REDIRECT_STATUSES, WireReport, run_wire

_report: WireReport | None = None


async def wire() -> WireReport:
    global _report
    if _report is None:
        _report = await run_wire()
    return _report


async def test_no_hostile_endpoint_form_puts_anything_on_the_wire() -> None:
    report = await wire()
    assert len({t.form for t in report.trials}) >= 64
    kinds = Counter(t.kind for t in report.trials)
    assert {"endpoint", "jobUrl", "allow-list", "default-endpoint"} <= set(kinds)
    accepted = [(t.kind, t.form, t.outcome) for t in report.trials if t.outcome not in REFUSED]
    assert accepted == []
    assert [(t.kind, t.form, t.wire) for t in report.trials if hostile_leaked(t)] == []


async def test_other_spellings_of_the_listed_origin_reach_it_and_nothing_else() -> None:
    # The positive control: the same runtime does send, with a token, to the listed origin.
    report = await wire()
    assert len(report.controls) >= 5
    for trial in report.controls:
        assert trial.outcome == "applied", trial.form
        assert trial.wire["emulator"] == 1 and trial.canary_hits == 0, trial


async def test_redirects_are_never_followed_whatever_the_status_or_location() -> None:
    report = await wire()
    assert len(report.redirects) >= 60
    assert {int(t.form.split()[0]) for t in report.redirects} == set(REDIRECT_STATUSES)
    assert {t.kind for t in report.redirects} == {"redirect-patch", "redirect-get", "redirect-sharedkey"}
    # A 3xx is Batch refusing: failed, one request, never a second one anywhere.
    assert Counter(t.outcome for t in report.redirects) == {"failed": len(report.redirects)}
    assert [t.form for t in report.redirects if t.followed or t.canary_hits] == []


async def test_no_token_and_no_identity_header_in_logs_or_events() -> None:
    report = await wire()
    assert report.tokens_in_logs_or_events == 0
    assert not report.identity_header_in_logs


async def test_only_allow_listed_names_were_ever_resolved() -> None:
    report = await wire()
    names = {host for host, _ in report.dns_lookups}
    assert names <= {"localhost", PROD_HOST}, names


async def test_production_like_configuration_pins_the_emulator_rule_from_both_sides() -> None:
    prod = (await wire()).production
    # A real-looking endpoint alone, no BATCH_ALLOW_EMULATOR: accepted, and it is where messages go.
    assert prod["allowEmulator"] is False
    assert prod["allowed"] == [PROD] and prod["defaultEndpoint"] == PROD
    assert prod["unnamed"] == prod["named"] == "applied"
    assert prod["prodRequests"] == prod["prodBearer"] == 2
    # The emulator (localhost) is refused: in messages, and in the list without the flag.
    assert set(prod["emulatorMessages"].values()) == {"rejected"}
    assert prod["wireForRefused"] == 0
    assert prod["emulatorInListWithoutFlag"] == "refused: BATCH_ALLOW_EMULATOR"
    assert prod["emulatorInListFlagFalse"] == "refused: BATCH_ALLOW_EMULATOR"
    # And the other side: the flag lets it in, and never shuts the real endpoint out.
    assert prod["emulatorInListFlagTrue"] == "accepted"
    assert prod["prodWithFlagTrue"] == "accepted"
    assert prod["isEmulator"] == {PROD: False, **{k: True for k in prod["isEmulator"] if k != PROD}}


async def test_with_the_guards_off_the_canaries_do_see_the_token() -> None:
    # Sensitivity: the zeros above mean something only if a leak would be seen.
    report = await wire()
    assert len(report.guards_off) >= 5
    assert [t.tokens_at_canary for t in report.guards_off] == [1] * len(report.guards_off)


async def test_the_summary_keeps_its_interface() -> None:
    summary = summarise(CanaryReport([]), await wire())
    for key in (
        "canariesTried",
        "canariesLeaked",
        "outcomesCovered",
        "hostileEndpointsTried",
        "hostileEndpointsLeaked",
        "wireAttempts",
        "redirectRuns",
        "redirectLeaks",
    ):
        assert key in summary
    assert summary["hostileEndpointsLeaked"] == summary["redirectLeaks"] == summary["tokensLeaked"] == 0
    assert summary["wireAttempts"] >= len((await wire()).redirects)
    assert failures(summary) == []  # what `python -m tests.leaks` exits 1 on
