"""Real sockets: the handler's httpx client talks HTTPS to the Batch emulator, with
tokens from azure-identity's ManagedIdentityCredential against the local token endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from handlers.handler import JobUpdateHandler
from handlers.runtime import Runtime
from handlers.settings import Settings
from standins.batch import BatchEmulator
from standins.identity import TokenEndpoint
from tests.fakes import RecordingPublisher

SIGNING_KEY = b"integration-tests-hs256-key-0001"
ACCOUNT_KEY = "c2hhcmVkLWtleS1mb3ItdGhlLWxvY2FsLWVtdWxhdG9y"  # base64, test only


@pytest.fixture(scope="session")
def tokens() -> Iterator[TokenEndpoint]:
    with TokenEndpoint(signing_key=SIGNING_KEY, client_id="22222222-2222-2222-2222-222222222222") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def emulator() -> Iterator[BatchEmulator]:
    with BatchEmulator(
        token_signing_key=SIGNING_KEY, account_name="localbatch", account_key=ACCOUNT_KEY
    ) as emu:
        yield emu


@pytest.fixture
def emu(emulator: BatchEmulator, tokens: TokenEndpoint) -> BatchEmulator:
    emulator.reset()
    tokens.reset_counts()
    return emulator


@pytest.fixture
def settings_for(
    emu: BatchEmulator, tokens: TokenEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    for name, value in tokens.env.items():
        monkeypatch.setenv(name, value)

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "BATCH_ALLOWED_ENDPOINTS": emu.endpoint,
            "BATCH_ALLOW_EMULATOR": True,
            "BATCH_CA_BUNDLE": emu.ca_path,
            "ServiceBusConnection__fullyQualifiedNamespace": "unused.servicebus.windows.net",
            "AZURE_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "JOB_UPDATES_MAX_DELIVERY_COUNT": 3,
            "BATCH_RETRY_BUDGET_SECONDS": 10,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
async def make_handler(
    settings_for: Callable[..., Settings],
) -> AsyncIterator[Callable[..., tuple[JobUpdateHandler, RecordingPublisher]]]:
    runtimes: list[Runtime] = []

    def build(**overrides: Any) -> tuple[JobUpdateHandler, RecordingPublisher]:
        publisher = RecordingPublisher()
        runtime = Runtime.from_settings(settings_for(**overrides), publisher=publisher)
        runtimes.append(runtime)
        return runtime.handler, publisher

    yield build
    for runtime in runtimes:
        await runtime.aclose()
