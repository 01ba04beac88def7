"""Hypothesis strategies drawn from a JSON Schema: the subset our generated schemas use.

Why not hypothesis-jsonschema: its 0.23.1 release fails on current hypothesis
(`'many' object has no attribute 'more'`), and pinned to an older hypothesis it took
0.4 s per message on docs/job-update.schema.json, filtering on every anyOf/oneOf
(measured 2026-12-01: 200 draws in 107 s). This walks the schema instead: anyOf and
oneOf branches are merged into their object, patterns go to `st.from_regex` with
fullmatch. Every draw is still checked against the schema by a standard validator
(`draws`), so a shortcut here can only lose draws, never pass an invalid one off.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft202012Validator

Schema = dict[str, Any]


def draws(schema: Schema) -> st.SearchStrategy[Any]:
    """Values valid against `schema` (a standard validator has the last word)."""
    validator = Draft202012Validator(schema)
    return _Walker(schema).strategy(schema).filter(validator.is_valid)


class _Walker:
    def __init__(self, root: Schema) -> None:
        self.root = root
        self.deferred: dict[str, st.SearchStrategy[Any]] = {}

    def resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            name = schema["$ref"].removeprefix("#/$defs/")
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = merge(self.root["$defs"][name], rest)
        return schema

    def strategy(self, schema: Schema | bool) -> st.SearchStrategy[Any]:
        assert schema is not False, "a false schema admits nothing"
        if schema is True or schema == {}:
            return st.integers() | st.text(max_size=8) | st.booleans()
        if set(schema) == {"$ref"}:  # recursion (PoolValue) goes through a deferred strategy
            name = schema["$ref"].removeprefix("#/$defs/")
            if name not in self.deferred:
                self.deferred[name] = st.deferred(lambda: self.strategy(self.root["$defs"][name]))
            return self.deferred[name]
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                base = {k: v for k, v in schema.items() if k != key}
                branches = schema[key]
                if key == "oneOf":  # keep branches apart: forbid what the others require
                    branches = [_exclusive(branch, branches) for branch in branches]
                return st.one_of([self.strategy(merge(base, branch)) for branch in branches])
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            if "pattern" in schema:
                return st.from_regex(schema["pattern"], fullmatch=True)
            return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 20), 20))
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            ints = st.integers(schema.get("minimum"), schema.get("maximum"))
            excluded = schema.get("not", {}).get("const")
            return ints.filter(lambda v: v != excluded) if excluded is not None else ints
        if kind == "number":
            low, high = schema.get("minimum"), schema.get("maximum")
            # Floats well inside the bounds: Int64's ends are not floats.
            finite = st.floats(-1e18, 1e18, allow_nan=False, allow_infinity=False)
            return st.integers(low, high) | finite
        if kind == "array":
            return st.lists(
                self.strategy(schema.get("items", {})),
                min_size=schema.get("minItems", 0),
                max_size=min(schema.get("maxItems", 4), 4),
                unique_by=(lambda v: repr(v)) if schema.get("uniqueItems") else None,
            )
        if kind == "object" or "properties" in schema:
            return self.object(schema)
        raise NotImplementedError(f"schema form not drawn: {sorted(schema)}")

    def object(self, schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
        properties: dict[str, Any] = dict(schema.get("properties", {}))
        names = schema.get("propertyNames", {})
        allowed = {names["const"]} if "const" in names else set(names.get("enum", properties))
        properties = {k: v for k, v in properties.items() if v is not False and k in allowed}
        required = [k for k in schema.get("required", []) if k in properties]
        optional = {k: self.strategy(v) for k, v in properties.items() if k not in required}
        fixed = st.fixed_dictionaries({k: self.strategy(properties[k]) for k in required}, optional=optional)
        extra = schema.get("additionalProperties", True)
        if extra is not False and not properties:
            keys = st.text(min_size=1, max_size=8)
            fixed = st.dictionaries(
                keys, self.strategy(extra) if extra is not True else st.integers(), max_size=3
            )
        low, high = schema.get("minProperties", 0), schema.get("maxProperties")
        if low or high is not None:
            fixed = fixed.filter(lambda d: low <= len(d) and (high is None or len(d) <= high))
        return fixed


def merge(base: Schema, branch: Schema) -> Schema:
    """`base` narrowed by `branch`: required lists join, properties merge key by key
    (a branch's scalar rule replaces the base's: our branches only ever narrow)."""
    out = copy.deepcopy(base)
    for key, value in branch.items():
        if key == "required":
            out["required"] = sorted({*out.get("required", []), *value})
        elif key == "properties":
            props = out.setdefault("properties", {})
            for name, rule in value.items():
                props[name] = rule if rule is False or name not in props else merge(props[name], rule)
        else:
            out[key] = value
    return out


def _exclusive(branch: Schema, branches: list[Schema]) -> Schema:
    others = {name for other in branches if other is not branch for name in other.get("required", [])}
    forbidden = others - set(branch.get("required", []))
    return merge(branch, {"properties": dict.fromkeys(forbidden, False)}) if forbidden else branch
