"""Subscription rule filters: the Service Bus SQL-92 subset, correlation filters, True/False.

Why a hand-written parser: the filter decides which subscription gets a copy of a published
message, so tests of routing (e.g. the ``failures`` subscription only seeing ``outcome =
'failed'``) are only meaningful if the broker evaluates the same expressions as the service.
The grammar follows Microsoft's "Subscription Rule SQL Filter Syntax" page:

    predicate  := NOT predicate | predicate AND predicate | predicate OR predicate
                | expr (= | <> | != | < | <= | > | >=) expr | property IS [NOT] NULL
                | expr [NOT] IN (expr, ...) | expr [NOT] LIKE 'pattern' [ESCAPE 'c']
                | EXISTS(property) | (predicate)
    expr       := constant | property | expr (+ - * / %) expr | (+|-) expr | (expr)
    property   := [sys. | user.] name | [bracketed name]

SQL three-valued logic applies: a missing property is NULL, comparisons with NULL are
unknown, and a rule matches only when its predicate is TRUE. Functions (``newid()``,
``property(...)``) and rule actions are not implemented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import RuleConfig

Value = Any  # str | int | float | bool | bytes | None
Expr = Callable[["MessageView"], Value]


class FilterError(ValueError):
    """A SQL filter expression could not be parsed."""


@dataclass(frozen=True)
class MessageView:
    """What a filter can see of a message.

    ``system`` is keyed by lower-cased Service Bus system property name (``messageid``,
    ``label``, ``sessionid`` ...); ``user`` holds the application properties as sent.
    """

    system: Mapping[str, Value]
    user: Mapping[str, Value]

    def lookup(self, scope: str, name: str) -> tuple[bool, Value]:
        """Return (exists, value) for a property reference."""
        if scope == "sys":
            key = name.lower()
            key = "label" if key == "subject" else key
            return (key in self.system and self.system[key] is not None), self.system.get(key)
        if name in self.user:
            return True, self.user[name]
        lowered = name.lower()
        for key, value in self.user.items():
            if key.lower() == lowered:
                return True, value
        return False, None


# ---------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
      | (?P<bracket>\[[^\]]+\])
      | (?P<ident>[A-Za-z_@$][A-Za-z0-9_@$]*(?:\.[A-Za-z_@$][A-Za-z0-9_@$]*)?)
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,|\+|-|\*|/|%)
    )""",
    re.VERBOSE,
)

_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "ESCAPE", "EXISTS", "TRUE", "FALSE"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # string | number | ident | op | kw | end
    text: str
    value: Value = None


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"unexpected input at {pos}: {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        raw = match.group(kind).strip()
        if kind == "string":
            tokens.append(_Tok("string", raw, raw[1:-1].replace("''", "'")))
        elif kind == "number":
            is_float = any(c in raw for c in ".eE")
            tokens.append(_Tok("number", raw, float(raw) if is_float else int(raw)))
        elif kind == "bracket":
            tokens.append(_Tok("ident", raw, raw[1:-1]))
        elif kind == "ident" and raw.upper() in _KEYWORDS:
            tokens.append(_Tok("kw", raw.upper()))
        elif kind == "ident":
            tokens.append(_Tok("ident", raw, raw))
        else:
            tokens.append(_Tok("op", raw))
    tokens.append(_Tok("end", ""))
    return tokens


# ---------------------------------------------------------------------------- semantics


def _normalize(value: Value) -> Value:
    """Collapse AMQP wrapper types (proton's int32, symbol, float32 ...) to plain Python."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value


def _comparable(a: Value, b: Value) -> bool:
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numeric) and isinstance(b, numeric):
        return True
    return type(a) is type(b)


def _compare(op: str, a: Value, b: Value) -> bool | None:
    a, b = _normalize(a), _normalize(b)
    if a is None or b is None:
        return None
    if not _comparable(a, b):
        # The service raises for some mixed-type comparisons; a broker that routes
        # should not crash on one message, so treat it as unknown (no match).
        return None if op not in ("<>", "!=") else True
    if op == "=":
        return bool(a == b)
    if op in ("<>", "!="):
        return bool(a != b)
    try:
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    except TypeError:
        return None


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _arith(op: str, a: Value, b: Value) -> Value:
    a, b = _normalize(a), _normalize(b)
    if a is None or b is None:
        return None
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    if op == "/":
        return a // b if isinstance(a, int) and isinstance(b, int) else a / b
    return a % b


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if escape and ch == escape:
            out.append(re.escape(next(chars, "")))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> _Tok:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise FilterError(f"expected {text or kind}, got {tok.text or 'end of expression'!r}")
        return self.take()

    # predicate level -------------------------------------------------------
    def parse(self) -> Expr:
        expr = self.or_expr()
        self.expect("end")
        return expr

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.accept("kw", "OR"):
            right = self.and_expr()
            left = (lambda lhs, rhs: lambda m: _or(lhs(m), rhs(m)))(left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.accept("kw", "AND"):
            right = self.not_expr()
            left = (lambda lhs, rhs: lambda m: _and(lhs(m), rhs(m)))(left, right)
        return left

    def not_expr(self) -> Expr:
        if self.accept("kw", "NOT"):
            inner = self.not_expr()
            return lambda m: _not(inner(m))
        return self.predicate()

    def predicate(self) -> Expr:
        if self.accept("kw", "EXISTS"):
            self.expect("op", "(")
            scope, name = self.property_ref(self.expect("ident"))
            self.expect("op", ")")
            return lambda m: m.lookup(scope, name)[0]
        left = self.additive()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.additive()
            op = tok.text
            return lambda m: _compare(op, left(m), right(m))
        if self.accept("kw", "IS"):
            negate = self.accept("kw", "NOT")
            self.expect("kw", "NULL")
            return lambda m: (left(m) is not None) if negate else (left(m) is None)
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            options = [self.additive()]
            while self.accept("op", ","):
                options.append(self.additive())
            self.expect("op", ")")

            def in_list(m: MessageView) -> bool | None:
                value = left(m)
                if value is None:
                    return None
                result: bool | None = False
                for option in options:
                    result = _or(result, _compare("=", value, option(m)))
                return _not(result) if negate else result

            return in_list
        if self.accept("kw", "LIKE"):
            pattern = self.expect("string").value
            escape = self.expect("string").value if self.accept("kw", "ESCAPE") else None
            regex = _like_regex(pattern, escape)

            def like(m: MessageView) -> bool | None:
                value = _normalize(left(m))
                if not isinstance(value, str):
                    return None
                matched = regex.fullmatch(value) is not None
                return not matched if negate else matched

            return like
        if negate:
            raise FilterError("NOT must be followed by IN or LIKE here")
        # A bare boolean operand, e.g. TRUE, a property holding a bool, or (predicate).
        return lambda m: _truth(left(m))

    # expression level ------------------------------------------------------
    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            right = self.multiplicative()
            left = (lambda lhs, rhs, o: lambda m: _arith(o, lhs(m), rhs(m)))(left, right, op)
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            op = self.take().text
            right = self.unary()
            left = (lambda lhs, rhs, o: lambda m: _arith(o, lhs(m), rhs(m)))(left, right, op)
        return left

    def unary(self) -> Expr:
        if self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            inner = self.unary()
            if op == "+":
                return inner
            return lambda m: _arith("-", 0, inner(m))
        return self.primary()

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind in ("string", "number"):
            constant = tok.value
            return lambda m: constant
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            flag = tok.text == "TRUE"
            return lambda m: flag
        if tok.kind == "kw" and tok.text == "NULL":
            return lambda m: None
        if tok.kind == "ident":
            scope, name = self.property_ref(tok)
            return lambda m: m.lookup(scope, name)[1]
        if tok.kind == "op" and tok.text == "(":
            inner = self.or_expr()
            self.expect("op", ")")
            return inner
        raise FilterError(f"unexpected {tok.text or 'end of expression'!r}")

    @staticmethod
    def property_ref(tok: _Tok) -> tuple[str, str]:
        text = str(tok.value)
        if tok.text.startswith("["):
            return "user", text
        head, _, tail = text.partition(".")
        if tail and head.lower() in ("sys", "user"):
            return head.lower(), tail
        return "user", text


def _truth(value: Value) -> bool | None:
    value = _normalize(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return None


# ---------------------------------------------------------------------------- filters


class RuleFilter:
    """A compiled rule filter; ``matches`` decides whether a subscription gets the message."""

    def matches(self, message: MessageView) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class TrueFilter(RuleFilter):
    """The default filter of a subscription without rules (``1=1``)."""

    def matches(self, message: MessageView) -> bool:
        return True


class SqlFilter(RuleFilter):
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._compiled = _Parser(expression).parse()

    def matches(self, message: MessageView) -> bool:
        return self._compiled(message) is True

    def __repr__(self) -> str:
        return f"SqlFilter({self.expression!r})"


_CORRELATION_SYSTEM = {
    "contenttype": "contenttype",
    "correlationid": "correlationid",
    "label": "label",
    "subject": "label",
    "messageid": "messageid",
    "replyto": "replyto",
    "replytosessionid": "replytosessionid",
    "sessionid": "sessionid",
    "to": "to",
}


class CorrelationFilter(RuleFilter):
    """Equality on system properties and on application properties (all must match)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.system: dict[str, Value] = {}
        self.user: dict[str, Value] = {}
        for key, value in spec.items():
            if key.lower() == "properties" and isinstance(value, Mapping):
                self.user.update(value)
            elif key.lower() in _CORRELATION_SYSTEM:
                self.system[_CORRELATION_SYSTEM[key.lower()]] = value
            else:
                raise FilterError(f"unknown correlation filter field {key!r}")

    def matches(self, message: MessageView) -> bool:
        for key, expected in self.system.items():
            if not _loose_equal(message.system.get(key), expected):
                return False
        for key, expected in self.user.items():
            exists, actual = message.lookup("user", key)
            if not exists or not _loose_equal(actual, expected):
                return False
        return True


def _loose_equal(actual: Value, expected: Value) -> bool:
    actual, expected = _normalize(actual), _normalize(expected)
    if actual is None:
        return False
    if _comparable(actual, expected):
        return bool(actual == expected)
    return str(actual) == str(expected)


def compile_rule(rule: RuleConfig) -> RuleFilter:
    """Turn a configured rule into a filter; ``1=1`` style SQL becomes a normal SqlFilter."""
    if rule.filter_type == "Sql":
        return SqlFilter(rule.sql_expression or "1=1")
    return CorrelationFilter(rule.correlation or {})


def compile_rules(rules: tuple[RuleConfig, ...]) -> list[RuleFilter]:
    """A subscription with no rules gets the service's implicit ``$Default`` TrueFilter."""
    return [compile_rule(r) for r in rules] or [TrueFilter()]
