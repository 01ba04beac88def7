"""The job-update message contract (schema version 1.0).

A message says: update Batch job X (`jobId`, or `jobUrl`), with these
properties (`update`, in the REST body's own JSON names), under these
conditions (`conditions`), with these request options (`options`).

Everything Batch would refuse is refused here first, with one precise error
per problem and the JSON path of the field. Models are strict: `"100"` is not
a priority, and unknown fields are errors (a typo must not silently do
nothing). `docs/job-update.schema.json` is generated from these models.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    MISSING,
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from handlers.errors import InvalidMessage, Problem
from handlers.wire_formats import (
    DURATION_PATTERN,
    ETAG_PATTERN,
    GUID_PATTERN,
    HTTP_DATE_PATTERN,
    canonical_duration,
    format_http_date,
    parse_etag,
    parse_http_date,
)

SCHEMA_VERSION = "1.0"
# Service Bus Standard tier's message size limit; Premium allows more, but a
# job update never needs it.
MAX_MESSAGE_BYTES = 256 * 1024
# Free-form JSON (the auto-pool `pool` specification) may nest at most this deep.
MAX_POOL_DEPTH = 32
INT32_MAX = 2**31 - 1  # Batch's integers are Int32
_UTF8_BOM = b"\xef\xbb\xbf"

# JSON Schema patterns (ECMA-262: `$` is the end of input); Python matches them with
# fullmatch, so a trailing newline is refused here too.
ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
AUTO_POOL_PREFIX_PATTERN = "^[A-Za-z0-9_-]{1,20}$"
# The spec's text: /subscriptions/{s}/resourceGroups/{g}/providers/{provider}/virtualNetworks/...
# (the provider segment is not fixed). Case-insensitive, as ARM ids are.
SUBNET_ID_PATTERN = (
    # A segment is anything but "/" and white space: a trailing newline is not an id.
    r"^/[Ss][Uu][Bb][Ss][Cc][Rr][Ii][Pp][Tt][Ii][Oo][Nn][Ss]/[^/\s]+"
    r"/[Rr][Ee][Ss][Oo][Uu][Rr][Cc][Ee][Gg][Rr][Oo][Uu][Pp][Ss]/[^/\s]+"
    r"/[Pp][Rr][Oo][Vv][Ii][Dd][Ee][Rr][Ss]/[^/\s]+"
    r"/[Vv][Ii][Rr][Tt][Uu][Aa][Ll][Nn][Ee][Tt][Ww][Oo][Rr][Kk][Ss]/[^/\s]+"
    r"/[Ss][Uu][Bb][Nn][Ee][Tt][Ss]/[^/\s]+$"
)
# An origin only; the allow-list decides whether it may be used (docs/message-contract.md).
ENDPOINT_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$"
JOB_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/jobs/[A-Za-z0-9_-]{1,64}/?$"
_ID = re.compile(ID_PATTERN[1:-1])
_AUTO_POOL_PREFIX = re.compile(AUTO_POOL_PREFIX_PATTERN[1:-1])
_SUBNET_ID = re.compile(SUBNET_ID_PATTERN[1:-1])
_ENDPOINT = re.compile(ENDPOINT_PATTERN[1:-1])
_GUID = re.compile(GUID_PATTERN[1:-1])
_JOB_URL = re.compile(JOB_URL_PATTERN[1:-1])
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _pattern_check(compiled: re.Pattern[str], pattern: str, code: str, message: str) -> list[Any]:
    """A pattern rule: the validator (fullmatch, a precise error) and the schema's copy."""

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise PydanticCustomError(code, message)
        return value

    return [AfterValidator(check), WithJsonSchema({"type": "string", "pattern": pattern})]


def _id(kind: str) -> list[Any]:
    return _pattern_check(
        _ID,
        ID_PATTERN,
        "invalid_id",
        f"{kind} must be 1-64 characters: letters, digits, hyphens and underscores",
    )


def _any_case(*values: str) -> str:
    """A pattern matching any of `values` in any case (JSON Schema has no case-insensitive enum)."""
    words = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in v) for v in values]
    return "^(?:" + "|".join(words) + ")$"


def _every_one_of(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON Schema for "each rule holds by one of its alternatives", as one anyOf of the
    merged combinations: equivalent to allOf of anyOfs, and generators need no filters."""
    combos: list[dict[str, Any]] = []
    for choice in itertools.product(*rules):
        merged: dict[str, Any] = {"required": [], "properties": {}}
        for alternative in choice:
            merged["required"] += alternative.get("required", [])
            merged["properties"].update(alternative.get("properties", {}))
        combos.append({k: v for k, v in merged.items() if v})
    return {"anyOf": combos}


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_LOWER = BeforeValidator(_lower)  # Batch matches enum values case-insensitively: any case in, lower out


def _any_case_schema(*values: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": _any_case(*values)})


PoolLifetimeOption = Annotated[Literal["job", "jobschedule"], _LOWER, _any_case_schema("job", "jobschedule")]
OnAllTasksComplete = Annotated[
    Literal["noaction", "terminatejob"], _LOWER, _any_case_schema("noaction", "terminatejob")
]
Mode = Annotated[Literal["replace", "merge"], _LOWER, _any_case_schema("replace", "merge")]


def _duration(value: str) -> str:
    try:
        return canonical_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_duration", str(exc)) from None


def _http_date(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_http_date(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid_date", str(exc)) from None
    return value


def _etag(value: str) -> str:
    try:
        return parse_etag(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_etag", str(exc)) from None


def _check_free_json(value: object, limit: int) -> None:
    """Free-form JSON (a pool specification): bounded depth; no nulls (Batch refuses
    null in updates); no NaN, Infinity or integers past Int64 (they have no JSON form
    Batch reads, and would go out as null)."""
    if limit < 0:
        raise PydanticCustomError("too_deep", f"nested more than {MAX_POOL_DEPTH} levels deep")
    if value is None:
        raise PydanticCustomError(
            "null_not_allowed", "null is not allowed in a pool specification: omit the field"
        )
    if isinstance(value, dict):
        for item in value.values():
            _check_free_json(item, limit - 1)
    elif isinstance(value, list):
        for item in value:
            _check_free_json(item, limit - 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_not_finite", "NaN and Infinity are not JSON numbers Batch accepts")
    elif (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    ):
        raise PydanticCustomError("number_too_large", "number outside the Int64 range")


def given[T](value: T | MISSING) -> T | None:
    """An optional field's value, or None when the message left it out."""
    return None if value is MISSING else value


def is_job_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


JobId = Annotated[StrictStr, *_id("jobId")]
PoolId = Annotated[StrictStr, *_id("poolId")]
Duration = Annotated[
    StrictStr,
    AfterValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "ISO 8601 duration (PT1H30M) or .NET TimeSpan text (01:30:00), at most "
            "P10675199DT2H48M5.4775807S and 7 fractional digits; sent as ISO 8601, exact to the tick",
        }
    ),
]
HttpDate = Annotated[
    datetime,
    BeforeValidator(_http_date),
    PlainSerializer(format_http_date, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": HTTP_DATE_PATTERN,
            "description": "RFC 1123 (Mon, 17 Feb 2025 00:00:00 GMT) or ISO 8601 with offset; "
            "sent as RFC 1123",
        }
    ),
]
ETag = Annotated[
    StrictStr,
    AfterValidator(_etag),
    WithJsonSchema(
        {"type": "string", "pattern": ETAG_PATTERN, "description": 'An ETag, quoted or bare, or "*"'}
    ),
]


_MAX_STRING = 64 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        str_max_length=_MAX_STRING,
    )


# --- The update body: Batch's BatchJobUpdateOptions -------------------------------


class JobConstraints(_Model):
    max_wall_clock_time: Duration | MISSING = Field(MISSING, alias="maxWallClockTime")
    max_task_retry_count: StrictInt | MISSING = Field(
        MISSING,
        alias="maxTaskRetryCount",
        ge=-1,
        le=INT32_MAX,
        description="-1 retries without limit, 0 never retries",
    )


class AutoPoolSpecificationUpdate(_Model):
    """BatchAutoPoolSpecificationUpdate: every field optional (the current spec).
    On an existing auto pool, Batch lets a PATCH change keepAlive only."""

    auto_pool_id_prefix: (
        Annotated[
            StrictStr,
            *_pattern_check(
                _AUTO_POOL_PREFIX,
                AUTO_POOL_PREFIX_PATTERN,
                "invalid_prefix",
                "autoPoolIdPrefix must be 1-20 characters: letters, digits, hyphens and underscores",
            ),
        ]
        | MISSING
    ) = Field(MISSING, alias="autoPoolIdPrefix", description="At most 20 characters")
    pool_lifetime_option: PoolLifetimeOption | MISSING = Field(
        MISSING, alias="poolLifetimeOption", description="job or jobschedule (any case; sent lower-case)"
    )
    keep_alive: StrictBool | MISSING = Field(MISSING, alias="keepAlive")
    pool: dict[str, Any] | MISSING = Field(
        MISSING,
        description="A Batch pool specification (BatchPoolSpecificationUpdate: no field is required). "
        f"Passed through as given; Batch validates its fields. At most {MAX_POOL_DEPTH} levels deep",
    )

    @field_validator("pool")
    @classmethod
    def _pool_shape(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_free_json(value, MAX_POOL_DEPTH)
        return value


class PoolInfoUpdate(_Model):
    """BatchPoolInfoUpdate. The spec marks neither field required; naming both or
    neither has no meaning for a job, so exactly one is required here."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["poolId"]}, {"required": ["autoPoolSpecification"]}]}
    )

    pool_id: PoolId | MISSING = Field(MISSING, alias="poolId")
    auto_pool_specification: AutoPoolSpecificationUpdate | MISSING = Field(
        MISSING, alias="autoPoolSpecification"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PoolInfoUpdate:
        if (self.pool_id is MISSING) == (self.auto_pool_specification is MISSING):
            raise PydanticCustomError(
                "pool_info_choice",
                "poolInfo needs exactly one of poolId or autoPoolSpecification",
            )
        return self


class MetadataItem(_Model):
    name: StrictStr = Field(min_length=1, max_length=1024)
    value: StrictStr = Field(max_length=8192)


class JobNetworkConfigurationUpdate(_Model):
    """BatchJobNetworkConfigurationUpdate: every field optional (the current spec)."""

    subnet_id: (
        Annotated[
            StrictStr,
            *_pattern_check(
                _SUBNET_ID,
                SUBNET_ID_PATTERN,
                "invalid_subnet_id",
                "subnetId must be an ARM subnet id: /subscriptions/{s}/resourceGroups/{g}/providers/"
                "{provider}/virtualNetworks/{vnet}/subnets/{subnet}",
            ),
        ]
        | MISSING
    ) = Field(MISSING, alias="subnetId")
    skip_withdraw_from_vnet: StrictBool | MISSING = Field(MISSING, alias="skipWithdrawFromVNet")


class JobUpdate(_Model):
    """The PATCH body. Omitted = unchanged; a nested object replaces the stored one whole."""

    priority: StrictInt | MISSING = Field(MISSING, ge=-1000, le=1000)
    allow_task_preemption: StrictBool | MISSING = Field(MISSING, alias="allowTaskPreemption")
    max_parallel_tasks: StrictInt | MISSING = Field(
        MISSING,
        alias="maxParallelTasks",
        ge=-1,
        le=INT32_MAX,
        description="-1 (no limit) or greater than 0",
        json_schema_extra={"not": {"const": 0}},
    )
    constraints: JobConstraints | MISSING = MISSING
    pool_info: PoolInfoUpdate | MISSING = Field(MISSING, alias="poolInfo")
    on_all_tasks_complete: OnAllTasksComplete | MISSING = Field(
        MISSING,
        alias="onAllTasksComplete",
        description="noaction or terminatejob (any case)",
    )
    metadata: list[MetadataItem] | MISSING = Field(
        MISSING,
        max_length=1000,
        description="Replaces the job's list ([] clears it). The spec sets no rule on repeated "
        "names: replace mode sends them as given; merge mode upserts in order (the last one wins)",
    )
    network_configuration: JobNetworkConfigurationUpdate | MISSING = Field(
        MISSING, alias="networkConfiguration"
    )

    @field_validator("max_parallel_tasks")
    @classmethod
    def _parallel(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise PydanticCustomError(
                "invalid_max_parallel_tasks",
                "maxParallelTasks must be -1 (no limit) or greater than 0",
            )
        return value

    def body(self) -> dict[str, Any]:
        """The JSON body Batch receives: only the properties the message set (an
        absent field is MISSING, which pydantic leaves out of every dump)."""
        return self.model_dump(mode="json")

    def is_empty(self) -> bool:
        return not self.model_fields_set


# --- Conditions and request options ---------------------------------------------


class Conditions(_Model):
    """HTTP preconditions. Batch allows one, or If-None-Match + If-Modified-Since,
    or If-Match + If-Unmodified-Since; other combinations are a 400."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"maxProperties": 1},
                {"propertyNames": {"enum": ["ifNoneMatch", "ifModifiedSince"]}},
                {"propertyNames": {"enum": ["ifMatch", "ifUnmodifiedSince"]}},
            ]
        }
    )

    if_match: ETag | MISSING = Field(MISSING, alias="ifMatch")
    if_none_match: ETag | MISSING = Field(MISSING, alias="ifNoneMatch")
    if_modified_since: HttpDate | MISSING = Field(MISSING, alias="ifModifiedSince")
    if_unmodified_since: HttpDate | MISSING = Field(MISSING, alias="ifUnmodifiedSince")

    @model_validator(mode="after")
    def _allowed_combination(self) -> Conditions:
        named = self.model_fields_set
        allowed = (
            len(named) <= 1
            or named == {"if_none_match", "if_modified_since"}
            or named == {"if_match", "if_unmodified_since"}
        )
        if not allowed:
            raise PydanticCustomError(
                "condition_combination",
                "Batch allows one condition, or ifNoneMatch with ifModifiedSince, "
                "or ifMatch with ifUnmodifiedSince (got {names})",
                {"names": ", ".join(sorted(self._alias(n) for n in named))},
            )
        return self

    @staticmethod
    def _alias(name: str) -> str:
        return Conditions.model_fields[name].alias or name

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.if_match is not MISSING:
            out["If-Match"] = self.if_match
        if self.if_none_match is not MISSING:
            out["If-None-Match"] = self.if_none_match
        if self.if_modified_since is not MISSING:
            out["If-Modified-Since"] = format_http_date(self.if_modified_since)
        if self.if_unmodified_since is not MISSING:
            out["If-Unmodified-Since"] = format_http_date(self.if_unmodified_since)
        return out


class RequestOptions(_Model):
    timeout: StrictInt | MISSING = Field(
        MISSING, ge=1, le=30, description="Server timeout in seconds (Batch caps it at 30)"
    )
    client_request_id: (
        Annotated[
            StrictStr,
            *_pattern_check(
                _GUID,
                GUID_PATTERN,
                "invalid_client_request_id",
                "clientRequestId must be a GUID without braces, e.g. 9C4D50EE-2D56-4CD3-8152-34347DC9F2B0",
            ),
        ]
        | MISSING
    ) = Field(
        MISSING,
        alias="clientRequestId",
        description="GUID without braces; default: derived from the Service Bus message id",
    )
    return_client_request_id: StrictBool = Field(False, alias="returnClientRequestId")
    ocp_date: HttpDate | MISSING = Field(
        MISSING,
        alias="ocpDate",
        description="Batch refuses requests more than 15 minutes off",
    )
    dry_run: StrictBool = Field(
        False,
        alias="dryRun",
        description="Validate, read the job and report what would change; no write",
    )


# --- The message ---------------------------------------------------------------


class JobUpdateMessage(_Model):
    """One job update, as put on the job-updates queue."""

    model_config = ConfigDict(
        title="JobUpdateMessage",
        json_schema_extra={
            "$id": "https://schemas.batch-job-update.dev/job-update/1.0.json",
            # The cross-field rules of _coherent, as far as JSON Schema can say them.
            **_every_one_of(
                # the job: jobId (and optionally endpoint), or jobUrl alone
                [
                    {"required": ["jobId"], "properties": {"jobUrl": False}},
                    {"required": ["jobUrl"], "properties": {"jobId": False, "endpoint": False}},
                ],
                # something to change, unless it is a dry run
                [
                    {"required": ["update"], "properties": {"update": {"minProperties": 1}}},
                    {
                        "required": ["options"],
                        "properties": {
                            "options": {"required": ["dryRun"], "properties": {"dryRun": {"const": True}}}
                        },
                    },
                ],
                # merge mode takes ifMatch only
                [
                    {"properties": {"mode": {"pattern": _any_case("replace")}}},
                    {"properties": {"conditions": {"propertyNames": {"const": "ifMatch"}}}},
                ],
            ),
        },
    )

    schema_version: Literal["1.0"] = Field(alias="schemaVersion")
    job_id: JobId | MISSING = Field(MISSING, alias="jobId")
    job_url: (
        Annotated[
            StrictStr,
            *_pattern_check(
                _JOB_URL,
                JOB_URL_PATTERN,
                "invalid_job_url",
                "jobUrl must look like https://{account}.{region}.batch.azure.com/jobs/{jobId}",
            ),
        ]
        | MISSING
    ) = Field(
        MISSING,
        alias="jobUrl",
        description="The job's URL ({endpoint}/jobs/{jobId}), instead of jobId + endpoint",
    )
    endpoint: (
        Annotated[
            StrictStr,
            *_pattern_check(
                _ENDPOINT,
                ENDPOINT_PATTERN,
                "invalid_endpoint",
                "endpoint must be an origin: https://host[:port]",
            ),
        ]
        | MISSING
    ) = Field(
        MISSING,
        description="Batch account endpoint; must be allow-listed; default from settings",
    )
    mode: Mode = Field(
        "replace",
        description="replace: nested objects replace the stored ones (Batch semantics, one request). "
        "merge: read-modify-write that changes only the named nested fields",
    )
    update: JobUpdate = Field(default_factory=JobUpdate)
    conditions: Conditions = Field(default_factory=Conditions)
    options: RequestOptions = Field(default_factory=RequestOptions)

    @model_validator(mode="after")
    def _coherent(self) -> JobUpdateMessage:
        if self.job_url is not MISSING:
            if self.job_id is not MISSING or self.endpoint is not MISSING:
                raise PydanticCustomError(
                    "job_identity",
                    "give jobUrl, or jobId (and optionally endpoint), not both",
                )
            # The pattern (checked already) guarantees the split.
            endpoint, _, job_id = self.job_url.removesuffix("/").rpartition("/jobs/")
            object.__setattr__(self, "job_id", job_id)
            object.__setattr__(self, "endpoint", endpoint)
        elif self.job_id is MISSING:
            raise PydanticCustomError("missing_job", "the message must name the job: jobId or jobUrl")
        if self.update.is_empty() and not self.options.dry_run:
            raise PydanticCustomError(
                "empty_update",
                "update names no property to change (set options.dryRun to only check)",
            )
        if self.mode == "merge":
            extra = self.conditions.model_fields_set - {"if_match"}
            if extra:
                raise PydanticCustomError(
                    "merge_conditions",
                    "merge mode guards its write with If-Match itself; only ifMatch may be given",
                )
        return self

    @property
    def target_endpoint(self) -> str | None:
        """The endpoint the message names (from `endpoint` or `jobUrl`), if any."""
        return given(self.endpoint)

    @property
    def target_job_id(self) -> str:
        assert self.job_id is not MISSING  # guaranteed by _coherent
        return self.job_id


# --- Parsing: bytes in, a message or precise problems out ------------------------

# Batch refuses requests whose ocp-date is further than this from its clock.
MAX_CLOCK_SKEW = timedelta(minutes=15)


def json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_JSON_TYPES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _problem(error: ErrorDetails) -> Problem:
    message = error["msg"]
    if error.get("input", MISSING) is None and error["type"] != "missing":
        # An optional field is MISSING when absent: null has no meaning (Batch refuses
        # it in partial updates), so every null is this one problem.
        return Problem(
            json_path(tuple(error["loc"])),
            "null_not_allowed",
            "null is not allowed: omit the field to leave it unchanged",
        )
    if error["type"].endswith("_type") and error["type"] != "model_type":
        got = _JSON_TYPES.get(type(error.get("input")), "value")
        message = f"{message} (got {got})"
    elif error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling against docs/message-contract.md)"
    return Problem(json_path(tuple(error["loc"])), error["type"], message)


def parse_message(body: bytes | str) -> JobUpdateMessage:
    """Validate a raw message body, or raise InvalidMessage with every problem found."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage([Problem("$", "too_large", f"message body is over {MAX_MESSAGE_BYTES} bytes")])
    if isinstance(body, bytes) and body.startswith(_UTF8_BOM):
        body = body[3:]  # .NET producers often write one; it is not part of the JSON
    problems: list[Problem] = []
    try:
        message = JobUpdateMessage.model_validate_json(body)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors(include_url=False)]
    except (RecursionError, OverflowError, ValueError) as exc:
        # A validator met a value past what Python can hold: still the message's fault.
        problems = [Problem("$", "unparseable", f"{type(exc).__name__} while validating")]
    # Only JSON pydantic could read (it bounds depth) goes to the second parser.
    if not any(p.code == "json_invalid" for p in problems):
        problems = duplicate_keys(body) + problems
    if problems:
        raise InvalidMessage(problems)
    return message


class _Object(dict[str, Any]):
    """A JSON object that remembers the names it was given more than once."""

    repeated: tuple[str, ...] = ()


def duplicate_keys(body: bytes | str) -> list[Problem]:
    """A name given twice in one object. JSON parsers keep the last one silently (so
    `"dryRun": true, "dryRun": false` would write): refuse it, naming the path. The
    body's other faults are pydantic's to report."""
    any_repeat = False

    def remember_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal any_repeat
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        any_repeat = True
        repeated = _Object(pairs)
        counts = Counter(k for k, _ in pairs)  # linear: 30,000 keys must not cost seconds
        repeated.repeated = tuple(k for k, n in counts.items() if n > 1)
        return repeated

    try:
        tree = json.loads(body, object_pairs_hook=remember_repeats)
    except (ValueError, RecursionError):
        return []
    if not any_repeat:
        return []
    found: list[Problem] = []
    stack: list[tuple[str, Any]] = [("$", tree)]
    while stack:  # iterative: a deep body must not exhaust the stack here
        path, value = stack.pop()
        if isinstance(value, dict):
            for name in getattr(value, "repeated", ()):
                found.append(Problem(f"{path}.{name}", "duplicate_key", f"{name!r} appears more than once"))
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return sorted(found, key=lambda p: p.path)


def check_ocp_date(message: JobUpdateMessage, now: datetime) -> None:
    """Batch refuses an ocp-date more than 15 minutes from its clock: refuse it first."""
    sent = given(message.options.ocp_date)
    if sent is not None and abs(now - sent) > MAX_CLOCK_SKEW:
        raise InvalidMessage(
            [
                Problem(
                    "$.options.ocpDate",
                    "ocp_date_skew",
                    "ocpDate is more than 15 minutes from now; Batch would refuse the request",
                )
            ]
        )


# --- JSON Schema (docs/job-update.schema.json) -------------------------------------


class _MessageSchema(GenerateJsonSchema):
    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        if out.get("maxLength") == _MAX_STRING:
            del out["maxLength"]  # the global guard, not a field rule
        return out


# Free-form JSON inside a pool specification: no null, numbers within Int64 (its
# depth limit is one of the rules JSON Schema cannot say).
_POOL_VALUE = {
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "array", "items": {"$ref": "#/$defs/PoolValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/PoolValue"}},
    ]
}


def json_schema() -> dict[str, Any]:
    schema = JobUpdateMessage.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_MessageSchema
    )
    # pydantic resolves every $ref it meets, so the recursive one is added afterwards.
    schema["$defs"]["PoolValue"] = _POOL_VALUE
    pool = schema["$defs"]["AutoPoolSpecificationUpdate"]["properties"]["pool"]
    pool["additionalProperties"] = {"$ref": "#/$defs/PoolValue"}
    return schema
