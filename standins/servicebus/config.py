"""Entity configuration in the shape of Microsoft's Service Bus emulator ``Config.json``.

Why this shape: the same file must be usable by the real emulator
(``UserConfig.Namespaces[].Queues[] / Topics[].Subscriptions[].Rules[]``, see
Azure/azure-service-bus-emulator-installer ``ServiceBus-Emulator/Schema/Config-schema.json``),
so the project keeps ONE description of its entities. Defaults are the emulator's
schema defaults (not the cloud service's), for the same reason.

Only what the local broker acts on is modelled; ``ForwardTo``, ``ForwardDeadLetteredMessagesTo``,
rule ``Action`` and ``Logging`` are accepted and ignored (see README "Left out").
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(ValueError):
    """The configuration file is not in the emulator's Config.json shape."""


def parse_duration(text: str) -> float:
    """Parse an ISO 8601 duration (``PT30S``, ``PT1H``, ``P1D``) into seconds.

    Years and months are approximated as 365 and 30 days: the emulator only accepts
    minutes-to-hours values, and nothing here needs calendar arithmetic.
    """
    match = _DURATION.match(text.strip().upper())
    if not match:
        raise ConfigError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    days = parts["y"] * 365 + parts["mo"] * 30 + parts["w"] * 7 + parts["d"]
    return days * 86400 + parts["h"] * 3600 + parts["mi"] * 60 + parts["s"]


@dataclass(frozen=True)
class RuleConfig:
    """A subscription rule: ``FilterType`` ``Sql`` or ``Correlation`` (emulator schema)."""

    name: str
    filter_type: str  # "Sql" | "Correlation"
    sql_expression: str | None = None
    correlation: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EntityProperties:
    """Behavioural properties shared by queues and subscriptions (emulator defaults)."""

    lock_duration: float = 60.0
    max_delivery_count: int = 3
    requires_session: bool = False
    dead_lettering_on_message_expiration: bool = False
    default_message_ttl: float = 3600.0
    requires_duplicate_detection: bool = False
    duplicate_detection_window: float = 20.0


@dataclass(frozen=True)
class QueueConfig:
    name: str
    properties: EntityProperties


@dataclass(frozen=True)
class SubscriptionConfig:
    name: str
    properties: EntityProperties
    rules: tuple[RuleConfig, ...] = ()


@dataclass(frozen=True)
class TopicConfig:
    name: str
    properties: EntityProperties
    subscriptions: tuple[SubscriptionConfig, ...] = ()


@dataclass(frozen=True)
class NamespaceConfig:
    name: str
    queues: tuple[QueueConfig, ...] = ()
    topics: tuple[TopicConfig, ...] = field(default_factory=tuple)


def _properties(raw: Mapping[str, Any] | None, where: str) -> EntityProperties:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: Properties must be an object")
    base = EntityProperties()

    def duration(key: str, default: float) -> float:
        value = raw.get(key)
        return parse_duration(value) if value else default

    try:
        return EntityProperties(
            lock_duration=duration("LockDuration", base.lock_duration),
            max_delivery_count=int(raw.get("MaxDeliveryCount", base.max_delivery_count)),
            requires_session=bool(raw.get("RequiresSession", base.requires_session)),
            dead_lettering_on_message_expiration=bool(
                raw.get("DeadLetteringOnMessageExpiration", base.dead_lettering_on_message_expiration)
            ),
            default_message_ttl=duration("DefaultMessageTimeToLive", base.default_message_ttl),
            requires_duplicate_detection=bool(
                raw.get("RequiresDuplicateDetection", base.requires_duplicate_detection)
            ),
            duplicate_detection_window=duration(
                "DuplicateDetectionHistoryTimeWindow", base.duplicate_detection_window
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _name(raw: Mapping[str, Any], where: str) -> str:
    name = raw.get("Name") if isinstance(raw, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: missing Name")
    return name


def _rule(raw: Mapping[str, Any], where: str) -> RuleConfig:
    name = _name(raw, where)
    props = raw.get("Properties") or {}
    filter_type = props.get("FilterType")
    if filter_type == "Sql":
        expression = (props.get("SqlFilter") or {}).get("SqlExpression")
        if not isinstance(expression, str):
            raise ConfigError(f"{where}/{name}: Sql rule needs SqlFilter.SqlExpression")
        return RuleConfig(name=name, filter_type="Sql", sql_expression=expression)
    if filter_type == "Correlation":
        correlation = props.get("CorrelationFilter")
        if not isinstance(correlation, Mapping) or not correlation:
            raise ConfigError(f"{where}/{name}: Correlation rule needs a non-empty CorrelationFilter")
        return RuleConfig(name=name, filter_type="Correlation", correlation=dict(correlation))
    raise ConfigError(f"{where}/{name}: FilterType must be 'Sql' or 'Correlation', got {filter_type!r}")


def parse_config(document: Mapping[str, Any]) -> NamespaceConfig:
    """Validate and convert an emulator-shaped document into a :class:`NamespaceConfig`.

    The emulator allows exactly one namespace; so does this broker.
    """
    try:
        namespaces = document["UserConfig"]["Namespaces"]
    except (KeyError, TypeError) as exc:
        raise ConfigError("expected UserConfig.Namespaces") from exc
    if not isinstance(namespaces, list) or len(namespaces) != 1:
        raise ConfigError("UserConfig.Namespaces must hold exactly one namespace (as in the emulator)")
    ns = namespaces[0]
    ns_name = _name(ns, "namespace")
    queues = tuple(
        QueueConfig(
            name=_name(q, "queue"), properties=_properties(q.get("Properties"), f"queue {q.get('Name')}")
        )
        for q in ns.get("Queues") or []
    )
    topics: list[TopicConfig] = []
    for t in ns.get("Topics") or []:
        t_name = _name(t, "topic")
        subs = tuple(
            SubscriptionConfig(
                name=_name(s, f"topic {t_name} subscription"),
                properties=_properties(s.get("Properties"), f"subscription {t_name}/{s.get('Name')}"),
                rules=tuple(_rule(r, f"rule of {t_name}/{s.get('Name')}") for r in s.get("Rules") or []),
            )
            for s in t.get("Subscriptions") or []
        )
        topics.append(
            TopicConfig(
                name=t_name,
                properties=_properties(t.get("Properties"), f"topic {t_name}"),
                subscriptions=subs,
            )
        )
    names = [q.name.lower() for q in queues] + [t.name.lower() for t in topics]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"entity names must be unique (case-insensitive): {sorted(duplicates)}")
    return NamespaceConfig(name=ns_name, queues=queues, topics=tuple(topics))


def with_lock_durations(config: NamespaceConfig, lock_durations: Mapping[str, float]) -> NamespaceConfig:
    """``config`` with ``LockDuration`` replaced for the named queues / ``topic/Subscriptions/sub``.

    Why: tests of lock expiry need locks of a second or two on the entities the function
    really uses, without keeping a second copy of Config.json. Names match case-insensitively,
    as entity names do in the service; an unknown name is an error, not a silent no-op.
    """
    wanted = {name.lower(): float(seconds) for name, seconds in lock_durations.items()}
    for name, seconds in wanted.items():
        if not seconds > 0:
            raise ConfigError(f"lock duration of {name!r} must be positive, got {seconds!r}")
    seen: set[str] = set()

    def props(name: str, current: EntityProperties) -> EntityProperties:
        key = name.lower()
        if key not in wanted:
            return current
        seen.add(key)
        return dataclasses.replace(current, lock_duration=wanted[key])

    queues = tuple(dataclasses.replace(q, properties=props(q.name, q.properties)) for q in config.queues)
    topics = tuple(
        dataclasses.replace(
            t,
            subscriptions=tuple(
                dataclasses.replace(s, properties=props(f"{t.name}/Subscriptions/{s.name}", s.properties))
                for s in t.subscriptions
            ),
        )
        for t in config.topics
    )
    unknown = sorted(set(wanted) - seen)
    if unknown:
        raise ConfigError(f"lock_durations names no queue or subscription: {unknown}")
    return dataclasses.replace(config, queues=queues, topics=topics)


def load_config(source: str | Path | Mapping[str, Any]) -> NamespaceConfig:
    """Load from a path to a Config.json file, or from an already-parsed dict."""
    if isinstance(source, Mapping):
        return parse_config(source)
    with open(source, encoding="utf-8") as handle:
        return parse_config(json.load(handle))
