"""Role assignments use only the intended built-in roles; storage and App Insights are Entra-only."""

from __future__ import annotations

from typing import Any

import ju_common
from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult


class RoleAssignmentIntendedRoles(BaseResourceCheck):
    """Every roleDefinitionId names, literally, only roles from ju_common.INTENDED_ROLE_IDS.

    A role id passed in through a parameter or variable cannot be verified offline and
    fails: write the GUID in the assignment (a ternary between two allowed GUIDs is fine).
    """

    def __init__(self) -> None:
        super().__init__(
            name="Role assignments use only the intended built-in data roles (literal GUIDs)",
            id="CKV_JU_6",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.Authorization/roleAssignments"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        found = ju_common.role_ids(ju_common.get(conf, "properties", "roleDefinitionId"))
        if not found:
            return CheckResult.FAILED
        if all(role in ju_common.INTENDED_ROLE_IDS for role in found):
            return CheckResult.PASSED
        return CheckResult.FAILED


class StorageEntraOnly(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Storage account: no shared keys, no public blob access, HTTPS only, TLS 1.2",
            id="CKV_JU_7",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.Storage/storageAccounts"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        props = ju_common.get(conf, "properties")
        ok = (
            ju_common.get(props, "allowSharedKeyAccess") is False
            and ju_common.get(props, "allowBlobPublicAccess") is False
            and ju_common.get(props, "supportsHttpsTrafficOnly") is True
            and ju_common.get(props, "minimumTlsVersion") in ("TLS1_2", "TLS1_3")
        )
        return CheckResult.PASSED if ok else CheckResult.FAILED


class AppInsightsLocalAuthDisabled(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Application Insights accepts only Entra-authenticated telemetry",
            id="CKV_JU_8",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.Insights/components"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "DisableLocalAuth")
        return CheckResult.PASSED if value is True else CheckResult.FAILED


check_roles = RoleAssignmentIntendedRoles()
check_storage = StorageEntraOnly()
check_app_insights = AppInsightsLocalAuthDisabled()
