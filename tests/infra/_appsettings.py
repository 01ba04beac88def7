"""Read the app settings that infra/ sets from the Bicep source (test helper).

No Bicep compiler here, and pycep (checkov's parser) is not an app dependency, so
this is a small scanner for the one shape infra/app/function.bicep uses on purpose:

    appSettings: [
      {
        name: 'LITERAL_NAME'
        value: <any Bicep expression>
      }
      ...
    ]

It understands Bicep strings ('...', with \\' escapes and ${...} interpolation;
'''...''' multi-line), // and /* */ comments, and bracket nesting. Anything it
cannot verify is an ERROR, never a silent skip: a non-literal or interpolated name, a
`for` expression or variable in place of the list, an entry without a name, app
settings set through a `Microsoft.Web/sites/config` resource or an AVM-style
`appSettingsKeyValuePairs`. When pycep is importable, test_app_settings.py also
cross-checks the names with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


class BicepScanError(ValueError):
    """infra sets app settings in a shape this scanner cannot verify."""


@dataclass
class AppSetting:
    name: str
    value: str  # the Bicep expression, verbatim (quotes included for literals)
    file: str
    line: int

    @property
    def literal(self) -> str | None:
        """The value if it is a plain string literal without interpolation, else None."""
        v = self.value.strip()
        if len(v) >= 2 and v[0] == v[-1] == "'" and "${" not in v and not v.startswith("'''"):
            return v[1:-1].replace("\\'", "'")
        return None


@dataclass
class Scan:
    settings: list[AppSetting] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.settings]


def strip_comments(text: str) -> str:
    """The text with comments blanked (same length and line numbers; strings kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _skip_string(text: str, i: int) -> int:
    """Index just past the string starting at text[i]."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text) and text[j] != "'":
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _string_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every string literal in comment-free text."""
    spans: list[tuple[int, int]] = []
    j = 0
    while j < len(text):
        if text[j] == "'":
            end = _skip_string(text, j)
            spans.append((j, end))
            j = end
        else:
            j += 1
    return spans


def _matching(text: str, i: int) -> int:
    """Index of the bracket closing the one at text[i] ([ { or ()."""
    pairs = {"[": "]", "{": "}", "(": ")"}
    stack = [pairs[text[i]]]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "'":
            j = _skip_string(text, j)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                raise BicepScanError(f"unbalanced brackets near offset {j}")
            if not stack:
                return j
        j += 1
    raise BicepScanError("unclosed bracket")


def _top_level_items(body: str) -> list[tuple[int, str]]:
    """(offset, text) of each top-level {...} in the body of a list; errors on anything else."""
    items: list[tuple[int, str]] = []
    j = 0
    while j < len(body):
        c = body[j]
        if c.isspace() or c == ",":
            j += 1
        elif c == "{":
            end = _matching(body, j)
            items.append((j, body[j : end + 1]))
            j = end + 1
        else:
            snippet = body[j : j + 40].split("\n")[0]
            raise BicepScanError(f"appSettings list holds something other than literal objects: {snippet!r}")
    return items


def _properties(obj: str) -> dict[str, str]:
    """Top-level `key: expression` pairs of a Bicep object literal (one per line)."""
    inner = obj[1:-1]
    props: dict[str, str] = {}
    j = 0
    key_re = re.compile(r"\s*(?:'([^']*)'|([A-Za-z_][A-Za-z0-9_]*))\s*:\s*")
    while j < len(inner):
        if inner[j].isspace() or inner[j] == ",":
            j += 1
            continue
        m = key_re.match(inner, j)
        if not m:
            raise BicepScanError(f"cannot read object key near {inner[j : j + 40]!r}")
        key = m.group(1) or m.group(2)
        k = m.end()
        start = k
        # The value runs to the end of the line, or further while brackets are open.
        while k < len(inner) and inner[k] != "\n":
            c = inner[k]
            if c == "'":
                k = _skip_string(inner, k)
                continue
            if c in "[{(":
                k = _matching(inner, k) + 1
                continue
            k += 1
        props[key] = inner[start:k].strip().rstrip(",").strip()
        j = k
    return props


def scan_text(text: str, file: str = "<text>") -> Scan:
    scan = Scan()
    clean = strip_comments(text)

    def line_of(offset: int) -> int:
        return clean.count("\n", 0, offset) + 1

    for pattern, what in (
        (r"'Microsoft\.Web/sites/config@", "a Microsoft.Web/sites/config resource"),
        (r"resource\s+\w+\s+'config'", "a nested 'config' resource"),
        (r"\bappSettingsKeyValuePairs\b", "appSettingsKeyValuePairs (AVM module)"),
    ):
        for m in re.finditer(pattern, clean):
            scan.errors.append(
                f"{file}:{line_of(m.start())}: app settings set through {what}: not verifiable"
            )

    spans = _string_spans(clean)
    i = 0
    while True:
        m = re.compile(r"\bappSettings\s*:").search(clean, i)
        if not m:
            break
        if any(a <= m.start() < b for a, b in spans):  # inside a string literal
            i = m.end()
            continue
        k = m.end()
        while k < len(clean) and clean[k] in " \t":
            k += 1
        if k >= len(clean) or clean[k] != "[":
            scan.errors.append(f"{file}:{line_of(m.start())}: appSettings is not a literal list")
            i = m.end()
            continue
        try:
            end = _matching(clean, k)
        except BicepScanError as exc:
            scan.errors.append(f"{file}:{line_of(k)}: {exc}")
            break
        body = clean[k + 1 : end]
        if re.match(r"\s*for\b", body):
            scan.errors.append(
                f"{file}:{line_of(k)}: appSettings is a `for` expression: names not verifiable"
            )
            i = end
            continue
        try:
            items = _top_level_items(body)
        except BicepScanError as exc:
            scan.errors.append(f"{file}:{line_of(k)}: {exc}")
            i = end
            continue
        for offset, obj in items:
            line = line_of(k + 1 + offset)
            try:
                props = _properties(obj)
            except BicepScanError as exc:
                scan.errors.append(f"{file}:{line}: {exc}")
                continue
            raw_name = props.get("name")
            if raw_name is None or "value" not in props:
                scan.errors.append(f"{file}:{line}: app setting entry needs `name` and `value`")
                continue
            literal = re.fullmatch(r"'([^'\\$]*)'", raw_name)
            if not literal or not NAME_RE.match(literal.group(1)):
                scan.errors.append(f"{file}:{line}: app setting name {raw_name!r} is not a plain literal")
                continue
            scan.settings.append(AppSetting(literal.group(1), props["value"], file, line))
        i = end
    return scan


def scan_paths(paths: list[Path], root: Path) -> Scan:
    total = Scan()
    for path in paths:
        part = scan_text(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
        total.settings += part.settings
        total.errors += part.errors
    return total


def compare(
    names: list[str], aliases: set[str], required: tuple[str, ...], host: tuple[str, ...]
) -> list[str]:
    """Problems between the names infra sets and what the settings module declares."""
    problems: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"{name}: set twice by infra")
        seen.add(name)
    for name in required:
        if name not in seen:
            problems.append(f"{name}: in handlers.settings.REQUIRED_IN_AZURE but not set by infra")
    for name in sorted(seen):
        if name not in aliases and name not in host:
            problems.append(f"{name}: set by infra but neither a Settings alias nor in HOST_SETTINGS")
    return problems
