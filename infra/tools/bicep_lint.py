"""Cross-file checks of infra/ that checkov's per-resource checks cannot make.

    python infra/tools/bicep_lint.py [DIR]     # DIR holds main.bicep (+ azure.yaml one level up or beside)

Parses every module with pycep (checkov's Bicep parser) and reports, one line each:

  range      a platform-limited property is fed a literal outside the limit, or a
             parameter whose @minValue/@maxValue/@allowed do not sit inside it; or
             main.bicep passes a module a parameter with a wider range than the
             module's (ARM would fail that nested deployment half-way through).
  down-scope a role assignment lies in a resource group `azd down` could delete:
             in a group this template does not create, without azure.yaml
             requiredVersions azd >= 1.24.1 (older azd deletes every group holding a
             deployed resource, Azure/azure-dev#7698); in a group it creates from the
             same name as such a group; or on a pre-existing resource (named from a
             main.bicep parameter) in a group it creates.

Exit 1 when anything is reported. Runs in the infra venv (.ci/infra-check.sh).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

import pycep
import yaml

# (resource type, property path) -> (min, max) or a set of allowed values.
PLATFORM_LIMITS: dict[tuple[str, tuple[str, ...]], tuple[int, int] | frozenset[int]] = {
    # Flex Consumption: 40 (the lowest accepted in most regions) to 1000.
    (
        "Microsoft.Web/sites",
        ("properties", "functionAppConfig", "scaleAndConcurrency", "maximumInstanceCount"),
    ): (
        40,
        1000,
    ),
    ("Microsoft.Web/sites", ("properties", "functionAppConfig", "scaleAndConcurrency", "instanceMemoryMB")): (
        frozenset({512, 2048, 4096})
    ),
    # Always-ready instances per scaling group (`*`: each entry of the array). The
    # platform caps their sum at maximumInstanceCount; 40 is its lowest accepted value,
    # so a count up to 40 can never exceed it.
    (
        "Microsoft.Web/sites",
        ("properties", "functionAppConfig", "scaleAndConcurrency", "alwaysReady", "*", "instanceCount"),
    ): (0, 40),
    ("Microsoft.ServiceBus/namespaces/queues", ("properties", "maxDeliveryCount")): (1, 2000),
    ("Microsoft.ServiceBus/namespaces/topics/subscriptions", ("properties", "maxDeliveryCount")): (1, 2000),
    ("Microsoft.OperationalInsights/workspaces", ("properties", "retentionInDays")): (30, 730),
}
MIN_AZD = (1, 24, 1)
ROLE_TYPE = "Microsoft.Authorization/roleAssignments"
RG_TYPE = "Microsoft.Resources/resourceGroups"


def parse(path: Path) -> dict[str, Any]:
    return _parse_text(path.read_text(encoding="utf-8"))


@functools.cache
def _parse_text(text: str) -> dict[str, Any]:
    # pycep takes ~1 s a file: each text is parsed once (callers must not mutate).
    return pycep.BicepParser().parse(text=text)


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _values(node: Any, path: tuple[str, ...]) -> list[Any]:
    """Like _get, with `*` standing for every item of a list; missing paths give []."""
    if not path:
        return [node]
    key, rest = path[0], path[1:]
    if key == "*":
        return [v for item in node for v in _values(item, rest)] if isinstance(node, list) else []
    if not isinstance(node, dict) or key not in node:
        return []
    return _values(node[key], rest)


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body; a conditional one (`= if (...) {`) nests it once more."""
    config = entry["config"]
    return config["config"] if "condition" in config else config


def param_range(param: dict[str, Any]) -> tuple[int, int] | frozenset[int] | None:
    decorators = {d["type"]: d["argument"] for d in param.get("decorators", [])}
    if "allowed" in decorators:
        return frozenset(decorators["allowed"])
    if "min_value" in decorators and "max_value" in decorators:
        return (int(decorators["min_value"]), int(decorators["max_value"]))
    return None


def _inside(inner: tuple[int, int] | frozenset[int], outer: tuple[int, int] | frozenset[int]) -> bool:
    values_inner = inner if isinstance(inner, frozenset) else None
    if isinstance(outer, frozenset):
        return values_inner is not None and values_inner <= outer
    lo, hi = outer
    if values_inner is not None:
        return all(lo <= v <= hi for v in values_inner)
    return lo <= inner[0] and inner[1] <= hi


def _show(limit: tuple[int, int] | frozenset[int] | None) -> str:
    if limit is None:
        return "no @minValue/@maxValue or @allowed"
    return str(sorted(limit)) if isinstance(limit, frozenset) else f"{limit[0]}..{limit[1]}"


def range_findings(path: Path, parsed: dict[str, Any]) -> list[str]:
    found: list[str] = []
    params = parsed.get("parameters", {})
    for symbol, resource in parsed.get("resources", {}).items():
        for (rtype, prop), limit in PLATFORM_LIMITS.items():
            if resource["type"] != rtype:
                continue
            where = f"{path.name}: {symbol}.{'.'.join(prop[1:])}"
            for value in _values(_body(resource), prop):
                found += _value_findings(where, value, limit, params)
    return found


def _value_findings(
    where: str, value: Any, limit: tuple[int, int] | frozenset[int], params: dict[str, Any]
) -> list[str]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        if not _inside(frozenset({value}), limit):
            return [f"range {where} = {value}, outside the platform's {_show(limit)}"]
        return []
    if isinstance(value, str) and value in params:
        declared = param_range(params[value])
        if declared is None or not _inside(declared, limit):
            return [
                f"range {where} takes param {value} ({_show(declared)}), "
                f"not inside the platform's {_show(limit)}"
            ]
        return []
    return [f"range {where} is an expression: its range cannot be verified"]


def _min_azd(azure_yaml: Path) -> tuple[int, ...] | None:
    if not azure_yaml.exists():
        return None
    data = yaml.safe_load(azure_yaml.read_text(encoding="utf-8")) or {}
    spec = str((data.get("requiredVersions") or {}).get("azd", ""))
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", spec.strip())
    return tuple(int(g) for g in match.groups()) if match else None


def down_findings(main_path: Path, main: dict[str, Any], azure_yaml: Path) -> list[str]:
    found: list[str] = []
    resources = main.get("resources", {})
    created = {s: r for s, r in resources.items() if r["type"] == RG_TYPE and not r.get("existing")}
    created_names = {json.dumps(_body(r).get("name"), sort_keys=True) for r in created.values()}
    min_azd = _min_azd(azure_yaml)
    for symbol, module in main.get("modules", {}).items():
        target = (main_path.parent / module["detail"]["path"]).resolve()
        parsed = parse(target)
        module_resources = parsed.get("resources", {})
        if not any(r["type"] == ROLE_TYPE for r in module_resources.values()):
            continue
        body = _body(module)
        scope = body.get("scope")
        where = f"{main_path.name}: module {symbol} ({target.name})"
        if isinstance(scope, str) and scope in created:
            passed = body.get("params", {})
            for rsym, resource in module_resources.items():
                if not resource.get("existing"):
                    continue
                name = _body(resource).get("name")
                value = passed.get(name) if isinstance(name, str) else None
                if value is not None and ".outputs." not in json.dumps(value):
                    found.append(
                        f"down-scope {where}: role assignments on pre-existing {rsym} "
                        f"(named from {json.dumps(value)}) in resource group {scope}, "
                        "which this template creates and `azd down` deletes"
                    )
            continue
        # Any other scope is a group this template does not create.
        scope_fn = _get(scope, ("function",)) if isinstance(scope, dict) else None
        name_expr = _get(scope_fn, ("parameters", "resource_group_name")) if scope_fn else scope
        if json.dumps(name_expr, sort_keys=True) in created_names:
            found.append(
                f"down-scope {where}: scoped to a group named like one this template creates: "
                "`azd down` would delete it"
            )
        if min_azd is None or min_azd < MIN_AZD:
            found.append(
                f"down-scope {where}: role assignments in a resource group this template does not "
                f"create need azure.yaml requiredVersions azd >= {'.'.join(map(str, MIN_AZD))} "
                "(older azd down deletes that group)"
            )
    return found


def lint(directory: Path) -> list[str]:
    main_path = directory / "main.bicep"
    main = parse(main_path)
    found: list[str] = []
    for path in sorted(directory.rglob("*.bicep")):
        found += range_findings(path, parse(path) if path != main_path else main)
    for symbol, module in main.get("modules", {}).items():
        target = (main_path.parent / module["detail"]["path"]).resolve()
        declared = parse(target).get("parameters", {})
        for name, value in _body(module).get("params", {}).items():
            inner_range = param_range(declared.get(name, {}))
            if inner_range is None or not isinstance(value, str) or value not in main.get("parameters", {}):
                continue
            outer = param_range(main["parameters"][value])
            if outer is None or not _inside(outer, inner_range):
                found.append(
                    f"range {main_path.name}: module {symbol} param {name} ({_show(inner_range)}) "
                    f"takes {value} ({_show(outer)})"
                )
    azure_yaml = next(
        (p for p in (directory / "azure.yaml", directory.parent / "azure.yaml") if p.exists()), None
    )
    found += down_findings(main_path, main, azure_yaml or directory / "azure.yaml")
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "infra")
    found = lint(directory)
    for line in found:
        print(f"bicep_lint: {line}")
    print(f"bicep_lint: {len(found)} finding(s) in {directory}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
