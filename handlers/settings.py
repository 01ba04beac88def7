"""App settings: the one place that reads the function's configuration.

Every field's alias is the exact app-setting name that `infra/` sets (a test
parses the Bicep and compares). Names follow the Functions conventions where
one exists (`ServiceBusConnection__fullyQualifiedNamespace`, `AZURE_CLIENT_ID`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, TypeAdapter, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from handlers.endpoints import default_endpoint, parse_allow_list, parse_allowed_endpoint
from handlers.wire import ApiVersion

BATCH_SCOPE = "https://batch.core.windows.net//.default"
# The GA Python SDK's default, where every region serves it; 2026-10-01 sends the
# same Update Job body (docs/message-contract.md, "API versions").
DEFAULT_API_VERSION: ApiVersion = "2025-06-01"


class BatchAuthMode(StrEnum):
    entra = "entra"
    shared_key = "sharedkey"


class SettlementMode(StrEnum):
    """Who settles the trigger's messages (docs/host.md, "Settlement")."""

    host = "host"  # GA trigger: the host completes on return, abandons on raise
    actions = "actions"  # the pre-release settlement extension: the function settles itself


class Settings(BaseSettings):
    """Everything the function reads from its environment."""

    model_config = SettingsConfigDict(
        # hide_input_in_errors: a bad setting must not print the others (keys) into logs.
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        populate_by_name=False,
        hide_input_in_errors=True,
    )

    # --- Service Bus: the trigger queue and the outcome topic -------------------
    job_updates_queue: str = Field("job-updates", alias="JOB_UPDATES_QUEUE")
    sessions_enabled: bool = Field(False, alias="JOB_UPDATES_SESSIONS_ENABLED")
    # Must equal the queue's maxDeliveryCount: on that delivery a transient
    # failure publishes `given-up` before the message goes to the dead-letter queue.
    max_delivery_count: int = Field(10, ge=1, le=2000, alias="JOB_UPDATES_MAX_DELIVERY_COUNT")
    # Retries off the lock (docs/host.md): a transient failure schedules a copy of the
    # message at the retry time and completes the original. Off with sessions (a copy
    # would let a later update of the same job overtake it): those wait in place.
    scheduled_retries: bool = Field(True, alias="JOB_UPDATES_SCHEDULED_RETRIES")
    # A wait longer than this (Retry-After or backoff) goes off the lock.
    offlock_wait_seconds: float = Field(5.0, ge=0, le=240, alias="JOB_UPDATES_OFFLOCK_WAIT_SECONDS")
    # Across the original and all its copies, from the original's enqueue time.
    attempt_budget_seconds: float = Field(900.0, gt=0, le=86_400, alias="JOB_UPDATES_ATTEMPT_BUDGET_SECONDS")
    max_scheduled_copies: int = Field(50, ge=1, le=1000, alias="JOB_UPDATES_MAX_SCHEDULED_COPIES")
    # `actions` needs requirements-settlement.txt deployed and host.json's
    # autoCompleteMessages false (docs/host.md); the default deploy needs neither.
    settlement: SettlementMode = Field(SettlementMode.host, alias="JOB_UPDATES_SETTLEMENT")
    outcome_topic: str = Field("job-outcomes", alias="OUTCOME_TOPIC")
    outcome_topic_requires_session: bool = Field(False, alias="OUTCOME_TOPIC_REQUIRES_SESSION")
    # On the last delivery a failed publish is retried in place this long, so that
    # the message is not dead-lettered without its event (docs/reliability.md).
    # With the Batch budget (<= 240 s) it stays inside the 5-minute lock renewal.
    publish_hold_seconds: float = Field(45.0, ge=0, le=55, alias="OUTCOME_PUBLISH_HOLD_SECONDS")
    # Topic senders (AMQP links) that may have a transfer in flight at once: more cuts
    # the time an event waits behind another transfer, at some CPU per event
    # (docs/performance.md, "The publish's latency").
    publish_links: int = Field(1, ge=1, le=4, alias="OUTCOME_PUBLISH_LINKS")
    # In Azure: identity-based (namespace + managed identity). Locally: the
    # connection string the trigger uses too (`ServiceBusConnection`).
    servicebus_namespace: str | None = Field(None, alias="ServiceBusConnection__fullyQualifiedNamespace")
    servicebus_connection_string: SecretStr | None = Field(None, alias="ServiceBusConnection")

    # --- Identity ----------------------------------------------------------------
    # Client id of the user-assigned managed identity (Batch tokens and Service Bus).
    client_id: str | None = Field(None, alias="AZURE_CLIENT_ID")

    # --- Batch -------------------------------------------------------------------
    # `https://localhost:port` entries are for the local emulator only; refused unless
    # this is set. Declared before the allow-list, whose validator reads it.
    allow_emulator: bool = Field(False, alias="BATCH_ALLOW_EMULATOR")
    allowed_endpoints: Annotated[frozenset[str], NoDecode] = Field(alias="BATCH_ALLOWED_ENDPOINTS")
    default_endpoint: str | None = Field(None, alias="BATCH_DEFAULT_ENDPOINT")
    api_version: ApiVersion = Field(DEFAULT_API_VERSION, alias="BATCH_API_VERSION")
    auth_mode: BatchAuthMode = Field(BatchAuthMode.entra, alias="BATCH_AUTH_MODE")
    account_name: str | None = Field(None, alias="BATCH_ACCOUNT_NAME")
    account_key: SecretStr | None = Field(None, alias="BATCH_ACCOUNT_KEY")
    token_scope: str = Field(BATCH_SCOPE, alias="BATCH_TOKEN_SCOPE")
    # Extra CA bundle for TLS to Batch: only the local emulator needs one.
    ca_bundle: str | None = Field(None, alias="BATCH_CA_BUNDLE")
    # Per-message time budget for Batch calls including retries and waits. At
    # most 240 s: with the publish (< 60 s) it stays inside host.json's 5-minute
    # lock renewal (docs/host.md).
    retry_budget_seconds: float = Field(60.0, gt=0, le=240, alias="BATCH_RETRY_BUDGET_SECONDS")
    max_attempts: int = Field(6, ge=1, le=20, alias="BATCH_MAX_ATTEMPTS")
    # Merge mode: how many read-modify-write rounds before a 412 is final.
    merge_max_rounds: int = Field(5, ge=1, le=20, alias="BATCH_MERGE_MAX_ROUNDS")
    # One request, connect to last byte; Batch's own server timeout is at most 30 s.
    http_timeout_seconds: float = Field(40.0, gt=0, le=240, alias="BATCH_HTTP_TIMEOUT_SECONDS")
    max_connections: int = Field(100, ge=1, le=1000, alias="BATCH_MAX_CONNECTIONS")
    # Per-account adaptive concurrency and Retry-After pauses in each instance
    # (docs/flow-control.md). false: each message retries on its own, as before.
    flow_control: bool = Field(True, alias="BATCH_FLOW_CONTROL")

    # --- Telemetry (docs/telemetry.md) ---------------------------------------------
    # The Python worker's own switch: true, and it configures the Azure Monitor
    # OpenTelemetry distro (with host.json `telemetryMode: OpenTelemetry`); the handler
    # then makes its spans and metrics (handlers/telemetry.py). false: none are made.
    telemetry_enabled: bool = Field(False, alias="PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")

    @field_validator("allowed_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, (str, list, tuple, set, frozenset)):
            return parse_allow_list(value, allow_emulator=bool(info.data.get("allow_emulator", False)))
        return value

    @field_validator("default_endpoint", mode="before")
    @classmethod
    def _normalise_default(cls, value: object) -> object:
        return parse_allowed_endpoint(value) if isinstance(value, str) and value else None

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.default_endpoint and self.default_endpoint not in self.allowed_endpoints:
            raise ValueError("BATCH_DEFAULT_ENDPOINT must be one of BATCH_ALLOWED_ENDPOINTS")
        if self.auth_mode is BatchAuthMode.shared_key and not (self.account_name and self.account_key):
            raise ValueError("BATCH_AUTH_MODE=sharedkey needs BATCH_ACCOUNT_NAME and BATCH_ACCOUNT_KEY")
        if not (self.servicebus_namespace or self.servicebus_connection_string):
            raise ValueError(
                "set ServiceBusConnection__fullyQualifiedNamespace (Azure) or "
                "ServiceBusConnection (a connection string, local runs)"
            )
        return self

    @cached_property
    def endpoint_when_unnamed(self) -> str | None:
        """The endpoint a message without `endpoint` goes to."""
        return default_endpoint(self.allowed_endpoints, self.default_endpoint)


# Settings a deployment in Azure must set (the rest have defaults or are for
# local runs). infra/ is checked against this and against HOST_SETTINGS.
REQUIRED_IN_AZURE = (
    "BATCH_ALLOWED_ENDPOINTS",
    "ServiceBusConnection__fullyQualifiedNamespace",
    "AZURE_CLIENT_ID",
    "JOB_UPDATES_QUEUE",
    "OUTCOME_TOPIC",
    "JOB_UPDATES_MAX_DELIVERY_COUNT",
)

# App settings read by the Functions host and its extensions, not by this code.
HOST_SETTINGS = (
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "ServiceBusConnection__credential",
    "ServiceBusConnection__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    # Read by the distro: its automatic httpx/urllib instrumentation would duplicate
    # the handler's Batch spans (and record URLs it does not redact).
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
)


def setting_name(field: str) -> str:
    """The app-setting name of a Settings field (for wiring that runs before Settings)."""
    alias = Settings.model_fields[field].alias
    assert alias is not None
    return alias


__all__ = [
    "BATCH_SCOPE",
    "DEFAULT_API_VERSION",
    "HOST_SETTINGS",
    "REQUIRED_IN_AZURE",
    "BatchAuthMode",
    "Settings",
    "SettlementMode",
    "sessions_enabled_from_env",
    "setting_name",
    "settlement_mode_from_env",
]


def sessions_enabled_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """The sessions flag alone, for the trigger decorator at import time: the
    binding must be known when the host indexes the app, before Settings can
    be complete (tests index the app with no settings at all)."""
    raw = (os.environ if environ is None else environ).get(setting_name("sessions_enabled"), "false")
    return TypeAdapter(bool).validate_python(raw)


def settlement_mode_from_env(environ: Mapping[str, str] | None = None) -> SettlementMode:
    """The settlement mode alone, for function_app.py at import time (as above: the
    trigger's signature is fixed when the host indexes the app)."""
    raw = (os.environ if environ is None else environ).get(setting_name("settlement"), "host")
    return SettlementMode(raw)
