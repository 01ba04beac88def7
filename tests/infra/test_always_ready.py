"""The always-ready option reaches the site: azd variable -> main.bicep param -> module
param -> `functionAppConfig.scaleAndConcurrency.alwaysReady` of the Flex site, named
`function:<the trigger's function name>`.

The wiring tests parse the Bicep with pycep (infra venv, .ci/infra-check.sh); the
function-name test indexes function_app.py with azure-functions (main test run). Each
check is also run on a mutated copy to show it fails.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION = INFRA / "app" / "function.bicep"
PARAMETERS = INFRA / "main.parameters.json"
PARAM = "alwaysReadyInstanceCount"
AZD_VARIABLE = "FUNCTION_ALWAYS_READY_INSTANCES"
DEFAULT = 1  # one warm instance: see docs/deploy.md, "Always-ready instances"
SITE_ENTRY = re.compile(r"name: 'function:(\w+)'\s*\n\s*instanceCount: (\w+)")


def _pycep() -> Any:
    return pytest.importorskip("pycep", reason="pycep comes with checkov in .venv-infra (.ci/infra-check.sh)")


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    config = entry["config"]
    return config["config"] if "condition" in config else config


def _decorators(param: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d["argument"] for d in param.get("decorators", [])}


def always_ready_problems(
    main_text: str, function_text: str, parameters_text: str, function_name: str
) -> list[str]:
    """Why the always-ready count would not reach the site as configured, if it would not."""
    parser = _pycep().BicepParser()
    main, module = parser.parse(text=main_text), parser.parse(text=function_text)
    problems: list[str] = []

    declared = main.get("parameters", {}).get(PARAM)
    if declared is None:
        return [f"main.bicep has no param {PARAM}"]
    if declared.get("type") != "int" or declared.get("default") != DEFAULT:
        problems.append(
            f"main.bicep {PARAM}: want int = {DEFAULT}, "
            f"got {declared.get('type')} = {declared.get('default')}"
        )
    given = json.loads(parameters_text)["parameters"].get(PARAM, {}).get("value")
    if given != f"${{{AZD_VARIABLE}={DEFAULT}}}":
        problems.append(f"main.parameters.json {PARAM}: want ${{{AZD_VARIABLE}={DEFAULT}}}, got {given!r}")

    modules = main.get("modules", {})
    function_app = modules.get("functionApp")
    if function_app is None or not function_app["detail"]["path"].endswith("app/function.bicep"):
        return [*problems, "main.bicep has no functionApp module for app/function.bicep"]
    passed = _body(function_app).get("params", {}).get(PARAM)
    if passed != PARAM:
        problems.append(f"module functionApp: {PARAM} is passed {passed!r}, not main's {PARAM}")

    module_param = module.get("parameters", {}).get(PARAM)
    if module_param is None:
        problems.append(f"function.bicep has no param {PARAM}")
    else:
        bounds = _decorators(module_param)
        outer = _decorators(declared)
        if (bounds.get("min_value"), bounds.get("max_value")) != (
            outer.get("min_value"),
            outer.get("max_value"),
        ):
            problems.append(f"{PARAM}: main.bicep and function.bicep ranges differ")
    sites = [r for r in module.get("resources", {}).values() if r["type"] == "Microsoft.Web/sites"]
    if len(sites) != 1:
        return [*problems, f"function.bicep: {len(sites)} sites, want 1"]
    scale = _body(sites[0]).get("properties", {}).get("functionAppConfig", {}).get("scaleAndConcurrency", {})
    want = [{"name": f"function:{function_name}", "instanceCount": PARAM}]
    if scale.get("alwaysReady") != want:
        problems.append(f"site alwaysReady: want {want}, got {scale.get('alwaysReady')!r}")
    return problems


def _texts() -> tuple[str, str, str]:
    return (
        MAIN.read_text(encoding="utf-8"),
        FUNCTION.read_text(encoding="utf-8"),
        PARAMETERS.read_text(encoding="utf-8"),
    )


def test_the_always_ready_count_reaches_the_site() -> None:
    assert always_ready_problems(*_texts(), "job_update") == []


@pytest.mark.parametrize(
    ("where", "old", "new", "problem"),
    [
        (1, "    alwaysReadyInstanceCount: alwaysReadyInstanceCount\n", "", "is passed None"),
        (
            1,
            "    alwaysReadyInstanceCount: alwaysReadyInstanceCount\n",
            "    alwaysReadyInstanceCount: 0\n",
            "is passed 0",
        ),
        (
            0,
            "param alwaysReadyInstanceCount int = 1",
            "param alwaysReadyInstanceCount int = 0",
            "want int = 1",
        ),
        (
            2,
            "${FUNCTION_ALWAYS_READY_INSTANCES=1}",
            "${FUNCTION_ALWAYS_READY_INSTANCES=0}",
            "main.parameters.json",
        ),
        (3, "name: 'function:job_update'", "name: 'function:jobupdate'", "site alwaysReady"),
        (3, "instanceCount: alwaysReadyInstanceCount", "instanceCount: 1", "site alwaysReady"),
        (
            3,
            "@maxValue(40)\nparam alwaysReadyInstanceCount",
            "@maxValue(100)\nparam alwaysReadyInstanceCount",
            "ranges differ",
        ),
    ],
    ids=[
        "not-passed",
        "passed-a-literal",
        "main-default",
        "azd-default",
        "wrong-function",
        "literal-count",
        "range",
    ],
)
def test_the_check_fails_on_a_mutated_infra(where: int, old: str, new: str, problem: str) -> None:
    main, module, parameters = _texts()
    # where: 0 main.bicep's param, 1 main.bicep's module call, 2 parameters, 3 function.bicep
    texts = [main, main, parameters, module]
    assert texts[where].count(old) == 1, old
    mutated = texts[where].replace(old, new)
    main_text = mutated if where in (0, 1) else main
    args = (main_text, mutated if where == 3 else module, mutated if where == 2 else parameters)
    problems = always_ready_problems(*args, "job_update")
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        (
            "@maxValue(40)\nparam alwaysReadyInstanceCount",
            "@maxValue(1000)\nparam alwaysReadyInstanceCount",
            "range function.bicep: site.",
        ),
        ("instanceCount: alwaysReadyInstanceCount", "instanceCount: 41", "range function.bicep: site."),
    ],
    ids=["param-range", "literal"],
)
def test_bicep_lint_holds_the_count_inside_the_lowest_maximum(
    tmp_path: Path, old: str, new: str, finding: str
) -> None:
    _pycep()
    sys.path.insert(0, str(INFRA / "tools"))
    import bicep_lint

    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("checks", "tools", "hooks"))
    shutil.copy(REPO / "azure.yaml", tmp_path / "azure.yaml")
    target = copy / "app" / "function.bicep"
    text = target.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    target.write_text(text.replace(old, new), encoding="utf-8")
    findings = bicep_lint.lint(copy)
    assert any(f.startswith(finding) and "alwaysReady" in f for f in findings), findings


def test_the_site_names_the_function_that_function_app_py_defines() -> None:
    """Plain text on the Bicep side, so this runs in the main test run (no pycep)."""
    pytest.importorskip("azure.functions")
    entries = SITE_ENTRY.findall(FUNCTION.read_text(encoding="utf-8"))
    assert entries == [("job_update", PARAM)]
    spec = importlib.util.spec_from_file_location("function_app_always_ready", REPO / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = [f.get_function_name() for f in module.app.get_functions()]
    assert names == [entries[0][0]]
