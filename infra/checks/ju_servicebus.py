"""Service Bus checks: Entra-only namespace, TLS 1.2, dead-lettering bound, dedup on the topic."""

from __future__ import annotations

from typing import Any

import ju_common
from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult


class ServiceBusLocalAuthDisabled(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Service Bus namespace has local (SAS key) authentication disabled",
            id="CKV_JU_1",
            categories=[CheckCategories.IAM],
            supported_resources=["Microsoft.ServiceBus/namespaces"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "disableLocalAuth")
        return CheckResult.PASSED if value is True else CheckResult.FAILED


class ServiceBusMinimumTls(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Service Bus namespace requires TLS 1.2 or later",
            id="CKV_JU_2",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["Microsoft.ServiceBus/namespaces"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "minimumTlsVersion")
        return CheckResult.PASSED if value in ("1.2", "1.3") else CheckResult.FAILED


class QueueMaxDeliveryCountSet(BaseResourceCheck):
    """The queue names its maxDeliveryCount, the value the function's `given-up` logic relies on."""

    def __init__(self) -> None:
        super().__init__(
            name="Service Bus queue sets maxDeliveryCount explicitly (1-2000)",
            id="CKV_JU_3",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["Microsoft.ServiceBus/namespaces/queues"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "maxDeliveryCount")
        if isinstance(value, bool):
            return CheckResult.FAILED
        if isinstance(value, int):
            return CheckResult.PASSED if 1 <= value <= 2000 else CheckResult.FAILED
        # A parameter without a default stays a name: set, checked by its @minValue/@maxValue.
        return CheckResult.PASSED if ju_common.is_reference(value) else CheckResult.FAILED


class TopicDuplicateDetection(BaseResourceCheck):
    """Re-published outcome events (same CloudEvent id as MessageId) are dropped by the broker."""

    def __init__(self) -> None:
        super().__init__(
            name="Service Bus topic has requiresDuplicateDetection true",
            id="CKV_JU_4",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["Microsoft.ServiceBus/namespaces/topics"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = ju_common.get(conf, "properties", "requiresDuplicateDetection")
        return CheckResult.PASSED if value is True else CheckResult.FAILED


class SubscriptionFilterIsDefaultRule(BaseResourceCheck):
    """A subscription filter must be the `$Default` rule itself.

    Every subscription starts with `$Default` (1=1, every message) and a subscription
    delivers what ANY rule matches. Whether ARM drops `$Default` when another rule is
    created is contested (terraform-provider-azurerm#20718 against pulumi-azure-native
    #4489/#4799 and terraform-provider-azurerm#32452), so a rule under another name may
    sit beside a catch-all. Redefining `$Default` is unambiguous. A second rule beside
    a redefined `$Default` would also be safe: widen this check when one is needed.
    """

    def __init__(self) -> None:
        super().__init__(
            name="Service Bus subscription filter is defined as the $Default rule (no catch-all beside it)",
            id="CKV_JU_12",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["Microsoft.ServiceBus/namespaces/topics/subscriptions/rules"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.PASSED if conf.get("name") == "$Default" else CheckResult.FAILED


check_local_auth = ServiceBusLocalAuthDisabled()
check_tls = ServiceBusMinimumTls()
check_max_delivery = QueueMaxDeliveryCountSet()
check_topic_dedup = TopicDuplicateDetection()
check_default_rule = SubscriptionFilterIsDefaultRule()
