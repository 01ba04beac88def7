"""Local stand-in for the Functions host's Service Bus trigger loop (see README.md)."""

from standins.functions_host.host import (
    ClientRetryOptions,
    HostOptions,
    LocalFunctionsHost,
    to_functions_message,
)

__all__ = ["ClientRetryOptions", "HostOptions", "LocalFunctionsHost", "to_functions_message"]
