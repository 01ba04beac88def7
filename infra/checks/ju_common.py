"""Helpers shared by the job-update custom checks (not a check itself).

checkov hands a Bicep resource check the resource body as pycep parsed it and the
graph resolved it: literals stay Python values (`True`, `10`, `'1.2'`), an
unresolved parameter or variable is its bare name (`'maxDeliveryCount'`), and a
function call is a nested dict (`{'function': {'type': 'list_keys', ...}}`).
"""

from __future__ import annotations

import json
import re
from typing import Any

CHECK_PREFIX = "CKV_JU_"

# Every custom check id. The gate fails if one of them produced no result on infra/.
CUSTOM_CHECK_IDS = tuple(f"{CHECK_PREFIX}{n}" for n in range(1, 13))

# Built-in role definitions this deployment may assign (docs/deploy.md, "Least privilege").
INTENDED_ROLE_IDS = {
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "48e5e92e-a480-4e71-aa9c-2778f4c13781": "Azure Batch Job Submitter",
    "6aaa78f1-f7de-44ca-8722-c64a23943cae": "Azure Batch Data Contributor",
}

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SUBSCRIPTION_SEGMENT = re.compile(r"/subscriptions/[0-9a-fA-F-]{36}", re.IGNORECASE)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\[\]()']*$")

MISSING = object()


def get(conf: Any, *path: str) -> Any:
    """`conf[path[0]][path[1]]...`, or MISSING where a step is absent."""
    node = conf
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def flat(value: Any) -> str:
    """One string holding every literal, name and function type in `value`."""
    return json.dumps(value, default=str, sort_keys=True)


def is_reference(value: Any) -> bool:
    """An unresolved parameter/variable/property reference (not a literal string value)."""
    return isinstance(value, str) and bool(IDENTIFIER.match(value)) and not value.isdigit()


def role_ids(role_definition_id: Any) -> list[str]:
    """Role-definition GUIDs named in a roleDefinitionId expression (subscription ids dropped)."""
    text = SUBSCRIPTION_SEGMENT.sub("", flat(role_definition_id))
    return [match.lower() for match in GUID.findall(text)]


def function_types(value: Any) -> list[str]:
    """Every Bicep function pycep recognised inside `value` (`list_keys`, `guid`, ...)."""
    found: list[str] = []
    if isinstance(value, dict):
        fn = value.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("type"), str):
            found.append(fn["type"])
        for item in value.values():
            found.extend(function_types(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(function_types(item))
    elif isinstance(value, str) and value.startswith("{") and "'function'" in value:
        # pycep stringifies some nested expressions (e.g. inside a ternary).
        found.extend(re.findall(r"'type': '([a-z_]+)'", value))
    return found
