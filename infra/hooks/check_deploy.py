"""azd hooks: refuse a deployment that would fail in Azure or harm the Batch account.

    python3 infra/hooks/check_deploy.py preprovision    # before ARM sees the template
    python3 infra/hooks/check_deploy.py postprovision   # on main.bicep's outputs

azd passes the environment's values (and, after provisioning, the template's outputs)
as environment variables. Stdlib only: it runs before any venv exists.

preprovision: BATCH_ACCOUNT_RESOURCE_ID is a Batch account id, and the resource group
  this deployment creates is not the Batch account's: ARM would take the existing group
  as created by the deployment, and `azd down` deletes what it created, account included.
postprovision: the account accepts Entra tokens (allowedAuthenticationModes has AAD)
  and lets the app in over its public endpoint (the app has no VNet integration, so its
  outbound addresses are not fixed). Otherwise provisioning succeeds and every PATCH
  fails with 401 or 403; this stops `azd up` before the deploy instead.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping

BATCH_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Batch/batchAccounts/(?P<name>[a-z0-9]{3,24})$",
    re.IGNORECASE,
)


def app_resource_group(env: Mapping[str, str]) -> str:
    """The group main.bicep creates: resourceGroupName, or rg-<environment name>."""
    return env.get("AZURE_RESOURCE_GROUP_NAME") or f"rg-{env.get('AZURE_ENV_NAME', '')}"


def preprovision(env: Mapping[str, str]) -> list[str]:
    batch_id = env.get("BATCH_ACCOUNT_RESOURCE_ID", "").strip()
    match = BATCH_ID.match(batch_id)
    if not match:
        return [
            "BATCH_ACCOUNT_RESOURCE_ID must be /subscriptions/<id>/resourceGroups/<rg>"
            f"/providers/Microsoft.Batch/batchAccounts/<name>, got {batch_id!r}"
        ]
    same_subscription = match["sub"].lower() == env.get("AZURE_SUBSCRIPTION_ID", "").lower()
    if same_subscription and match["rg"].lower() == app_resource_group(env).lower():
        return [
            f"the app's resource group {app_resource_group(env)!r} is the Batch account's: "
            "`azd down` would delete it with the account. Set AZURE_RESOURCE_GROUP_NAME "
            "to another (new) group"
        ]
    return []


def _modes(raw: str) -> list[str]:
    """An array output as azd stores it (JSON), or a comma-separated list."""
    raw = raw.strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.split(",")
    return [str(v).strip() for v in value] if isinstance(value, list) else [str(value)]


def postprovision(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the Batch account as main.bicep read it."""
    errors: list[str] = []
    warnings: list[str] = []
    modes = _modes(env.get("BATCH_ACCOUNT_AUTH_MODES", ""))
    if not modes:
        warnings.append(
            "the Batch account reports no allowedAuthenticationModes: check that it accepts "
            "Microsoft Entra ID (AAD)"
        )
    elif "aad" not in {m.lower() for m in modes}:
        errors.append(
            f"the Batch account allows {modes} but not AAD: the function authenticates with "
            "Entra tokens only. Add AAD (az batch account update --allowed-authentication-modes)"
        )
    public = env.get("BATCH_ACCOUNT_PUBLIC_NETWORK_ACCESS", "Enabled") or "Enabled"
    if public.lower() == "disabled":
        errors.append(
            "the Batch account has public network access Disabled: the app (no VNet "
            "integration) cannot reach it"
        )
    elif public.lower() != "enabled":
        warnings.append(
            f"the Batch account's public network access is {public}: make sure the perimeter "
            "admits the function app"
        )
    if (env.get("BATCH_ACCOUNT_NETWORK_DEFAULT_ACTION", "Allow") or "Allow").lower() == "deny":
        errors.append(
            "the Batch account endpoint denies by default (networkProfile.accountAccess): "
            "Flex Consumption outbound addresses are not fixed without VNet integration, "
            "so no IP rule can admit the app"
        )
    return errors, warnings


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    values = os.environ if env is None else env
    warnings: list[str] = []
    if args == ["preprovision"]:
        errors = preprovision(values)
    elif args == ["postprovision"]:
        errors, warnings = postprovision(values)
    else:
        print("usage: check_deploy.py preprovision|postprovision", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"check_deploy {args[0]}: warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"check_deploy {args[0]}: {error}", file=sys.stderr)
    if not errors:
        print(f"check_deploy {args[0]}: OK")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
