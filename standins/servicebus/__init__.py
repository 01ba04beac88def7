"""Local stand-in for Azure Service Bus: an AMQP 1.0 broker the unmodified SDK connects to.

See README.md in this folder for what it implements and what it leaves out.
"""

from .broker import EntityOutage, LocalBroker
from .config import ConfigError, NamespaceConfig, load_config, with_lock_durations

__all__ = [
    "ConfigError",
    "EntityOutage",
    "LocalBroker",
    "NamespaceConfig",
    "load_config",
    "with_lock_durations",
]
