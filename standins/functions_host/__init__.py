"""Local stand-in for the Functions host's Service Bus trigger loop (see README.md)."""

from standins.functions_host.host import HostOptions, LocalFunctionsHost, to_functions_message

__all__ = ["HostOptions", "LocalFunctionsHost", "to_functions_message"]
