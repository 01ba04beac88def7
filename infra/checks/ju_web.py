"""Function app checks: no keys or connection strings in settings, no basic publishing,
identity-authenticated deployment storage."""

from __future__ import annotations

import re
from typing import Any

import ju_common
from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

# Text that only a key-based secret contains.
SECRET_TEXT = re.compile(
    r"listKeys|listConnectionStrings|listAccountSas|listServiceSas|listCredentials"
    r"|AccountKey=|SharedAccessKey=|SharedAccessSignature=",
    re.IGNORECASE,
)
# App-setting names whose only use is a key or a connection string.
KEY_BASED_SETTINGS = {
    "AzureWebJobsStorage",
    "ServiceBusConnection",
    "BATCH_ACCOUNT_KEY",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}


def _secret_problems(settings_container: Any) -> bool:
    """True if the app settings (or anything beside them) carry a key or connection string."""
    if SECRET_TEXT.search(ju_common.flat(settings_container)):
        return True
    return any(fn.startswith("list") for fn in ju_common.function_types(settings_container))


class AppSettingsWithoutSecrets(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Function app settings hold no keys, listKeys() results or connection strings",
            id="CKV_JU_5",
            categories=[CheckCategories.SECRETS],
            supported_resources=["Microsoft.Web/sites", "Microsoft.Web/sites/config"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if self.entity_type == "Microsoft.Web/sites/config":
            body = conf.get("properties", {})
            names = list(body) if isinstance(body, dict) else []
            if _secret_problems(body) or any(name in KEY_BASED_SETTINGS for name in names):
                return CheckResult.FAILED
            return CheckResult.PASSED

        site_config = ju_common.get(conf, "properties", "siteConfig")
        if site_config is ju_common.MISSING:
            return CheckResult.PASSED
        if _secret_problems(site_config):
            return CheckResult.FAILED
        connection_strings = ju_common.get(site_config, "connectionStrings")
        if connection_strings not in (ju_common.MISSING, None, []):
            return CheckResult.FAILED
        app_settings = ju_common.get(site_config, "appSettings")
        if isinstance(app_settings, list):
            for entry in app_settings:
                if isinstance(entry, dict) and entry.get("name") in KEY_BASED_SETTINGS:
                    return CheckResult.FAILED
        return CheckResult.PASSED


class BasicPublishingCredentialsDisabled(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="FTP/SCM basic-auth publishing credentials are disabled",
            id="CKV_JU_9",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.Web/sites/basicPublishingCredentialsPolicies"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "allow")
        return CheckResult.PASSED if value is False else CheckResult.FAILED


class FlexDeploymentStorageUsesIdentity(BaseResourceCheck):
    """Flex Consumption: the package container is read with the user-assigned identity, not a key."""

    def __init__(self) -> None:
        super().__init__(
            name="Flex Consumption deployment storage is authenticated by the user-assigned identity",
            id="CKV_JU_10",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.Web/sites"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        app_config = ju_common.get(conf, "properties", "functionAppConfig")
        if app_config is ju_common.MISSING:
            # Not a Flex Consumption app: nothing to check.
            return CheckResult.PASSED
        auth = ju_common.get(app_config, "deployment", "storage", "authentication")
        if ju_common.get(auth, "type") != "UserAssignedIdentity":
            return CheckResult.FAILED
        if ju_common.get(auth, "userAssignedIdentityResourceId") in (ju_common.MISSING, None, ""):
            return CheckResult.FAILED
        return CheckResult.PASSED


# siteConfig properties a Flex Consumption site rejects with ARM error 51021 (in the
# regions where the check is rolled out; the others ignore them). Sources: the error
# text quoted in microsoft/azure-pipelines-tasks#21032 and
# Azure/terraform-azurerm-avm-res-web-site#345/#360, azure-functions-host#10643
# (functionAppScaleLimit). Not listed: minimumElasticInstanceCount, still contested
# (terraform-azurerm-avm-res-web-site#353). Compared case-insensitively.
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsstate",
    "use32bitworkerprocess",
    "netframeworkversion",
    "functionsruntimescalemonitoringenabled",
    "prewarmedinstancecount",
    "linuxfxversion",
    "windowsfxversion",
    "functionappscalelimit",
    "alwayson",
}
# App settings Flex takes from functionAppConfig instead, and rejects.
FLEX_REJECTED_APP_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}


class FlexSiteConfigAccepted(BaseResourceCheck):
    """A Flex Consumption site (it has functionAppConfig) sets nothing Flex rejects."""

    def __init__(self) -> None:
        super().__init__(
            name="Flex Consumption site sets no siteConfig property or app setting Flex rejects",
            id="CKV_JU_11",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["Microsoft.Web/sites"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if ju_common.get(conf, "properties", "functionAppConfig") is ju_common.MISSING:
            return CheckResult.PASSED  # not Flex Consumption
        site_config = ju_common.get(conf, "properties", "siteConfig")
        if not isinstance(site_config, dict):
            return CheckResult.PASSED
        if any(str(key).lower() in FLEX_REJECTED_SITE_CONFIG for key in site_config):
            return CheckResult.FAILED
        app_settings = site_config.get("appSettings")
        if isinstance(app_settings, list):
            for entry in app_settings:
                if isinstance(entry, dict) and entry.get("name") in FLEX_REJECTED_APP_SETTINGS:
                    return CheckResult.FAILED
        return CheckResult.PASSED


check_app_settings = AppSettingsWithoutSecrets()
check_basic_publishing = BasicPublishingCredentialsDisabled()
check_deployment_storage = FlexDeploymentStorageUsesIdentity()
check_flex_site_config = FlexSiteConfigAccepted()
