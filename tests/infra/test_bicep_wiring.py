"""What a Bicep compiler would catch, checked offline with pycep (checkov's parser).

No `bicep build` here: these tests parse infra/*.bicep with pycep and check the
wiring between files: module params exist and required ones are passed, referenced
module outputs exist, main.parameters.json matches main.bicep (names, types, @allowed,
defaults), every param and var is used, and azure.yaml names the service the
function app is tagged with. Needs pycep: runs in the infra venv from
.ci/infra-check.sh, skipped elsewhere.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

pycep = pytest.importorskip("pycep", reason="pycep comes with checkov in .venv-infra (.ci/infra-check.sh)")
yaml = pytest.importorskip("yaml")

from ._appsettings import strip_comments  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
AZD_VAR = re.compile(r"^\$\{([A-Z0-9_]+)(?:=([^}]*))?\}$")


@functools.cache
def _parse_cached(path: Path, text: str) -> dict[str, Any]:
    return pycep.BicepParser().parse(text=text)


def _parse(path: Path) -> dict[str, Any]:
    return _parse_cached(path, path.read_text(encoding="utf-8"))


def _config(module: dict[str, Any]) -> dict[str, Any]:
    """A module's body; a conditional module (`= if (...) {`) nests it once more."""
    config = module["config"]
    return config["config"] if "condition" in config else config


def _module_file(module: dict[str, Any]) -> Path:
    return (MAIN.parent / module["detail"]["path"]).resolve()


def module_problems(main_text: str) -> list[str]:
    """Unknown or missing module params, and references to outputs a module lacks."""
    main = pycep.BicepParser().parse(text=main_text)
    problems: list[str] = []
    outputs: dict[str, set[str]] = {}
    for symbol, module in main.get("modules", {}).items():
        target = _module_file(module)
        if not target.exists():
            problems.append(f"module {symbol}: {target} missing")
            continue
        parsed = _parse(target)
        outputs[symbol] = set(parsed.get("outputs", {}))
        declared = parsed.get("parameters", {})
        passed = set(_config(module).get("params", {}))
        for name in sorted(passed - set(declared)):
            problems.append(f"module {symbol}: {target.name} has no param {name}")
        required = {n for n, p in declared.items() if p.get("default") is None}
        for name in sorted(required - passed):
            problems.append(f"module {symbol}: required param {name} of {target.name} not passed")
    for symbol, output in sorted(set(re.findall(r"\b(\w+)\.outputs\.(\w+)", strip_comments(main_text)))):
        if symbol not in outputs or output not in outputs[symbol]:
            problems.append(f"{symbol}.outputs.{output} does not exist")
    return problems


BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
MAIN_TEXT = MAIN.read_text(encoding="utf-8")
MAIN_JSON = _parse(MAIN)
MODULES = MAIN_JSON.get("modules", {})


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_file_parses(path: Path) -> None:
    assert _parse(path)


def test_modules_are_wired_correctly() -> None:
    assert MODULES
    assert module_problems(MAIN_TEXT) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "    principalType: 'ServicePrincipal'\n    allowAutoPoolUpdates",
            "    principalKind: 'x'\n    allowAutoPoolUpdates",
            "module batchAccess: batch-access.bicep has no param principalKind",
        ),
        (
            "    batchAccountName: batchAccountName\n    principalId: identity",
            "    principalId: identity",
            "module batchAccess: required param batchAccountName of batch-access.bicep not passed",
        ),
        (
            "identity.outputs.clientId\n    storageAccountName",
            "identity.outputs.clientIdentifier\n    storageAccountName",
            "identity.outputs.clientIdentifier does not exist",
        ),
    ],
    ids=["unknown-param", "missing-required-param", "missing-output"],
)
def test_wiring_check_fails_on_a_mutated_main(old: str, new: str, problem: str) -> None:
    assert MAIN_TEXT.count(old) == 1, old
    assert problem in module_problems(MAIN_TEXT.replace(old, new))


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_param_and_var_is_used(path: Path) -> None:
    parsed = _parse(path)
    text = strip_comments(path.read_text(encoding="utf-8"))
    names = list(parsed.get("parameters", {})) + list(parsed.get("variables", {}))
    unused = [n for n in names if len(re.findall(rf"(?<![\w.]){re.escape(n)}\b", text)) < 2]
    assert unused == [], f"{path.name}: declared but never used: {unused}"


def _parameters_file() -> dict[str, str]:
    data = json.loads(PARAMETERS.read_text(encoding="utf-8"))
    return {name: entry["value"] for name, entry in data["parameters"].items()}


def test_parameters_file_names_are_main_params_and_cover_required_ones() -> None:
    declared = MAIN_JSON["parameters"]
    given = _parameters_file()
    assert set(given) - set(declared) == set()
    required = {n for n, p in declared.items() if p.get("default") is None}
    assert required - set(given) == set()


@pytest.mark.parametrize("name", sorted(_parameters_file()))
def test_parameters_file_default_fits_the_param(name: str) -> None:
    """`${VAR=default}`: the default parses as the param's type, is @allowed, equals main.bicep's."""
    value = _parameters_file()[name]
    match = AZD_VAR.match(value)
    assert match, f"{name}: {value!r} is not an azd ${{VAR}} / ${{VAR=default}} reference"
    param = MAIN_JSON["parameters"][name]
    if match.group(2) is None:
        return  # no default: azd must provide it (required params; azd's own variables)
    raw = match.group(2)
    typed: Any
    if param["type"] == "int":
        typed = int(raw)
    elif param["type"] == "bool":
        assert raw in ("true", "false"), f"{name}: bool default {raw!r}"
        typed = raw == "true"
    else:
        typed = raw
    allowed = [d["argument"] for d in param.get("decorators", []) if d["type"] == "allowed"]
    if allowed:
        assert typed in allowed[0], f"{name}: default {typed!r} not in @allowed {allowed[0]}"
    if param.get("default") is not None:
        assert typed == param["default"], (
            f"{name}: parameters file {typed!r} != main.bicep {param['default']!r}"
        )


def test_azd_service_matches_the_function_app_tag() -> None:
    azure = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["infra"]["path"] == "infra"
    services = azure["services"]
    assert list(services) == ["api"]
    api = services["api"]
    assert {k: api[k] for k in ("project", "language", "host")} == {
        "project": ".",
        "language": "python",
        "host": "function",
    }
    # Packages are built locally (prepackage hook) and deployed as built.
    assert api["remoteBuild"] is False
    assert "infra/hooks/build_package.py" in api["hooks"]["prepackage"]["run"]
    params = _config(MODULES["functionApp"])["params"]
    assert params["serviceName"] == "api"
    assert "SERVICE_API_NAME" in MAIN_JSON["outputs"]


def test_main_is_subscription_scoped_and_creates_the_resource_group() -> None:
    text = strip_comments(MAIN.read_text(encoding="utf-8"))
    assert re.search(r"^targetScope = 'subscription'$", text, re.M)
    assert [r["type"] for r in MAIN_JSON["resources"].values()] == ["Microsoft.Resources/resourceGroups"]


def test_batch_role_module_is_scoped_to_the_batch_accounts_resource_group() -> None:
    for symbol in ("batchAccess", "userBatchAccess"):
        scope = _config(MODULES[symbol])["scope"]["function"]
        assert scope["type"] == "resource_group"
        assert scope["parameters"] == {
            "subscription_id": "batchSubscriptionId",
            "resource_group_name": "batchResourceGroupName",
        }


def _min_version(spec: str) -> tuple[int, ...]:
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", spec.strip())
    assert match, f"requiredVersions.azd {spec!r} is not a plain `>= x.y.z`"
    return tuple(int(g) for g in match.groups())


def test_azd_version_is_pinned_where_azd_down_spares_existing_groups() -> None:
    """azd < 1.24.1 deletes every group holding a deployed resource (Azure/azure-dev#7698):
    with a role assignment in the Batch account's group that is the Batch account's."""
    azure = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
    assert _min_version(azure["requiredVersions"]["azd"]) >= (1, 24, 1)


@pytest.mark.parametrize("spec", [">= 1.10.0", ">= 1.24.0", "1.24.1", ">= 1.24"])
def test_azd_version_check_refuses_older_or_loose_pins(spec: str) -> None:
    try:
        ok = _min_version(spec) >= (1, 24, 1)
    except AssertionError:
        ok = False
    assert not ok


def test_hooks_run_the_deployment_checks() -> None:
    azure = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["hooks"]["preprovision"]["run"] == "python3 infra/hooks/check_deploy.py preprovision"
    assert azure["hooks"]["postprovision"]["run"] == "python3 infra/hooks/check_deploy.py postprovision"
