"""Local stand-in for Azure Service Bus: an AMQP 1.0 broker the unmodified SDK connects to.

See README.md in this folder for what it implements and what it leaves out.
"""

from .broker import LocalBroker
from .config import ConfigError, NamespaceConfig, load_config

__all__ = ["ConfigError", "LocalBroker", "NamespaceConfig", "load_config"]
