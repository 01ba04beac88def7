from __future__ import annotations

import pytest

from handlers.endpoints import EndpointError, normalise_endpoint, parse_allowed_endpoint, resolve_endpoint

ALLOWED = frozenset({"https://acct.westeurope.batch.azure.com", "https://localhost:8443"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://ACCT.westeurope.batch.azure.com", "https://acct.westeurope.batch.azure.com"),
        ("https://acct.westeurope.batch.azure.com/", "https://acct.westeurope.batch.azure.com"),
        ("https://acct.westeurope.batch.azure.com:443", "https://acct.westeurope.batch.azure.com"),
        ("https://localhost:8443", "https://localhost:8443"),
    ],
)
def test_allowed_endpoints_resolve(raw: str, expected: str) -> None:
    assert resolve_endpoint(raw, ALLOWED, None) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://acct.westeurope.batch.azure.com",
        "https://user:pw@acct.westeurope.batch.azure.com",
        "https://acct.westeurope.batch.azure.com@evil.example",
        "https://acct.westeurope.batch.azure.com:8443",
        "https://acct.westeurope.batch.azure.com.evil.example",
        "https://acct.westeurope.batch.azure.com./",
        "https://acct.westeurope.batch.azure.com/jobs",
        "https://acct.westeurope.batch.azure.com?x=1",
        "https://аcct.westeurope.batch.azure.com",  # Cyrillic a
        "https://127.0.0.1:8443",
        "https://[::1]:8443",
        "https://other.westeurope.batch.azure.com",
        "https://localhost:9999",
        "ftp://acct.westeurope.batch.azure.com",
    ],
)
def test_everything_else_is_refused(raw: str) -> None:
    with pytest.raises(EndpointError):
        resolve_endpoint(raw, ALLOWED, None)


def test_default_endpoint_and_its_absence() -> None:
    assert resolve_endpoint(None, ALLOWED, "https://localhost:8443") == "https://localhost:8443"
    with pytest.raises(EndpointError, match="no endpoint"):
        resolve_endpoint(None, ALLOWED, None)


def test_allow_list_entries_must_be_batch_endpoints() -> None:
    assert parse_allowed_endpoint("https://a.eastus.batch.azure.com") == "https://a.eastus.batch.azure.com"
    assert parse_allowed_endpoint("https://a.chinaeast.batch.chinacloudapi.cn")
    for bad in ("https://example.com", "https://10.0.0.1", "https://batch.azure.com.evil.io"):
        with pytest.raises(EndpointError):
            parse_allowed_endpoint(bad)


def test_normalise_rejects_non_origin_forms() -> None:
    with pytest.raises(EndpointError, match="origin"):
        normalise_endpoint("https://a.b.batch.azure.com/x#y")


def test_an_explicit_default_port_is_the_same_origin() -> None:
    assert (
        normalise_endpoint("https://a.westeurope.batch.azure.com:0443")
        == "https://a.westeurope.batch.azure.com"
    )
