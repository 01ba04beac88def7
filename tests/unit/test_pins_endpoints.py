"""Pins for the endpoint allow-list: each defence on its own, by its own message, and
each limit from both sides (found by mutation testing: tests/mutation).

Several defences overlap (the origin regex also refuses `http://`; the allow-list also
refuses an IP literal), so "some EndpointError" would still pass with one of them
gone. Each test here goes through `normalise_endpoint` and names the defence that
must fire.
"""

from __future__ import annotations

import pytest

from handlers.endpoints import (
    BATCH_DNS_SUFFIXES,
    EndpointError,
    default_endpoint,
    is_emulator,
    normalise_endpoint,
    parse_allow_list,
    parse_allowed_endpoint,
    resolve_endpoint,
)

REAL = "https://acct.westeurope.batch.azure.com"


@pytest.mark.parametrize(
    ("raw", "defence"),
    [
        ("http://acct.westeurope.batch.azure.com", "must use https://"),
        ("HTTP://acct.westeurope.batch.azure.com", "must use https://"),
        ("https://user@acct.westeurope.batch.azure.com", "userinfo"),
        ("https://acct.westeurope.batch.azure.com@evil.example", "userinfo"),
        ("https://аcct.westeurope.batch.azure.com", "ASCII"),
        ("https://acct.westeurope.batch.azure.com/jobs", "origin only"),
        ("https://acct.westeurope.batch.azure.com.", "empty labels or a trailing dot"),
        ("https://acct..batch.azure.com", "empty labels or a trailing dot"),
        ("https://127.0.0.1", "IP literal"),
        ("https://10.0.0.1:8443", "IP literal"),
        ("https://-acct.westeurope.batch.azure.com", "invalid DNS label"),
        ("https://acct-.westeurope.batch.azure.com", "invalid DNS label"),
        ("https://" + "a" * 64 + ".westeurope.batch.azure.com", "invalid DNS label"),
        ("https://acct.westeurope.batch.azure.com:0", "port out of range"),
        ("https://acct.westeurope.batch.azure.com:65536", "port out of range"),
        ("https://acct.westeurope.batch.azure.com:99999", "port out of range"),
    ],
)
def test_each_defence_refuses_by_itself(raw: str, defence: str) -> None:
    with pytest.raises(EndpointError, match=defence):
        normalise_endpoint(raw)


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        (
            "https://" + "a" * 63 + ".westeurope.batch.azure.com",
            "https://" + "a" * 63 + ".westeurope.batch.azure.com",
        ),
        ("https://a.westeurope.batch.azure.com", "https://a.westeurope.batch.azure.com"),
        ("https://a-1.westeurope.batch.azure.com:1", "https://a-1.westeurope.batch.azure.com:1"),
        ("https://acct.westeurope.batch.azure.com:65535", "https://acct.westeurope.batch.azure.com:65535"),
        ("https://acct.westeurope.batch.azure.com:442", "https://acct.westeurope.batch.azure.com:442"),
        ("https://acct.westeurope.batch.azure.com:444", "https://acct.westeurope.batch.azure.com:444"),
        ("https://acct.westeurope.batch.azure.com:443", "https://acct.westeurope.batch.azure.com"),
        ("  https://Acct.WestEurope.batch.azure.com/  ", "https://acct.westeurope.batch.azure.com"),
    ],
)
def test_limits_themselves_are_accepted(raw: str, origin: str) -> None:
    assert normalise_endpoint(raw) == origin


@pytest.mark.parametrize("suffix", BATCH_DNS_SUFFIXES)
def test_every_sovereign_suffix_is_a_batch_endpoint(suffix: str) -> None:
    assert parse_allowed_endpoint(f"https://acct.region{suffix}") == f"https://acct.region{suffix}"


def test_the_suffixes_are_exactly_the_four_clouds() -> None:
    for host in (
        "acct.eastus.batch.azure.com",
        "acct.chinanorth.batch.chinacloudapi.cn",
        "acct.usgovvirginia.batch.usgovcloudapi.net",
        "acct.germanycentral.batch.microsoftazure.de",
    ):
        assert parse_allowed_endpoint(f"https://{host}") == f"https://{host}"
    with pytest.raises(EndpointError, match="not a Batch account endpoint"):
        parse_allowed_endpoint("https://acct.eastus.batch.azure.net")


def test_a_production_allow_list_needs_no_emulator_flag() -> None:
    # Real endpoints only, BATCH_ALLOW_EMULATOR unset: accepted as they are.
    assert parse_allow_list(f"{REAL}, https://b.eastus.batch.azure.com", allow_emulator=False) == frozenset(
        {REAL, "https://b.eastus.batch.azure.com"}
    )
    assert parse_allow_list([REAL], allow_emulator=False) == frozenset({REAL})


def test_the_emulator_needs_the_flag_and_the_flag_admits_it() -> None:
    with pytest.raises(EndpointError, match="BATCH_ALLOW_EMULATOR"):
        parse_allow_list(f"{REAL};https://localhost:8443", allow_emulator=False)
    assert parse_allow_list(f"{REAL};https://localhost:8443", allow_emulator=True) == frozenset(
        {REAL, "https://localhost:8443"}
    )


def test_is_emulator_reads_the_host_only() -> None:
    assert is_emulator("https://localhost:8443")
    assert is_emulator("https://localhost")
    assert not is_emulator(REAL)
    assert not is_emulator("https://localhost.westeurope.batch.azure.com")


def test_an_empty_allow_list_is_refused() -> None:
    with pytest.raises(EndpointError, match="at least one"):
        parse_allow_list(" , ;", allow_emulator=True)


def test_default_endpoint_rules() -> None:
    two = frozenset({REAL, "https://b.eastus.batch.azure.com"})
    assert default_endpoint(frozenset({REAL}), None) == REAL
    assert default_endpoint(frozenset({REAL}), "") == REAL
    assert default_endpoint(two, None) is None
    assert default_endpoint(two, "https://b.eastus.batch.azure.com") == "https://b.eastus.batch.azure.com"


def test_resolve_refuses_what_is_not_listed_by_its_own_message() -> None:
    with pytest.raises(EndpointError, match="not in the allow-list"):
        resolve_endpoint("https://other.westeurope.batch.azure.com", frozenset({REAL}), REAL)
    assert resolve_endpoint("https://ACCT.westeurope.batch.azure.com:443/", frozenset({REAL}), None) == REAL
