"""infra/hooks/check_deploy.py refuses the deployments it must, and passes the normal one."""

from __future__ import annotations

import pytest

from infra.hooks import check_deploy

SUB = "00000000-0000-0000-0000-000000000001"
BATCH_ID = f"/subscriptions/{SUB}/resourceGroups/rg-batch/providers/Microsoft.Batch/batchAccounts/acct"
ENV = {"AZURE_ENV_NAME": "prod", "AZURE_SUBSCRIPTION_ID": SUB, "BATCH_ACCOUNT_RESOURCE_ID": BATCH_ID}
GOOD_OUTPUTS = {
    "BATCH_ACCOUNT_AUTH_MODES": '["SharedKey","AAD"]',
    "BATCH_ACCOUNT_PUBLIC_NETWORK_ACCESS": "Enabled",
    "BATCH_ACCOUNT_NETWORK_DEFAULT_ACTION": "Allow",
}


def test_preprovision_passes_a_separate_resource_group() -> None:
    assert check_deploy.preprovision(ENV) == []
    assert check_deploy.main(["preprovision"], ENV) == 0


@pytest.mark.parametrize("name", ["rg-batch", "RG-Batch"])
def test_preprovision_refuses_the_batch_accounts_resource_group(name: str) -> None:
    errors = check_deploy.preprovision({**ENV, "AZURE_RESOURCE_GROUP_NAME": name})
    assert len(errors) == 1 and "azd down" in errors[0]
    assert check_deploy.main(["preprovision"], {**ENV, "AZURE_RESOURCE_GROUP_NAME": name}) == 1


def test_preprovision_refuses_the_default_name_when_it_is_the_batch_group() -> None:
    env = {**ENV, "AZURE_ENV_NAME": "batch"}  # rg-<env> = rg-batch
    assert check_deploy.preprovision(env) != []


def test_preprovision_allows_the_same_group_name_in_another_subscription() -> None:
    env = {**ENV, "AZURE_RESOURCE_GROUP_NAME": "rg-batch", "AZURE_SUBSCRIPTION_ID": SUB[:-1] + "2"}
    assert check_deploy.preprovision(env) == []


@pytest.mark.parametrize(
    "batch_id",
    ["", "acct", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"],
)
def test_preprovision_refuses_a_malformed_batch_id(batch_id: str) -> None:
    assert check_deploy.preprovision({**ENV, "BATCH_ACCOUNT_RESOURCE_ID": batch_id}) != []


def test_postprovision_passes_an_account_that_admits_the_app() -> None:
    assert check_deploy.postprovision(GOOD_OUTPUTS) == ([], [])
    assert check_deploy.main(["postprovision"], GOOD_OUTPUTS) == 0


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"BATCH_ACCOUNT_AUTH_MODES": '["SharedKey"]'}, "not AAD"),
        ({"BATCH_ACCOUNT_AUTH_MODES": "SharedKey,TaskAuthenticationToken"}, "not AAD"),
        ({"BATCH_ACCOUNT_PUBLIC_NETWORK_ACCESS": "Disabled"}, "Disabled"),
        ({"BATCH_ACCOUNT_NETWORK_DEFAULT_ACTION": "Deny"}, "denies by default"),
    ],
    ids=["no-aad-json", "no-aad-csv", "public-access-disabled", "default-deny"],
)
def test_postprovision_refuses_an_account_the_app_cannot_use(override: dict[str, str], needle: str) -> None:
    errors, _ = check_deploy.postprovision({**GOOD_OUTPUTS, **override})
    assert len(errors) == 1 and needle in errors[0]
    assert check_deploy.main(["postprovision"], {**GOOD_OUTPUTS, **override}) == 1


def test_postprovision_warns_when_the_account_reports_nothing() -> None:
    errors, warnings = check_deploy.postprovision({**GOOD_OUTPUTS, "BATCH_ACCOUNT_AUTH_MODES": "[]"})
    assert errors == [] and len(warnings) == 1
    errors, warnings = check_deploy.postprovision(
        {**GOOD_OUTPUTS, "BATCH_ACCOUNT_PUBLIC_NETWORK_ACCESS": "SecuredByPerimeter"}
    )
    assert errors == [] and len(warnings) == 1


def test_unknown_command_is_a_usage_error() -> None:
    assert check_deploy.main(["provision"], {}) == 2


def test_the_outputs_it_reads_are_main_bicep_outputs() -> None:
    """A renamed output would silently read as the default: the names must exist."""
    from pathlib import Path

    main = (Path(__file__).resolve().parents[2] / "infra" / "main.bicep").read_text(encoding="utf-8")
    for name in GOOD_OUTPUTS:
        assert f"output {name} " in main, name
