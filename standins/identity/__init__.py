"""Local managed-identity token endpoint (App Service / Functions protocol).

See README.md beside this file. Typical use in a test::

    with TokenEndpoint(signing_key=b"k" * 32) as tokens:
        monkeypatch.setenv("IDENTITY_ENDPOINT", tokens.env["IDENTITY_ENDPOINT"])
        monkeypatch.setenv("IDENTITY_HEADER", tokens.env["IDENTITY_HEADER"])
"""

from standins.identity.endpoint import API_VERSION, DEFAULT_CLIENT_ID, TokenEndpoint
from standins.identity.tokens import (
    BATCH_RESOURCE,
    SERVICEBUS_RESOURCE,
    decode_token,
    issue_token,
)

__all__ = [
    "API_VERSION",
    "BATCH_RESOURCE",
    "DEFAULT_CLIENT_ID",
    "SERVICEBUS_RESOURCE",
    "TokenEndpoint",
    "decode_token",
    "issue_token",
]
