"""Service-side checks of an Update Job (PATCH) body, before any job is touched.

The REST schema (`BatchJobUpdateOptions`, identical in api-version 2025-06-01
and 2026-10-01, Azure/azure-rest-api-specs
`specification/batch/data-plane/Batch/stable/{version}/BatchService.json`) gives
the shapes: the nested objects are the `*Update` variants, none of which has a
required property (`BatchPoolInfoUpdate`, `BatchAutoPoolSpecificationUpdate`,
`BatchPoolSpecificationUpdate`, `BatchJobNetworkConfigurationUpdate`; the
property names are the tuples below). The rules are the ones the property
documentation says the service enforces: priority -1000..1000; maxParallelTasks
-1 or > 0; maxTaskRetryCount >= -1; durations in ISO 8601 (see durations.py);
enum values matched case-insensitively; metadata names non-empty; poolInfo
naming exactly one of poolId / autoPoolSpecification ("You must specify either
the Pool ID or the auto Pool specification, but not both", also on
BatchPoolInfoUpdate); autoPoolIdPrefix at most 20 characters; subnetId of the
form /subscriptions/{s}/resourceGroups/{g}/providers/{provider}/virtualNetworks/
{n}/subnets/{sn}; no JSON null; no properties outside the model.

The result is the normalised body. `constraints` and `metadata` are complete:
the service merges at the top level only, so they replace the stored ones whole,
with defaults. `poolInfo.autoPoolSpecification` and `networkConfiguration` carry
only what the body gave (plus keepAlive / skipWithdrawFromVNet defaulted to
false); `store.py` completes them from the stored job, because their remaining
properties have no default (see the README's reading). Rules that need the
stored job (terminatejob -> noaction, poolInfo and state, a subnet to keep)
live in `store.py`.

Where the service's exact error code is undocumented (type mismatches, a missing
nested property), the nearest documented code is used: InvalidPropertyValue,
MissingRequiredProperty or UnsupportedProperty, with PropertyName/PropertyValue/
Reason values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from standins.batch.durations import UNLIMITED, normalise_duration
from standins.batch.errors import BatchServiceError, invalid_property

UPDATABLE_PROPERTIES = (
    "priority",
    "allowTaskPreemption",
    "maxParallelTasks",
    "constraints",
    "poolInfo",
    "onAllTasksComplete",
    "metadata",
    "networkConfiguration",
)
# Property names of the models in the current swagger (2025-06-01 = 2026-10-01).
JOB_CONSTRAINTS_PROPERTIES = ("maxWallClockTime", "maxTaskRetryCount")  # BatchJobConstraints
METADATA_ITEM_PROPERTIES = ("name", "value")  # BatchMetadataItem (both required)
POOL_INFO_UPDATE_PROPERTIES = ("poolId", "autoPoolSpecification")  # BatchPoolInfoUpdate
AUTO_POOL_SPECIFICATION_UPDATE_PROPERTIES = (  # BatchAutoPoolSpecificationUpdate
    "autoPoolIdPrefix",
    "poolLifetimeOption",
    "keepAlive",
    "pool",
)
POOL_SPECIFICATION_UPDATE_PROPERTIES = (  # BatchPoolSpecificationUpdate
    "displayName",
    "vmSize",
    "virtualMachineConfiguration",
    "taskSlotsPerNode",
    "taskSchedulingPolicy",
    "resizeTimeout",
    "targetDedicatedNodes",
    "targetLowPriorityNodes",
    "enableAutoScale",
    "autoScaleFormula",
    "autoScaleEvaluationInterval",
    "enableInterNodeCommunication",
    "networkConfiguration",
    "startTask",
    "applicationPackageReferences",
    "userAccounts",
    "metadata",
    "mountConfiguration",
    "upgradePolicy",
)
JOB_NETWORK_CONFIGURATION_UPDATE_PROPERTIES = (  # BatchJobNetworkConfigurationUpdate
    "subnetId",
    "skipWithdrawFromVNet",
)
ON_ALL_TASKS_COMPLETE = ("noaction", "terminatejob")
POOL_LIFETIME_OPTIONS = ("jobschedule", "job")
MAX_ID_LENGTH = 64
MAX_AUTO_POOL_PREFIX = 20
# The spec text: "/subscriptions/{subscription}/resourceGroups/{group}/providers/
# {provider}/virtualNetworks/{network}/subnets/{subnet}" -- any provider segment.
SUBNET_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[^/]+/"
    r"virtualNetworks/[^/]+/subnets/[^/]+",
    re.IGNORECASE,
)
SUBNET_ID_FORM = "/subscriptions/{s}/resourceGroups/{g}/providers/{provider}/virtualNetworks/{n}/subnets/{sn}"


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, _DuplicateKeyError) as exc:
        raise BatchServiceError(400, "InvalidRequestBody", values=(("Reason", str(exc)),)) from None
    if not isinstance(body, dict):
        raise BatchServiceError(
            400, "InvalidRequestBody", values=(("Reason", "the body must be a JSON object"),)
        )
    return body


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate property {key!r}")
        result[key] = value
    return result


def validate_job_update(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the normalised update, or raise the 400 the service would answer."""
    _reject_unknown(body, UPDATABLE_PROPERTIES)
    _reject_nulls(body, "")
    update: dict[str, Any] = {}
    if "priority" in body:
        update["priority"] = _int(body, "priority", low=-1000, high=1000)
    if "allowTaskPreemption" in body:
        update["allowTaskPreemption"] = _bool(body, "allowTaskPreemption")
    if "maxParallelTasks" in body:
        value = _int(body, "maxParallelTasks")
        if value != -1 and value <= 0:
            raise invalid_property("maxParallelTasks", value, "must be -1 (no limit) or greater than 0")
        update["maxParallelTasks"] = value
    if "constraints" in body:
        update["constraints"] = _constraints(_object(body, "constraints"))
    if "poolInfo" in body:
        update["poolInfo"] = _pool_info(_object(body, "poolInfo"))
    if "onAllTasksComplete" in body:
        update["onAllTasksComplete"] = _enum(body, "onAllTasksComplete", ON_ALL_TASKS_COMPLETE)
    if "metadata" in body:
        update["metadata"] = _metadata(body["metadata"])
    if "networkConfiguration" in body:
        update["networkConfiguration"] = _network_configuration(_object(body, "networkConfiguration"))
    return update


def _constraints(value: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(value, JOB_CONSTRAINTS_PROPERTIES)
    wall_clock = UNLIMITED
    if "maxWallClockTime" in value:
        wall_clock = _duration(value, "maxWallClockTime")
    retries = 0
    if "maxTaskRetryCount" in value:
        retries = _int(value, "maxTaskRetryCount", low=-1)
    return {"maxWallClockTime": wall_clock, "maxTaskRetryCount": retries}


def _pool_info(value: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(value, POOL_INFO_UPDATE_PROPERTIES)
    has_pool_id = "poolId" in value
    has_auto = "autoPoolSpecification" in value
    if has_pool_id == has_auto:
        raise invalid_property(
            "poolInfo", dict(value), "specify exactly one of poolId and autoPoolSpecification"
        )
    if has_pool_id:
        pool_id = _string(value, "poolId")
        if not pool_id or len(pool_id) > MAX_ID_LENGTH:
            raise invalid_property("poolId", pool_id, f"must be 1 to {MAX_ID_LENGTH} characters")
        return {"poolId": pool_id}
    return {"autoPoolSpecification": _auto_pool_specification(_object(value, "autoPoolSpecification"))}


def _auto_pool_specification(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What the body says of the auto pool; the store completes it from the stored job.

    No property is required (BatchAutoPoolSpecificationUpdate). keepAlive, the one
    property a PATCH may change, defaults to false when omitted (top-level replace
    semantics); the others cannot change, so an omitted one keeps its stored value.
    """
    _reject_unknown(spec, AUTO_POOL_SPECIFICATION_UPDATE_PROPERTIES)
    given: dict[str, Any] = {"keepAlive": _bool(spec, "keepAlive") if "keepAlive" in spec else False}
    if "poolLifetimeOption" in spec:
        given["poolLifetimeOption"] = _enum(spec, "poolLifetimeOption", POOL_LIFETIME_OPTIONS)
    if "autoPoolIdPrefix" in spec:
        prefix = _string(spec, "autoPoolIdPrefix")
        if len(prefix) > MAX_AUTO_POOL_PREFIX:
            raise invalid_property(
                "autoPoolIdPrefix", prefix, f"must be at most {MAX_AUTO_POOL_PREFIX} characters"
            )
        given["autoPoolIdPrefix"] = prefix
    if "pool" in spec:
        pool = _object(spec, "pool")
        # BatchPoolSpecificationUpdate: property names are checked, nothing is
        # required (no vmSize needed); deeper levels are stored as given.
        _reject_unknown(pool, POOL_SPECIFICATION_UPDATE_PROPERTIES)
        given["pool"] = dict(pool)
    return given


def _metadata(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise invalid_property("metadata", value, "must be a list of {name, value} objects")
    items: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid_property("metadata", item, "each item must be a {name, value} object")
        _reject_unknown(item, METADATA_ITEM_PROPERTIES)
        for required in METADATA_ITEM_PROPERTIES:
            if required not in item:
                raise _missing(required)
        name, text = _string(item, "name"), _string(item, "value")
        if not name:
            raise BatchServiceError(400, "EmptyMetadataKey")
        items.append({"name": name, "value": text})
    return items


def _network_configuration(value: Mapping[str, Any]) -> dict[str, Any]:
    """BatchJobNetworkConfigurationUpdate: nothing required.

    skipWithdrawFromVNet "Defaults to false"; subnetId has no default, so when it
    is omitted the store keeps the job's current subnet (or refuses if it has none).
    """
    _reject_unknown(value, JOB_NETWORK_CONFIGURATION_UPDATE_PROPERTIES)
    result: dict[str, Any] = {}
    if "subnetId" in value:
        subnet_id = _string(value, "subnetId")
        if not SUBNET_ID.fullmatch(subnet_id):
            raise invalid_property("subnetId", subnet_id, f"must be an ARM subnet id: {SUBNET_ID_FORM}")
        result["subnetId"] = subnet_id
    skip = _bool(value, "skipWithdrawFromVNet") if "skipWithdrawFromVNet" in value else False
    result["skipWithdrawFromVNet"] = skip
    return result


# --- primitive checks ----------------------------------------------------------------


def _reject_unknown(value: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in value:
        if name not in allowed:
            raise BatchServiceError(400, "UnsupportedProperty", values=(("PropertyName", name),))


def _reject_nulls(value: Any, path: str) -> None:
    if value is None:
        raise invalid_property(path.rsplit(".", 1)[-1], None, "null is not supported in an update")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nulls(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            _reject_nulls(item, path)


def _missing(name: str) -> BatchServiceError:
    return BatchServiceError(400, "MissingRequiredProperty", values=(("PropertyName", name),))


def _int(value: Mapping[str, Any], name: str, *, low: int | None = None, high: int | None = None) -> int:
    number = value[name]
    if isinstance(number, bool) or not isinstance(number, int):
        raise invalid_property(name, number, "must be an integer")
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise invalid_property(name, number, f"must be in the range {bounds}")
    return number


def _bool(value: Mapping[str, Any], name: str) -> bool:
    flag = value[name]
    if not isinstance(flag, bool):
        raise invalid_property(name, flag, "must be true or false")
    return flag


def _string(value: Mapping[str, Any], name: str) -> str:
    text = value[name]
    if not isinstance(text, str):
        raise invalid_property(name, text, "must be a string")
    return text


def _object(value: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    item = value[name]
    if not isinstance(item, dict):
        raise invalid_property(name, item, "must be an object")
    return item


def _enum(value: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    text = _string(value, name)
    lowered = text.lower()
    if lowered not in allowed:
        raise invalid_property(name, text, f"must be one of {', '.join(allowed)}")
    return lowered


def _duration(value: Mapping[str, Any], name: str) -> str:
    text = _string(value, name)
    try:
        return normalise_duration(text)
    except ValueError as exc:
        raise invalid_property(name, text, str(exc)) from None
