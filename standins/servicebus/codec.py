"""AMQP 1.0 message sections: split what a client sent, re-encode what the broker delivers.

Why section-level and not ``proton.Message``: a stored message must come back to the
receiver byte-for-byte as the sender wrote it (body, properties, application properties,
footer), with only the broker-owned parts replaced (the header's delivery-count and the
``x-opt-*`` message annotations). ``proton.Message`` cannot carry several ``data`` sections
and would re-encode values, so the broker keeps each section's raw bytes and only decodes
what it must read (properties, application properties, annotations).

Batches: ``ServiceBusSender.send_messages([...])`` / ``ServiceBusMessageBatch`` arrive as ONE
transfer whose message-format is 0x80013700 and whose body is one ``data`` section per
encoded message. python-qpid-proton's Python binding does not expose the transfer's message
format, so :func:`split_batch` recognises a batch by shape instead: no application
properties on the envelope and every ``data`` section decodes completely as an AMQP message.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from proton import Array, Data, Described, symbol, timestamp, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

_SYMBOLIC = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

_PROPERTY_FIELDS = (
    "message_id",
    "user_id",
    "to",
    "subject",
    "reply_to",
    "correlation_id",
    "content_type",
    "content_encoding",
    "absolute_expiry_time",
    "creation_time",
    "group_id",
    "group_sequence",
    "reply_to_group_id",
)


class DecodeError(ValueError):
    """The bytes are not a well-formed AMQP message."""


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any


def decode_value(buf: bytes) -> tuple[Any, int]:
    """Decode one AMQP value from the front of ``buf``; return it and the bytes consumed."""
    data = Data()
    try:
        consumed = data.decode(buf)
    except Exception as exc:  # proton raises DataException (and others) on garbage
        raise DecodeError(str(exc)) from exc
    if consumed <= 0:
        raise DecodeError("nothing decoded")
    data.rewind()
    data.next()
    # proton hands out binary values as memoryviews into the Data buffer, which dies with
    # ``data``: copy them out before returning.
    try:
        return _detach(data.get_object()), consumed
    except Exception as exc:  # e.g. an invalid char code point in arbitrary bytes
        raise DecodeError(str(exc)) from exc


def _detach(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Described):
        return Described(value.descriptor, _detach(value.value))
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *[_detach(v) for v in value.elements])
    if isinstance(value, dict):
        return {_detach(k): _detach(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_detach(v) for v in value]
    return value


def encode_value(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def split_sections(raw: bytes) -> list[Section]:
    """Split an encoded message into its sections, keeping each section's exact bytes."""
    sections: list[Section] = []
    pos = 0
    view = bytes(raw)
    while pos < len(view):
        value, consumed = decode_value(view[pos:])
        if not isinstance(value, Described):
            raise DecodeError("message section is not a described type")
        descriptor: Any = value.descriptor
        code = _SYMBOLIC.get(str(descriptor), -1) if isinstance(descriptor, str) else int(descriptor)
        if not HEADER <= code <= FOOTER:
            raise DecodeError(f"unknown section descriptor {descriptor!r}")
        sections.append(Section(code, view[pos : pos + consumed], value.value))
        pos += consumed
    if not sections:
        raise DecodeError("empty message")
    return sections


def _plain(value: Any) -> Any:
    """memoryview (proton's binary) -> bytes, so stored values survive the delivery buffer."""
    return bytes(value) if isinstance(value, memoryview) else value


@dataclass
class AmqpMessage:
    """One message as stored by the broker: decoded where needed, raw where not."""

    header: list[Any] = field(default_factory=list)
    message_annotations: dict[Any, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    application_properties: dict[str, Any] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)  # raw body sections, in order
    footer: bytes = b""
    _properties_raw: bytes = b""
    _app_properties_raw: bytes = b""
    _app_properties_dirty: bool = False

    # --- accessors the broker uses -------------------------------------------------
    @property
    def message_id(self) -> str | None:
        value = self.properties.get("message_id")
        if value is None:
            return None
        return value.hex() if isinstance(value, bytes) else str(value)

    @property
    def session_id(self) -> str | None:
        value = self.properties.get("group_id")
        return None if value is None else str(value)

    @property
    def ttl_seconds(self) -> float | None:
        ttl = self.header[2] if len(self.header) > 2 else None
        return None if ttl is None else int(ttl) / 1000.0

    def annotation(self, key: str) -> Any:
        return self.message_annotations.get(symbol(key))

    def set_application_property(self, key: str, value: Any) -> None:
        self.application_properties[key] = value
        self._app_properties_dirty = True

    def system_view(self) -> dict[str, Any]:
        """Service Bus system properties by lower-cased name, for filters."""
        props = self.properties
        return {
            "messageid": _plain(props.get("message_id")),
            "correlationid": _plain(props.get("correlation_id")),
            "to": props.get("to"),
            "replyto": props.get("reply_to"),
            "label": props.get("subject"),
            "sessionid": props.get("group_id"),
            "replytosessionid": props.get("reply_to_group_id"),
            "contenttype": props.get("content_type"),
        }

    # --- encoding ----------------------------------------------------------------
    def encode(self, *, delivery_count: int, annotations: Mapping[str, Any]) -> bytes:
        """Encode for delivery with a fresh header delivery-count and broker annotations."""
        header = list(self.header) + [None] * (5 - len(self.header))
        header = header[:5]
        header[4] = uint(delivery_count)
        merged = dict(self.message_annotations)
        for key, value in annotations.items():
            merged[symbol(key)] = value
        parts = [
            encode_value(Described(ulong(HEADER), header)),
            encode_value(Described(ulong(MESSAGE_ANNOTATIONS), merged)),
        ]
        if self._properties_raw:
            parts.append(self._properties_raw)
        if self._app_properties_dirty:
            section = Described(ulong(APPLICATION_PROPERTIES), cast(Any, dict(self.application_properties)))
            parts.append(encode_value(section))
        elif self._app_properties_raw:
            parts.append(self._app_properties_raw)
        parts.extend(self.body)
        if self.footer:
            parts.append(self.footer)
        return b"".join(parts)

    def copy(self) -> AmqpMessage:
        """Independent copy (topic fan-out, dead-lettering) sharing immutable raw bytes."""
        return AmqpMessage(
            header=list(self.header),
            message_annotations=dict(self.message_annotations),
            properties=dict(self.properties),
            application_properties=dict(self.application_properties),
            body=list(self.body),
            footer=self.footer,
            _properties_raw=self._properties_raw,
            _app_properties_raw=self._app_properties_raw,
            _app_properties_dirty=self._app_properties_dirty,
        )


def parse_message(raw: bytes) -> AmqpMessage:
    """Parse one encoded message. Delivery annotations are per-hop and are dropped."""
    message = AmqpMessage()
    for section in split_sections(raw):
        if section.code == HEADER:
            message.header = list(section.value or [])
        elif section.code == MESSAGE_ANNOTATIONS:
            message.message_annotations = dict(section.value or {})
        elif section.code == PROPERTIES:
            values = list(section.value or [])
            message.properties = {
                name: _plain(values[i]) for i, name in enumerate(_PROPERTY_FIELDS) if i < len(values)
            }
            message._properties_raw = section.raw
        elif section.code == APPLICATION_PROPERTIES:
            message.application_properties = {str(k): _plain(v) for k, v in (section.value or {}).items()}
            message._app_properties_raw = section.raw
        elif section.code in _BODY:
            message.body.append(section.raw)
        elif section.code == FOOTER:
            message.footer = section.raw
    return message


def _looks_like_message(payload: bytes) -> bool:
    if payload[:2] != b"\x00\x53":  # every section starts with a described small-ulong code
        return False
    try:
        sections = split_sections(payload)
    except DecodeError:
        return False
    return any(s.code in _BODY for s in sections)


def split_batch(raw: bytes) -> list[AmqpMessage]:
    """Return the messages carried by one transfer: one, or several for a batch envelope."""
    sections = split_sections(raw)
    data = [s for s in sections if s.code == DATA]
    is_batch = (
        bool(data)
        and not any(s.code in (APPLICATION_PROPERTIES, AMQP_VALUE, AMQP_SEQUENCE) for s in sections)
        and all(_looks_like_message(_plain(s.value)) for s in data)
    )
    if not is_batch:
        return [parse_message(raw)]
    return [parse_message(_plain(s.value)) for s in data]


def ms_timestamp(epoch_seconds: float) -> timestamp:
    return timestamp(int(epoch_seconds * 1000))


def dotnet_ticks(epoch_seconds: float) -> int:
    """.NET DateTime ticks, as Service Bus encodes ``com.microsoft:locked-until-utc``."""
    return 621355968000000000 + int(epoch_seconds * 10_000_000)


def lock_token_from_tag(tag: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=tag)


__all__ = [
    "AmqpMessage",
    "DecodeError",
    "decode_value",
    "dotnet_ticks",
    "encode_value",
    "lock_token_from_tag",
    "ms_timestamp",
    "parse_message",
    "split_batch",
    "split_sections",
]
