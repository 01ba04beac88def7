"""Mutant generation: a small AST mutator, deterministic, no dependency.

A module's source is parsed, its nodes visited in source order, and each operator
below proposes replacements for one node. A mutant is applied by parsing again and
replacing the node with the same visit index, so any process can rebuild mutant N of
a module from the source alone (the runners do).

Operators
  compare     <  <=  >  >=  ==  !=  is  is not  in  not in: each swapped with its
              closest neighbour (< and <=, == and !=, is and is not, in and not in)
  boolop      and <-> or; and each operand of a chain dropped (a condition removed)
  not         `not x` -> `x`
  arith       + <-> -, * <-> /, // -> /, % -> //, ** -> *, | <-> &, augmented too
  number      n -> n+1 and n-1 (a negative literal is one number)
  string      "s" -> "" and "" -> "mutated"
  bool        True <-> False
  return      `return x` -> `return None`
  remove      a statement in a function body -> `pass` (calls, raises, ifs, loops,
              assignments, returns inside a block)
  element     an element dropped from a literal set, a tuple or list of constants, an
              `except (A, B)` or `isinstance(x, (A, B))` tuple; an entry dropped from a
              dict literal with constant keys
  keyword     a keyword argument dropped from a call
  decorator   a decorator removed

Not mutated, on purpose: docstrings, `__all__`, annotations, `assert` statements
(invariants for the type checker; removing one changes nothing observable), and
documentation text (`description=` values, which the schema snapshot test pins) and
`alias=` names (every test that builds a message kills them: pure cost).
"""

from __future__ import annotations

import ast
import copy
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import CodeType

ROOT = Path(__file__).resolve().parents[2]

# The pure decision modules (README: no I/O imports), by short name.
MODULES: dict[str, str] = {
    "plan": "handlers.plan",
    "wire": "handlers.wire",
    "outcomes": "handlers.outcomes",
    "contract": "handlers.contract",
    "wire_formats": "handlers.wire_formats",
    "endpoints": "handlers.endpoints",
    "events": "handlers.events",
    "redaction": "handlers.redaction",
    "errors": "handlers.errors",
    "lineage": "handlers.lineage",
    "flow": "handlers.flow",
}

_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_ARITH_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}
_SKIPPED_KEYWORDS = frozenset({"description", "alias"})

Transform = Callable[[ast.AST], ast.AST | None]  # None: remove (statement -> pass)


@dataclass(frozen=True, slots=True)
class Mutant:
    module: str  # dotted name, e.g. handlers.plan
    number: int  # position in this module's list (stable for one source)
    key: str  # stable across unrelated edits: scope, operator, before -> after, occurrence
    op: str
    scope: str  # enclosing function/class qualname, or <module>
    in_function: bool  # inside a function body (can be patched into a live process)
    line: int
    end_line: int
    before: str
    after: str
    node_index: int
    variant: int  # which of the operator's replacements for this node


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


@cache
def source(module: str) -> str:
    """Read once per process: an edit during a run must not renumber its mutants."""
    return module_path(module).read_text()


def _short(node: ast.AST | None, limit: int = 120) -> str:
    if node is None:
        return "pass"
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_docstring(node: ast.AST, parent: ast.AST | None, pos: int) -> bool:
    return (
        pos == 0
        and isinstance(parent, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


@dataclass(slots=True)
class _Site:
    index: int
    node: ast.AST
    parent: ast.AST | None
    field: str
    pos: int  # index in the parent's list field, -1 for a single child
    scope: str
    in_function: bool


def _never_mutated(node: ast.AST, parent: ast.AST | None, pos: int) -> bool:
    if isinstance(node, (ast.Assert, ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
    ):
        return True
    if isinstance(node, ast.keyword) and node.arg in _SKIPPED_KEYWORDS:
        return True
    return _is_docstring(node, parent, pos)


def _walk(tree: ast.Module) -> Iterator[_Site]:
    """Every mutable node in source order, numbered; generation and application share it."""
    counter = 0
    scope: list[str] = []

    def visit(node: ast.AST, parent: ast.AST | None, field: str, pos: int, depth: int) -> Iterator[_Site]:
        nonlocal counter
        if _never_mutated(node, parent, pos):
            return
        yield _Site(counter, node, parent, field, pos, ".".join(scope) or "<module>", depth > 0)
        counter += 1
        is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for child_field, value in ast.iter_fields(node):
            if child_field in {"annotation", "returns", "type_params"}:
                continue
            body = child_field == "body"
            if body and named:
                scope.append(node.name)  # type: ignore[attr-defined]
            inner = depth + 1 if body and is_function else depth
            children = value if isinstance(value, list) else [value]
            for i, item in enumerate(children):
                if not isinstance(item, ast.AST):
                    continue
                if isinstance(node, ast.JoinedStr) and not isinstance(item, ast.FormattedValue):
                    continue  # f-string text is prose; the expressions inside are code
                yield from visit(item, node, child_field, i if isinstance(value, list) else -1, inner)
            if body and named:
                scope.pop()

    yield from visit(tree, None, "", -1, 0)


def _proposals(site: _Site) -> list[tuple[str, Transform]]:
    node, parent, field = site.node, site.parent, site.field
    return [
        *_compare(node),
        *_boolop(node),
        *_not(node),
        *_arith(node),
        *_constant(node, parent),
        *_return(node),
        *_remove(node, parent, site.in_function),
        *_elements(node, parent, field),
        *_keywords(node),
        *_decorators(node),
    ]


def _compare(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if not isinstance(node, ast.Compare):
        return
    for i, op in enumerate(node.ops):
        swap = _COMPARE_SWAP.get(type(op))
        if swap is None:
            continue

        def change(n: ast.AST, i: int = i, swap: type[ast.cmpop] = swap) -> ast.AST:
            assert isinstance(n, ast.Compare)
            n.ops[i] = swap()
            return n

        yield "compare", change


def _boolop(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if not isinstance(node, ast.BoolOp):
        return

    def flip(n: ast.AST) -> ast.AST:
        assert isinstance(n, ast.BoolOp)
        n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
        return n

    yield "boolop", flip
    for i in range(len(node.values)):

        def drop(n: ast.AST, i: int = i) -> ast.AST:
            assert isinstance(n, ast.BoolOp)
            rest = [v for j, v in enumerate(n.values) if j != i]
            return rest[0] if len(rest) == 1 else ast.BoolOp(op=n.op, values=rest)

        yield "boolop", drop


def _not(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", lambda n: n.operand  # type: ignore[attr-defined,no-any-return]


def _arith(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        swap = _ARITH_SWAP.get(type(node.op))
        if swap is not None:

            def change(n: ast.AST, swap: type[ast.operator] = swap) -> ast.AST:
                n.op = swap()  # type: ignore[attr-defined]
                return n

            yield "arith", change


def _constant(node: ast.AST, parent: ast.AST | None) -> Iterator[tuple[str, Transform]]:
    negative = (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    )
    if negative:
        value = -node.operand.value  # type: ignore[attr-defined]
        for delta in (1, -1):
            yield "number", lambda n, v=value + delta: ast.Constant(v)
        return
    if not isinstance(node, ast.Constant):
        return
    if (
        isinstance(parent, ast.UnaryOp)
        and isinstance(parent.op, ast.USub)
        and type(node.value) in (int, float)
    ):
        return  # handled as one negative number above
    value = node.value
    if isinstance(value, bool):
        yield "bool", lambda n, v=value: ast.Constant(not v)
    elif isinstance(value, (int, float)):
        for delta in (1, -1):
            yield "number", lambda n, v=value + delta: ast.Constant(v)
    elif isinstance(value, str):
        yield "string", lambda n, v=value: ast.Constant("" if v else "mutated")
    elif isinstance(value, bytes):
        yield "string", lambda n, v=value: ast.Constant(b"" if v else b"mutated")


def _return(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if isinstance(node, ast.Return) and node.value is not None:
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            return
        yield "return", lambda n: ast.Return(value=ast.Constant(None))


def _remove(node: ast.AST, parent: ast.AST | None, in_function: bool) -> Iterator[tuple[str, Transform]]:
    if not in_function or not isinstance(node, ast.stmt):
        return
    removable = (
        ast.Expr,
        ast.Raise,
        ast.If,
        ast.For,
        ast.While,
        ast.Assign,
        ast.AugAssign,
        ast.AnnAssign,
        ast.Continue,
        ast.Break,
    )
    in_block = isinstance(parent, (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.ExceptHandler))
    if isinstance(node, removable) or (isinstance(node, ast.Return) and in_block):
        yield "remove", lambda n: None


def _elements(node: ast.AST, parent: ast.AST | None, field: str) -> Iterator[tuple[str, Transform]]:
    if isinstance(node, (ast.Tuple, ast.List)) and isinstance(node.ctx, ast.Store):
        return
    elements: list[ast.expr] = []
    if isinstance(node, ast.Set):
        elements = node.elts
    elif isinstance(node, (ast.Tuple, ast.List)):
        constants = all(isinstance(e, ast.Constant) for e in node.elts)
        type_tuple = (isinstance(parent, ast.ExceptHandler) and field == "type") or (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Name)
            and parent.func.id in {"isinstance", "issubclass"}
        )
        if constants or type_tuple:
            elements = node.elts
    if len(elements) >= 2:
        for i in range(len(elements)):

            def drop(n: ast.AST, i: int = i) -> ast.AST:
                n.elts = [e for j, e in enumerate(n.elts) if j != i]  # type: ignore[attr-defined]
                return n

            yield "element", drop
    if isinstance(node, ast.Dict) and node.keys:
        for i, key in enumerate(node.keys):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue

            def drop_entry(n: ast.AST, i: int = i) -> ast.AST:
                assert isinstance(n, ast.Dict)
                n.keys = [k for j, k in enumerate(n.keys) if j != i]
                n.values = [v for j, v in enumerate(n.values) if j != i]
                return n

            yield "element", drop_entry


def _keywords(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if not isinstance(node, ast.Call):
        return
    for i, kw in enumerate(node.keywords):
        if kw.arg is None or kw.arg in _SKIPPED_KEYWORDS:
            continue

        def drop(n: ast.AST, i: int = i) -> ast.AST:
            assert isinstance(n, ast.Call)
            n.keywords = [k for j, k in enumerate(n.keywords) if j != i]
            return n

        yield "keyword", drop


def _decorators(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        for i in range(len(node.decorator_list)):

            def drop(n: ast.AST, i: int = i) -> ast.AST:
                n.decorator_list = [d for j, d in enumerate(n.decorator_list) if j != i]  # type: ignore[attr-defined]
                return n

            yield "decorator", drop


def _describe(op: str, node: ast.AST, transform: Transform) -> tuple[str, str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        before = " ".join("@" + _short(d, 40) for d in node.decorator_list) + f" {node.name}"
        after_node = transform(copy.deepcopy(node))
        assert isinstance(after_node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        kept = " ".join("@" + _short(d, 40) for d in after_node.decorator_list)
        return before, f"{kept} {node.name}".strip()
    if isinstance(node, (ast.If, ast.For, ast.While)):
        head = {ast.If: "if", ast.For: "for", ast.While: "while"}[type(node)]
        target = f"{_short(node.target, 30)} in " if isinstance(node, ast.For) else ""
        subject = node.iter if isinstance(node, ast.For) else node.test
        before = f"{head} {target}{_short(subject, 60)}: ..."
        return before, "pass"
    return _short(node), _short(transform(copy.deepcopy(node)))


def _describe_site(site: _Site, op: str, transform: Transform) -> tuple[str, str]:
    before, after = _describe(op, site.node, transform)
    if isinstance(site.parent, ast.keyword) and site.parent.arg:
        # `slots=True -> slots=False`, not a bare `True -> False`: the key names the setting.
        return f"{site.parent.arg}={before}", f"{site.parent.arg}={after}"
    return before, after


def generate(module: str) -> list[Mutant]:
    """Every mutant of `module`, in a stable order."""
    path = module_path(module)
    tree = ast.parse(source(module), filename=str(path))
    out: list[Mutant] = []
    seen: Counter[str] = Counter()
    for site in _walk(tree):
        for variant, (op, transform) in enumerate(_proposals(site)):
            before, after = _describe_site(site, op, transform)
            base = f"{module}:{site.scope}:{op}:{before} -> {after}"
            seen[base] += 1
            key = base if seen[base] == 1 else f"{base} #{seen[base]}"
            line = getattr(site.node, "lineno", 0)
            end = getattr(site.node, "end_lineno", None) or line
            if isinstance(site.node, (ast.If, ast.While)):
                end = site.node.test.end_lineno or line  # the condition's lines, not the body's
            elif isinstance(site.node, ast.For):
                end = site.node.iter.end_lineno or line
            elif isinstance(site.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                end = line
            out.append(
                Mutant(
                    module=module,
                    number=len(out),
                    key=key,
                    op=op,
                    scope=site.scope,
                    in_function=site.in_function,
                    line=line,
                    end_line=end,
                    before=before,
                    after=after,
                    node_index=site.index,
                    variant=variant,
                )
            )
    return out


def mutated_tree(mutant: Mutant) -> ast.Module:
    """The module's AST with this one mutation applied (rebuilt from the source)."""
    path = module_path(mutant.module)
    tree = ast.parse(source(mutant.module), filename=str(path))
    site = next(s for s in _walk(tree) if s.index == mutant.node_index)
    op, transform = _proposals(site)[mutant.variant]
    if op != mutant.op or site.parent is None:
        raise LookupError(f"the source changed under mutant {mutant.key}")
    node = site.node
    new = transform(node)
    replacement: ast.AST = ast.Pass() if new is None else new
    ast.copy_location(replacement, node)
    if site.pos < 0:
        setattr(site.parent, site.field, replacement)
    else:
        getattr(site.parent, site.field)[site.pos] = replacement
    return ast.fix_missing_locations(tree)


def compile_mutant(mutant: Mutant) -> CodeType:
    return compile(mutated_tree(mutant), str(module_path(mutant.module)), "exec", dont_inherit=True)


def compile_original(module: str) -> CodeType:
    path = module_path(module)
    return compile(ast.parse(source(module), filename=str(path)), str(path), "exec", dont_inherit=True)
