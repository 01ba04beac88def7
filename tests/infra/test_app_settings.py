"""infra/ sets exactly the app settings handlers/settings.py knows, and all it requires.

The names come from the Bicep source (`siteConfig.appSettings` in
infra/app/function.bicep) through the scanner in `_appsettings.py`; the reference is
`handlers.settings`: every field alias, REQUIRED_IN_AZURE and HOST_SETTINGS. The
mutation tests below prove the comparison fails on a missing, unknown or duplicated
name and on shapes the scanner cannot verify. Runs in the main test run (needs the
app's dependencies for handlers.settings; no checkov).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ._appsettings import compare, scan_paths, scan_text

pydantic_settings = pytest.importorskip("pydantic_settings")

from handlers import settings as app_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
FUNCTION_BICEP = INFRA / "app" / "function.bicep"
MAIN_BICEP = INFRA / "main.bicep"

ALIASES = {f.alias for f in app_settings.Settings.model_fields.values() if f.alias}
REQUIRED = tuple(app_settings.REQUIRED_IN_AZURE)
HOST = tuple(app_settings.HOST_SETTINGS)


def _infra_scan():
    return scan_paths(sorted(INFRA.rglob("*.bicep")), REPO)


def _entry(name: str, value: str = "'x'") -> str:
    return f"        {{\n          name: '{name}'\n          value: {value}\n        }}\n"


def _remove_entry(text: str, name: str) -> str:
    pattern = re.compile(r"\s*\{\s*name: '" + re.escape(name) + r"'\s*value: [^\n]*\s*\}")
    new, count = pattern.subn("", text)
    assert count == 1, f"{name} not found exactly once in function.bicep"
    return new


def _add_entry(text: str, entry: str) -> str:
    marker = "      appSettings: [\n"
    assert text.count(marker) == 1
    return text.replace(marker, marker + entry)


# --- the real infra ---------------------------------------------------------------


def test_scanner_reads_infra_without_errors() -> None:
    scan = _infra_scan()
    assert scan.errors == []
    assert scan.settings, "no app settings found in infra/"
    assert {s.file for s in scan.settings} == {"infra/app/function.bicep"}


def test_infra_sets_every_required_setting_and_nothing_unknown() -> None:
    assert compare(_infra_scan().names, ALIASES, REQUIRED, HOST) == []


def test_no_key_based_or_flex_rejected_settings() -> None:
    names = set(_infra_scan().names)
    forbidden = {
        "AzureWebJobsStorage",  # key-based connection string form
        "ServiceBusConnection",  # connection string (local runs only)
        "BATCH_ACCOUNT_KEY",
        "FUNCTIONS_WORKER_RUNTIME",  # Flex Consumption rejects these four
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    }
    assert names & forbidden == set()


def test_identity_settings_have_the_expected_literal_values() -> None:
    by_name = {s.name: s for s in _infra_scan().settings}
    assert by_name["ServiceBusConnection__credential"].literal == "managedidentity"
    assert by_name["AzureWebJobsStorage__credential"].literal == "managedidentity"
    assert by_name["OUTCOME_TOPIC_REQUIRES_SESSION"].literal == "false"
    assert by_name["BATCH_AUTH_MODE"].literal == "entra"
    client_id = by_name["AZURE_CLIENT_ID"].value
    for name in ("ServiceBusConnection__clientId", "AzureWebJobsStorage__clientId"):
        assert by_name[name].value == client_id, f"{name} must be the same identity as AZURE_CLIENT_ID"
    assert by_name["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].value == (
        "'ClientId=${" + client_id + "};Authorization=AAD'"
    )


def test_max_delivery_count_setting_is_the_queue_parameter() -> None:
    """JOB_UPDATES_MAX_DELIVERY_COUNT and the queue's maxDeliveryCount come from ONE main.bicep param."""
    by_name = {s.name: s for s in _infra_scan().settings}
    assert by_name["JOB_UPDATES_MAX_DELIVERY_COUNT"].value == "string(jobUpdatesMaxDeliveryCount)"
    main = MAIN_BICEP.read_text(encoding="utf-8")
    assert re.search(r"^\s*queueMaxDeliveryCount: queueMaxDeliveryCount$", main, re.M)
    assert re.search(r"^\s*jobUpdatesMaxDeliveryCount: queueMaxDeliveryCount$", main, re.M)
    assert re.search(r"^\s*jobUpdatesSessionsEnabled: queueRequiresSession$", main, re.M)
    assert re.search(r"^\s*queueRequiresSession: queueRequiresSession$", main, re.M)
    # The role that lets the function schedule retry copies follows the same switch.
    assert re.search(r"^\s*scheduledRetries: scheduledRetries$", main, re.M)
    assert "if (scheduledRetries && !queueRequiresSession)" in main


def test_settlement_setting_is_a_main_parameter_defaulting_to_host() -> None:
    """JOB_UPDATES_SETTLEMENT: one azd parameter, passed through, `host` unless asked."""
    by_name = {s.name: s for s in _infra_scan().settings}
    assert by_name["JOB_UPDATES_SETTLEMENT"].value == "settlement"
    main = MAIN_BICEP.read_text(encoding="utf-8")
    assert re.search(r"^\s*settlement: settlement$", main, re.M)
    assert re.search(r"^param settlement string = 'host'$", main, re.M)
    params = (MAIN_BICEP.parent / "main.parameters.json").read_text(encoding="utf-8")
    assert "${JOB_UPDATES_SETTLEMENT=host}" in params
    allowed = {mode.value for mode in app_settings.SettlementMode}
    assert re.search(r"@allowed\(\['host', 'actions'\]\)\nparam settlement ", main)
    assert allowed == {"host", "actions"}


def test_infra_settings_build_a_valid_settings_object() -> None:
    """Literal values as written, expressions replaced by what Azure would put there."""
    samples = {
        "BATCH_ALLOWED_ENDPOINTS": "https://acct.westeurope.batch.azure.com",
        "BATCH_DEFAULT_ENDPOINT": "https://acct.westeurope.batch.azure.com",
        "JOB_UPDATES_MAX_DELIVERY_COUNT": "10",
        "JOB_UPDATES_SESSIONS_ENABLED": "false",
        "JOB_UPDATES_SCHEDULED_RETRIES": "true",
        "JOB_UPDATES_SETTLEMENT": "host",
        "BATCH_RETRY_BUDGET_SECONDS": "60",
        "BATCH_API_VERSION": "2025-06-01",
        "ServiceBusConnection__fullyQualifiedNamespace": "sb-x.servicebus.windows.net",
    }
    env = {}
    for setting in _infra_scan().settings:
        if setting.name not in ALIASES:
            continue
        env[setting.name] = setting.literal if setting.literal is not None else samples.get(setting.name, "x")
    built = app_settings.Settings(**env)
    assert built.max_delivery_count == 10
    assert built.outcome_topic_requires_session is False


def test_pycep_reads_the_same_names() -> None:
    """Cross-check the scanner with checkov's own Bicep parser where it is installed."""
    pycep = pytest.importorskip("pycep")
    parsed = pycep.BicepParser().parse(text=FUNCTION_BICEP.read_text(encoding="utf-8"))
    sites = [r for r in parsed["resources"].values() if r["type"] == "Microsoft.Web/sites"]
    assert len(sites) == 1
    names = [e["name"] for e in sites[0]["config"]["properties"]["siteConfig"]["appSettings"]]
    assert names == scan_text(FUNCTION_BICEP.read_text(encoding="utf-8")).names


# --- the comparison can fail (mutated copies) ---------------------------------------


def _problems(text: str, required: tuple[str, ...] = REQUIRED) -> list[str]:
    scan = scan_text(text, "function.bicep (mutated)")
    assert scan.errors == []
    return compare(scan.names, ALIASES, required, HOST)


def test_fails_when_a_required_setting_is_removed() -> None:
    text = FUNCTION_BICEP.read_text(encoding="utf-8")
    for name in REQUIRED:
        problems = _problems(_remove_entry(text, name))
        assert problems == [f"{name}: in handlers.settings.REQUIRED_IN_AZURE but not set by infra"]


def test_fails_when_infra_sets_an_unknown_setting() -> None:
    text = _add_entry(FUNCTION_BICEP.read_text(encoding="utf-8"), _entry("JOB_UPDATES_QUEUE_TYPO"))
    assert _problems(text) == [
        "JOB_UPDATES_QUEUE_TYPO: set by infra but neither a Settings alias nor in HOST_SETTINGS"
    ]


def test_fails_when_a_setting_is_set_twice() -> None:
    text = _add_entry(FUNCTION_BICEP.read_text(encoding="utf-8"), _entry("OUTCOME_TOPIC"))
    assert _problems(text) == ["OUTCOME_TOPIC: set twice by infra"]


def test_fails_when_the_settings_class_gains_a_required_setting() -> None:
    text = FUNCTION_BICEP.read_text(encoding="utf-8")
    assert _problems(text, (*REQUIRED, "NEW_REQUIRED_SETTING")) == [
        "NEW_REQUIRED_SETTING: in handlers.settings.REQUIRED_IN_AZURE but not set by infra"
    ]


@pytest.mark.parametrize(
    ("mutation", "error"),
    [
        (
            lambda t: t.replace("appSettings: [", "appSettings: allSettings\n      unused: ["),
            "not a literal list",
        ),
        (
            lambda t: t.replace(
                "appSettings: [",
                "appSettings: [for s in items(extra): {\n  name: s.key\n  value: s.value\n}]\n"
                "      unused: [",
            ),
            "`for` expression",
        ),
        (lambda t: t.replace("name: 'OUTCOME_TOPIC'", "name: topicSettingName"), "not a plain literal"),
        (lambda t: t.replace("name: 'OUTCOME_TOPIC'", "name: 'OUTCOME_${x}'"), "not a plain literal"),
        (lambda t: t.replace("name: 'OUTCOME_TOPIC'", "nam: 'OUTCOME_TOPIC'"), "needs `name` and `value`"),
        (
            lambda t: (
                t + "\nresource cfg 'Microsoft.Web/sites/config@2024-04-01' = {\n  name: 'appsettings'\n}\n"
            ),
            "Microsoft.Web/sites/config",
        ),
    ],
    ids=[
        "variable-list",
        "for-list",
        "name-reference",
        "name-interpolated",
        "missing-name",
        "config-resource",
    ],
)
def test_unverifiable_shapes_are_errors(mutation, error: str) -> None:
    scan = scan_text(mutation(FUNCTION_BICEP.read_text(encoding="utf-8")))
    assert any(error in e for e in scan.errors), scan.errors


def test_scanner_ignores_comments_and_strings() -> None:
    text = """
    // appSettings: [ { name: 'COMMENTED' value: 'x' } ]
    var s = 'appSettings: [ { name: \\'IN_STRING\\' value: \\'x\\' } ]'
    /* appSettings: [
         { name: 'BLOCK' value: 'x' } ] */
    resource site 'Microsoft.Web/sites@2024-04-01' = {
      properties: {
        siteConfig: {
          appSettings: [
            {
              name: 'REAL' // trailing comment with 'quote
              value: 'https://example.org/${x}' // a // inside a string is not a comment
            }
          ]
        }
      }
    }
    """
    scan = scan_text(text)
    assert scan.errors == []
    assert scan.names == ["REAL"]
    assert scan.settings[0].value == "'https://example.org/${x}'"


# --- numeric limits: every module, not only main.bicep -------------------------------

PARAM_DECORATOR = re.compile(r"^@(minValue|maxValue)\((-?\d+)\)\s*$")


def param_bounds(text: str, name: str) -> tuple[int | None, int | None]:
    """(@minValue, @maxValue) of `param <name>` in a Bicep text (None where absent)."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"^param {re.escape(name)}\b", line))
    bounds: dict[str, int] = {}
    for line in reversed(lines[:index]):
        if not line.startswith("@"):
            break
        match = PARAM_DECORATOR.match(line.strip())
        if match:
            bounds[match.group(1)] = int(match.group(2))
    return bounds.get("minValue"), bounds.get("maxValue")


def field_bounds(alias: str) -> tuple[float | None, float | None, bool]:
    """(lower, upper, lower exclusive) of the Settings field behind an app setting."""
    field = next(f for f in app_settings.Settings.model_fields.values() if f.alias == alias)
    lower = upper = None
    exclusive = False
    for item in field.metadata:
        if getattr(item, "ge", None) is not None:
            lower = item.ge
        if getattr(item, "gt", None) is not None:
            lower, exclusive = item.gt, True
        if getattr(item, "le", None) is not None:
            upper = item.le
    return lower, upper, exclusive


def limit_problems(texts: dict[str, str]) -> list[str]:
    """Params that feed a bounded setting (in function.bicep, and the main.bicep params
    passed to them) allow a value the Settings class refuses."""
    problems: list[str] = []
    function_text = texts["app/function.bicep"]
    for setting in scan_text(function_text).settings:
        match = re.fullmatch(r"string\((\w+)\)", setting.value)
        if setting.name not in ALIASES or not match:
            continue
        lower, upper, exclusive = field_bounds(setting.name)
        if lower is None and upper is None:
            continue
        chain = [("app/function.bicep", match.group(1))]
        passed = re.search(rf"^\s*{match.group(1)}: (\w+)$", texts["main.bicep"], re.M)
        if passed:
            chain.append(("main.bicep", passed.group(1)))
        for file, param in chain:
            low, high = param_bounds(texts[file], param)
            if lower is not None and (low is None or low < lower or (exclusive and low <= lower)):
                problems.append(f"{file} {param}: @minValue {low} allows what {setting.name} refuses")
            if upper is not None and (high is None or high > upper):
                problems.append(f"{file} {param}: @maxValue {high} allows what {setting.name} refuses")
    return problems


def _texts() -> dict[str, str]:
    return {str(p.relative_to(INFRA)): p.read_text(encoding="utf-8") for p in INFRA.rglob("*.bicep")}


def test_bicep_limits_agree_with_the_settings_class_in_every_module() -> None:
    """infra must not allow a value the function refuses (e.g. a retry budget that
    outlives the lock), in the module that sets the app setting and in main.bicep."""
    assert limit_problems(_texts()) == []


def test_the_limit_check_covers_the_bounded_settings() -> None:
    bounded = {
        s.name
        for s in _infra_scan().settings
        if s.name in ALIASES and field_bounds(s.name) != (None, None, False)
    }
    assert {"BATCH_RETRY_BUDGET_SECONDS", "JOB_UPDATES_MAX_DELIVERY_COUNT"} <= bounded


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        (
            "app/function.bicep",
            "@maxValue(240)\nparam batchRetryBudgetSeconds",
            "@maxValue(600)\nparam batchRetryBudgetSeconds",
            "app/function.bicep batchRetryBudgetSeconds: @maxValue 600",
        ),
        (
            "main.bicep",
            "@maxValue(240)\nparam batchRetryBudgetSeconds",
            "@maxValue(300)\nparam batchRetryBudgetSeconds",
            "main.bicep batchRetryBudgetSeconds: @maxValue 300",
        ),
        (
            "app/function.bicep",
            "@minValue(1)\n@maxValue(2000)\nparam jobUpdatesMaxDeliveryCount",
            "@maxValue(2000)\nparam jobUpdatesMaxDeliveryCount",
            "app/function.bicep jobUpdatesMaxDeliveryCount: @minValue None",
        ),
    ],
    ids=["module-max-too-high", "main-max-too-high", "module-min-missing"],
)
def test_limit_check_fails_on_a_mutated_module(file: str, old: str, new: str, problem: str) -> None:
    texts = _texts()
    assert texts[file].count(old) == 1, old
    texts[file] = texts[file].replace(old, new)
    found = limit_problems(texts)
    assert any(p.startswith(problem) for p in found), found
