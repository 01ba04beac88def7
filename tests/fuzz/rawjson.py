"""A JSON writer that can also write what `json.dumps` refuses to: raw tokens
(`NaN`, `1e999`, `01`), objects with a name given twice, and strings with lone
surrogates. The mutations build trees of these and serialise them here, so a
byte-level fault lands at a chosen place inside an otherwise well-formed body."""

from __future__ import annotations

import json
from typing import Any


class Raw(str):
    """A token written verbatim (`NaN`, `1E2`, `[[[[...]]]]`)."""

    __slots__ = ()


class Pairs(list[tuple[str, Any]]):
    """An object written pair by pair, in order: the only way to repeat a name."""

    __slots__ = ()


def dumps(value: Any, *, ascii_only: bool = True, indent: str | None = None) -> str:
    out: list[str] = []
    _write(value, out, ascii_only, indent, 0)
    return "".join(out)


def encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate (only reachable with ascii_only=False) becomes the
    # CESU bytes ED A0 80, which is invalid UTF-8: exactly the fault we want on the wire.
    return text.encode("utf-8", "surrogatepass")


def _write(value: Any, out: list[str], ascii_only: bool, indent: str | None, level: int) -> None:
    if isinstance(value, Raw):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=ascii_only))
    elif value is None or isinstance(value, bool | int):
        out.append(json.dumps(value))
    elif isinstance(value, float):
        out.append(json.dumps(value))  # NaN/Infinity only ever arrive as Raw tokens
    elif isinstance(value, Pairs | dict):
        items = list(value) if isinstance(value, Pairs) else list(value.items())
        _container(items, "{", "}", out, ascii_only, indent, level, keyed=True)
    elif isinstance(value, list | tuple):
        _container(list(value), "[", "]", out, ascii_only, indent, level, keyed=False)
    else:
        raise TypeError(f"cannot write {type(value).__name__}")


def _container(
    items: list[Any],
    start: str,
    end: str,
    out: list[str],
    ascii_only: bool,
    indent: str | None,
    level: int,
    *,
    keyed: bool,
) -> None:
    out.append(start)
    for n, item in enumerate(items):
        if n:
            out.append(",")
        if indent is not None:
            out.append("\n" + indent * (level + 1))
        if keyed:
            key, item = item
            out.append(json.dumps(key, ensure_ascii=ascii_only) + ":")
        _write(item, out, ascii_only, indent, level + 1)
    if indent is not None and items:
        out.append("\n" + indent * level)
    out.append(end)
