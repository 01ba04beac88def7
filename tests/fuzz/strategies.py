"""Adversarial message bodies: valid bodies drawn from docs/job-update.schema.json,
then mutated (wrong types, boundaries and one past them, overflow, huge and deep
values, invalid UTF-8, BOMs, duplicate names, raw NaN/Infinity tokens, nulls,
unknown fields, trailing newlines, control characters ...), plus the Batch replies
each case meets.

The schema walker (tests/schema_strategies.py) costs ~8 ms a draw, the whole CI
budget for one case, so valid bodies are drawn once per process into a corpus
(`corpus`, seeded) and every case samples one and mutates it: hypothesis still
chooses every corpus pick, mutation, place and value, so it explores, shrinks and
replays as usual.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from handlers.contract import INT32_MAX, INT64_MAX, INT64_MIN, MAX_MESSAGE_BYTES, MAX_POOL_DEPTH, json_schema
from handlers.wire_formats import format_http_date
from tests.fuzz.rawjson import Pairs, Raw, dumps, encode
from tests.schema_strategies import draws

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "https://acct.westeurope.batch.azure.com"
OTHER = "https://other.eastus.batch.azure.com"
NOT_LISTED = "https://stranger.westeurope.batch.azure.com"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ENQUEUED = NOW - timedelta(minutes=1)
MAX_DELIVERIES = 3
BOM = b"\xef\xbb\xbf"
MAX_STRING = 64 * 1024
UNLIMITED = "P10675199DT2H48M5.4775807S"

Tree = Any
Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted Batch answer; `variant` picks headers and body details."""

    kind: str
    variant: int = 0


@dataclass(frozen=True, slots=True)
class Case:
    body: bytes
    mutation: str
    delivery_count: int = 1
    message_id: str = "m-1"
    replies: tuple[Reply, ...] = ()

    def describe(self) -> dict[str, Any]:
        shown = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        return {
            "mutation": self.mutation,
            "bytes": len(self.body),
            "body": shown.decode("utf-8", "backslashreplace"),
            "deliveryCount": self.delivery_count,
            "messageId": self.message_id,
            "replies": [f"{r.kind}/{r.variant}" for r in self.replies],
        }


# --- The corpus of valid bodies ------------------------------------------------------


@functools.cache
def corpus(size: int, seed: int) -> tuple[Tree, ...]:
    """`size` bodies drawn from the published schema (seeded), plus the valid samples."""
    drawn: list[Tree] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=size,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(draws(json_schema()))
    def collect(body: Tree) -> None:
        drawn.append(body)

    collect()
    samples = [
        json.loads(path.read_bytes())
        for path in sorted((ROOT / "samples").glob("*.json"))
        if not path.name.startswith("invalid")
    ]
    return (*samples, *drawn)


def _retarget(tree: Tree, draw: Draw) -> Tree:
    """Point a drawn body at the allow-list and a current ocpDate, so most cases get
    past admission and reach the plan's later decisions (random hosts and dates from
    the schema would almost all stop at the allow-list or the clock check)."""
    if not isinstance(tree, dict):
        return tree
    origin = draw(st.sampled_from([ACCOUNT, OTHER, None]))
    if "jobUrl" in tree:
        job = tree["jobUrl"].rstrip("/").rpartition("/jobs/")[2]
        tree["jobUrl"] = f"{origin or ACCOUNT}/jobs/{job}"
    elif origin is None:
        tree.pop("endpoint", None)
    else:
        tree["endpoint"] = origin
    options = tree.get("options")
    if isinstance(options, dict) and "ocpDate" in options:
        options["ocpDate"] = format_http_date(NOW + timedelta(seconds=draw(st.integers(-600, 600))))
    return tree


# --- Where to mutate ----------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _paths(tree: Tree, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            out.append((*prefix, index))
            out.extend(_paths(value, (*prefix, index)))
    return out


def _objects(tree: Tree, prefix: Path_ = ()) -> list[Path_]:
    found = [prefix] if isinstance(tree, dict) else []
    if isinstance(tree, dict | list):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for key, value in items:
            found.extend(_objects(value, (*prefix, key)))
    return found


def _get(tree: Tree, path: Path_) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: Tree, path: Path_, value: Any) -> Tree:
    """Set `path`, creating (or replacing with) containers on the way."""
    if not path:
        return value
    if not isinstance(tree, dict | list):
        tree = {}
    node = tree
    for part, following in itertools.pairwise(path):
        child = _child(node, part)
        wanted = list if isinstance(following, int) else dict
        if not isinstance(child, wanted):
            child = wanted()
            _put(node, part, child)
        node = child
    _put(node, path[-1], value)
    return tree


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _put(node: Any, part: str | int, value: Any) -> None:
    if isinstance(node, list):
        index = part if isinstance(part, int) else 0
        if index < len(node):
            node[index] = value
        else:
            node.append(value)
    else:
        node[part] = value


def _peek(tree: Tree, path: Path_) -> Any:
    try:
        return _get(tree, path)
    except (KeyError, IndexError, TypeError):
        return None


def _pick_path(draw: Draw, tree: Tree) -> Path_:
    paths = _paths(tree)
    return draw(st.sampled_from(paths)) if paths else ("update",)


def _pick_string_path(draw: Draw, tree: Tree) -> Path_:
    paths = [p for p in _paths(tree) if isinstance(_get(tree, p), str)]
    return draw(st.sampled_from(paths)) if paths else ("jobId",)


# --- Values -------------------------------------------------------------------------

INT_EDGES = [
    INT32_MAX,
    INT32_MAX + 1,
    -(2**31),
    -(2**31) - 1,
    INT64_MAX,
    INT64_MAX + 1,
    INT64_MIN,
    INT64_MIN - 1,
    2**64,
    10**100,
    Raw("1" + "0" * 400),  # past any float: Python reads it as an int, exactly
    Raw("-" + "9" * 5000),  # past CPython's int-from-text digit limit (4300)
]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0.0", "5e-324", "1e-999"]
BAD_NUMBERS = ["01", "+1", ".5", "1.", "0x1F", "1e", "--1", "Infinity1", "nan", "inf", "1_000", "١"]
FLOATS_FOR_INTS = ["1.0", "1E2", "1e0", "-0.0", "500.0", "0.5", "1e2"]
ODD_STRINGS = [
    "",
    " ",
    "\n",
    "null",
    "true",
    "0",
    "ａ",  # full-width a
    "１２",  # full-width digits: int() would read them, [0-9] must not
    "K",  # Kelvin sign: lower() gives an ASCII k
    "İ",  # lower() grows it to two code points
    "\u202e",
    "\ufeff",
    "😀",
    "x" * 300,
]
WRONG_TYPES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    "1",
    "",
    [],
    [1],
    {},
    {"a": 1},
    Raw("1.0"),
]
TRAILERS = ["\n", "\r\n", "\r", " ", "\t", "\u2028", "\u0085", "\x00", "\u00a0", "\x0b", "\f"]
CONTROL = [chr(c) for c in (*range(0, 32), 127)]
INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\xc3",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xe2\x82",
]
UNKNOWN_NAMES = [
    "priorty",
    "",
    "PRIORITY",
    "jobid",
    "JobId",
    "__proto__",
    "odata.type",
    "x\u0000",
    "é",
    "dryrun",
]


def _boundaries() -> list[tuple[Path_, list[Any]]]:
    rfc = format_http_date
    skew = timedelta(minutes=15)
    second = timedelta(seconds=1)
    return [
        (("update", "priority"), [-1001, -1000, 0, 1000, 1001]),
        (("update", "maxParallelTasks"), [-2, -1, 0, 1, INT32_MAX, INT32_MAX + 1]),
        (("update", "constraints", "maxTaskRetryCount"), [-2, -1, 0, INT32_MAX, INT32_MAX + 1]),
        (("options", "timeout"), [0, 1, 30, 31, -1]),
        (
            ("update", "constraints", "maxWallClockTime"),
            [
                UNLIMITED,
                "P10675199DT2H48M5.4775808S",
                "P10675199DT2H48M6S",
                "P9999999D",
                "P10000000D",
                "P9999W",
                "P10000W",
                "PT0S",
                "P0D",
                "PT1.1234567S",
                "PT1.12345678S",
                "PT99999999M",
                "PT999999999M",
                "PT999999999S",
                "PT9999999999S",
                "10675199.02:48:05.4775807",
                "10675199.02:48:05.4775808",
                "9999999.23:59:59.9999999",
                "23:59:59",
                "24:00:00",
                "00:60:00",
                "-PT1H",
                "PT",
                "P",
                "P1Y",
                "P1M",
                "p1d",
                "pt1h",
                "PT1H\n",
                " PT1H",
                "P１D",
                "PT1,5S",
                "P1DT",
            ],
        ),
        (("jobId",), ["a" * 64, "a" * 65, "", "a/b", "..", "a\n", "ａ", "a b", "%2e", "-", "_"]),
        (("update", "poolInfo", "poolId"), ["p" * 64, "p" * 65, "", "p/q"]),
        (
            ("update", "poolInfo", "autoPoolSpecification", "autoPoolIdPrefix"),
            ["a" * 20, "a" * 21, "", "a\n", "a.b"],
        ),
        (("update", "metadata", 0, "name"), ["n" * 1024, "n" * 1025, "", " ", "n\n"]),
        (("update", "metadata", 0, "value"), ["v" * 8192, "v" * 8193, "", "v\n"]),
        (
            ("options", "clientRequestId"),
            [
                "9C4D50EE-2D56-4CD3-8152-34347DC9F2B0",
                "{9C4D50EE-2D56-4CD3-8152-34347DC9F2B0}",
                "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0\n",
                "9C4D50EE2D564CD3815234347DC9F2B0",
                "9C4D50EE-2D56-4CD3-8152-34347DC9F2B",
            ],
        ),
        (
            ("conditions", "ifMatch"),
            [
                '"x"',
                '""',
                "",
                'W/"x"',
                "W/x",
                "*",
                "**",
                "a" * 256,
                "a" * 257,
                '"' + "a" * 256 + '"',
                "a b",
                '"a',
            ],
        ),
        (
            ("options", "ocpDate"),
            [
                rfc(NOW),
                rfc(NOW + skew),
                rfc(NOW - skew),
                rfc(NOW + skew + second),
                rfc(NOW - skew - second),
                (NOW + skew).isoformat(),
                (NOW - skew - second).isoformat(),
                "2026-01-01T12:00:00+14:00",
                "2026-01-01T12:00:00",
                "2026-01-01T12:00:00.1234567Z",
                "Thu, 01 Jan 2026 12:00:00 UTC",
                "Mon, 01 Jan 2026 12:00:00 GMT",  # wrong weekday, right date
            ],
        ),
        (
            ("conditions", "ifModifiedSince"),
            [
                "0001-01-01T00:00:00+14:00",
                "0001-01-01T00:00:00-14:00",
                "9999-12-31T23:59:59-14:00",
                "9999-12-31T23:59:59+14:00",
                "Mon, 01 Jan 0001 00:00:00 GMT",
                "Fri, 31 Dec 9999 23:59:59 GMT",
                "2024-02-29T00:00:00Z",
                "2023-02-29T00:00:00Z",
                "Mon, 29 Feb 2100 00:00:00 GMT",
                "2000-02-29T24:00:00Z",
                "2025-01-01T00:00:00+24:00",
            ],
        ),
        (
            ("endpoint",),
            [
                ACCOUNT,
                ACCOUNT + ":443",
                ACCOUNT + ":0443",
                ACCOUNT + "/",
                ACCOUNT.upper(),
                ACCOUNT + ".",
                ACCOUNT + ":8443",
                ACCOUNT + ":99999",
                ACCOUNT + ":0",
                OTHER,
                NOT_LISTED,
                "https://localhost",
                "https://127.0.0.1",
                "http://acct.westeurope.batch.azure.com",
                "https://user@acct.westeurope.batch.azure.com",
                "https://acct..westeurope.batch.azure.com",
                "https://" + "a" * 64 + ".westeurope.batch.azure.com",
                ACCOUNT + "\n",
            ],
        ),
        (
            ("jobUrl",),
            [
                ACCOUNT + "/jobs/j",
                ACCOUNT + "/jobs/j/",
                ACCOUNT + ":443/jobs/j",
                ACCOUNT + "/jobs/",
                ACCOUNT + "/jobs/j/tasks",
                NOT_LISTED + "/jobs/j",
                ACCOUNT + "/jobs/" + "j" * 65,
                ACCOUNT + "/jobs/j?x=1",
            ],
        ),
        (("mode",), ["MERGE", "Merge", "merge ", "REPLACE", "patch", ""]),
        (("update", "onAllTasksComplete"), ["TerminateJob", "NOACTION", "terminate", "noaction\n"]),
        (
            ("update", "networkConfiguration", "subnetId"),
            [
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/n",
                "/SUBSCRIPTIONS/s/resourcegroups/g/providers/p/virtualnetworks/v/subnets/n",
                "/subscriptions/s/resourceGroups/g/providers/p/virtualNetworks/v/subnets/",
                "/subscriptions/s/resourceGroups/g/providers/p/virtualNetworks/v/subnets/n/x",
                "/subscriptions/s/resourceGroups/g/providers/p/virtualNetworks/v/subnets/n\n",
            ],
        ),
        (("schemaVersion",), ["1.0", "1.00", "1", Raw("1.0"), "2.0", "1.0\n"]),
        (("options", "dryRun"), [True, False, "true", 1]),
    ]


BOUNDARIES = _boundaries()


# --- Mutations ----------------------------------------------------------------------


def _write(tree: Tree, draw: Draw) -> bytes:
    return encode(dumps(tree, ascii_only=draw(st.booleans())))


def m_valid(draw: Draw, tree: Tree) -> bytes:
    return _write(tree, draw)


def m_reformat(draw: Draw, tree: Tree) -> bytes:
    indent = draw(st.sampled_from([None, "", " ", "\t", "  "]))
    text = dumps(tree, ascii_only=draw(st.booleans()), indent=indent)
    around = draw(st.sampled_from(["", "\n", "\r\n", " \t", "\n\n\n"]))
    return encode(around + text + around)


def m_bom(draw: Draw, tree: Tree) -> bytes:
    body = _write(tree, draw)
    how = draw(st.sampled_from(["one", "two", "after-space", "utf16le", "utf16be", "utf32", "middle"]))
    if how == "one":
        return BOM + body
    if how == "two":
        return BOM + BOM + body
    if how == "after-space":
        return b" " + BOM + body
    if how == "utf16le":
        return b"\xff\xfe" + dumps(tree).encode("utf-16-le")
    if how == "utf16be":
        return b"\xfe\xff" + dumps(tree).encode("utf-16-be")
    if how == "utf32":
        return dumps(tree).encode("utf-32")
    return body[:1] + BOM + body[1:]


def m_wrong_type(draw: Draw, tree: Tree) -> bytes:
    path = _pick_path(draw, tree)
    current = _peek(tree, path)
    choices = [v for v in WRONG_TYPES if type(v) is not type(current)] or WRONG_TYPES
    return _write(_set(tree, path, draw(st.sampled_from(choices))), draw)


def m_null(draw: Draw, tree: Tree) -> bytes:
    path = draw(
        st.sampled_from([*_paths(tree), ("update", "poolInfo", "autoPoolSpecification", "pool", "x")])
    )
    return _write(_set(tree, path, None), draw)


def m_boundary(draw: Draw, tree: Tree) -> bytes:
    path, values = draw(st.sampled_from(BOUNDARIES))
    return _write(_set(tree, path, draw(st.sampled_from(values))), draw)


def m_int_overflow(draw: Draw, tree: Tree) -> bytes:
    known = [p for p, _ in BOUNDARIES[:4]]
    pool = ("update", "poolInfo", "autoPoolSpecification", "pool", "targetDedicatedNodes")
    path = draw(st.sampled_from([*known, pool, _pick_path(draw, tree)]))
    return _write(_set(tree, path, draw(st.sampled_from(INT_EDGES))), draw)


def m_float_for_int(draw: Draw, tree: Tree) -> bytes:
    path = draw(st.sampled_from([p for p, _ in BOUNDARIES[:4]]))
    return _write(_set(tree, path, Raw(draw(st.sampled_from(FLOATS_FOR_INTS)))), draw)


def m_non_finite(draw: Draw, tree: Tree) -> bytes:
    pool = (
        "update",
        "poolInfo",
        "autoPoolSpecification",
        "pool",
        draw(st.sampled_from(["a", "resizeTimeout"])),
    )
    path = draw(st.sampled_from([pool, _pick_path(draw, tree), ("update", "priority")]))
    return _write(_set(tree, path, Raw(draw(st.sampled_from(NON_FINITE)))), draw)


def m_bad_number(draw: Draw, tree: Tree) -> bytes:
    return _write(_set(tree, _pick_path(draw, tree), Raw(draw(st.sampled_from(BAD_NUMBERS)))), draw)


def m_duplicate_key(draw: Draw, tree: Tree) -> bytes:
    objects = [p for p in _objects(tree) if _get(tree, p)]
    if not objects:
        return _write(Pairs([("schemaVersion", "1.0"), ("schemaVersion", "1.0")]), draw)
    path = draw(st.sampled_from(objects))
    node = _get(tree, path)
    name = draw(st.sampled_from(sorted(node)))
    again = draw(st.sampled_from([node[name], None, True, False, 1, "other", {}]))
    pairs = list(node.items())
    at = draw(st.integers(0, len(pairs)))
    pairs.insert(at, (name, again))
    return _write(_set(tree, path, Pairs(pairs)) if path else Pairs(pairs), draw)


def m_dry_run_twice(draw: Draw, tree: Tree) -> bytes:
    """The case the duplicate rule exists for: `dryRun: true, dryRun: false` must not write."""
    options = tree.get("options") if isinstance(tree, dict) else None
    rest = [(k, v) for k, v in (options or {}).items() if k != "dryRun"] if isinstance(options, dict) else []
    first, second = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return _write(_set(tree, ("options",), Pairs([("dryRun", first), *rest, ("dryRun", second)])), draw)


def m_unknown_field(draw: Draw, tree: Tree) -> bytes:
    objects = _objects(tree) or [()]
    path = draw(st.sampled_from(objects))
    name = draw(st.sampled_from(UNKNOWN_NAMES))
    value = draw(st.sampled_from([1, "x", None, {}, [], True]))
    node = _get(tree, path) if isinstance(tree, dict) else {}
    if isinstance(node, dict) and name not in node:
        node[name] = value
    return _write(tree, draw)


def m_long_names(draw: Draw, tree: Tree) -> bytes:
    """Many unknown (or repeated) names, long and non-ASCII: each comes back in a
    problem's path, and JSON writes a non-ASCII character as 6 bytes."""
    count = draw(st.sampled_from([10, 60, 120]))
    length = draw(st.sampled_from([100, 1000, 2000]))
    char = draw(st.sampled_from(["é", "a", "\x01", "😀"]))
    where = draw(st.sampled_from([(), ("update",), ("options",), ("update", "constraints")]))
    repeat = draw(st.booleans())
    pairs = [(char * length + (str(n % 2) if repeat else str(n)), n) for n in range(count)]
    node = _peek(tree, where)
    base = list(node.items()) if isinstance(node, dict) else []
    value = Pairs(base + pairs)
    # Raw UTF-8 (2 bytes for é) keeps the body under 256 KiB while the event grows.
    return encode(dumps(_set(tree, where, value) if where else value, ascii_only=False))


def m_huge_string(draw: Draw, tree: Tree) -> bytes:
    path = draw(
        st.sampled_from(
            [
                _pick_string_path(draw, tree),
                ("update", "metadata", 0, "value"),
                ("update", "poolInfo", "autoPoolSpecification", "pool", "displayName"),
            ]
        )
    )
    size = draw(
        st.sampled_from([MAX_STRING - 1, MAX_STRING, MAX_STRING + 1, 200_000, MAX_MESSAGE_BYTES + 10])
    )
    char = draw(st.sampled_from(["x", "é", "😀", "\\", '"', "\x01"]))
    value = char * (size // len(char.encode()) if char not in '\\"\x01' else size // 6)
    # Written by json.dumps up front: the tree writer is per-node Python, slow at this size.
    return _write(_set(tree, path, Raw(json.dumps(value, ensure_ascii=draw(st.booleans())))), draw)


def m_huge_array(draw: Draw, tree: Tree) -> bytes:
    how = draw(st.sampled_from(["metadata", "metadata-dup-names", "pool-list", "pool-object"]))
    if how.startswith("metadata"):  # the contract's 1000-item limit, and one past it
        count = draw(st.sampled_from([1000, 1001]))
        same = how.endswith("dup-names")
        items = [{"name": "k" if same else f"k{n}", "value": str(n)} for n in range(count)]
        return _write(_set(tree, ("update", "metadata"), Raw(json.dumps(items))), draw)
    pool = ("update", "poolInfo", "autoPoolSpecification", "pool")
    # Sizes either side of the 256 KiB message limit (a zero is 2 bytes, a key ~12).
    if how == "pool-object":
        value: Any = {f"k{n}": n for n in range(draw(st.sampled_from([1000, 25_000])))}
    else:
        value = [0] * draw(st.sampled_from([1000, 100_000, 140_000]))
    _set(tree, ("update", "poolInfo"), {"autoPoolSpecification": {}})
    return _write(_set(tree, (*pool, "x"), Raw(json.dumps(value))), draw)


def m_pool_depth(draw: Draw, tree: Tree) -> bytes:
    """Nesting inside the pool around the contract's 32 levels (dicts and lists)."""
    depth = draw(
        st.sampled_from([MAX_POOL_DEPTH - 2, MAX_POOL_DEPTH - 1, MAX_POOL_DEPTH, MAX_POOL_DEPTH + 1, 60])
    )
    leaf = draw(st.sampled_from([1, "x", True, {}, []]))
    value: Any = leaf
    for level in range(depth):
        value = {"a": value} if draw(st.booleans()) or level == depth - 1 else [value]
    _set(tree, ("update", "poolInfo"), {"autoPoolSpecification": {"pool": value}})
    return _write(tree, draw)


def m_deep_nesting(draw: Draw, tree: Tree) -> bytes:
    depth = draw(st.sampled_from([64, 127, 128, 129, 255, 256, 257, 1000, 10_000, 100_000]))
    shape = draw(st.sampled_from(["list", "object", "mixed"]))
    if shape == "list":
        raw = "[" * depth + "]" * depth
    elif shape == "object":
        raw = '{"a":' * depth + "1" + "}" * depth
    else:
        raw = '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2)
    pool = ("update", "poolInfo", "autoPoolSpecification", "pool", "a")
    path = draw(st.sampled_from([pool, _pick_path(draw, tree), ("update",)]))
    return _write(_set(tree, path, Raw(raw)), draw)


def m_invalid_utf8(draw: Draw, tree: Tree) -> bytes:
    body = _write(tree, draw)
    bad = draw(st.sampled_from(INVALID_UTF8))
    if draw(st.booleans()):  # inside a string value
        marker = "\u0000MARK\u0000"
        path = _pick_string_path(draw, tree)
        _set(tree, path, marker)
        body = encode(dumps(tree, ascii_only=False))
        return body.replace(b"\x00MARK\x00", bad, 1) if b"\x00MARK\x00" in body else body + bad
    at = draw(st.integers(0, len(body)))
    return body[:at] + bad + body[at:]


def m_lone_surrogate(draw: Draw, tree: Tree) -> bytes:
    path = _pick_string_path(draw, tree)
    value = draw(st.sampled_from(["\ud800", "\udfff", "a\ud83d", "\ude00b", "\ud83d\ude00"]))
    return encode(dumps(_set(tree, path, value), ascii_only=draw(st.booleans())))


def m_trailing_newline(draw: Draw, tree: Tree) -> bytes:
    path = _pick_string_path(draw, tree)
    current = _peek(tree, path)
    trailer = draw(st.sampled_from(TRAILERS))
    value = (current if isinstance(current, str) else "") + trailer
    if draw(st.booleans()):
        value = trailer + value.removesuffix(trailer)
    return _write(_set(tree, path, value), draw)


def m_control_char(draw: Draw, tree: Tree) -> bytes:
    char = draw(st.sampled_from(CONTROL))
    how = draw(st.sampled_from(["escaped", "raw-in-string", "raw-between-tokens"]))
    if how == "escaped":
        path = _pick_string_path(draw, tree)
        current = _peek(tree, path)
        text = current if isinstance(current, str) else ""
        at = draw(st.integers(0, len(text)))
        return _write(_set(tree, path, text[:at] + char + text[at:]), draw)
    body = _write(tree, draw)
    if how == "raw-in-string":
        at = body.find(b'":"')
        at = at + 3 if at >= 0 else 1
    else:
        at = draw(st.integers(0, len(body)))
    return body[:at] + char.encode() + body[at:]


def m_truncate(draw: Draw, tree: Tree) -> bytes:
    body = _write(tree, draw)
    return body[: draw(st.integers(0, max(0, len(body) - 1)))]


def m_byte_flip(draw: Draw, tree: Tree) -> bytes:
    body = bytearray(_write(tree, draw))
    if body:
        body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    return bytes(body)


def m_trailing_data(draw: Draw, tree: Tree) -> bytes:
    extra = draw(
        st.sampled_from([b"\n", b"\r\n", b" ", b"\x00", b"{}", b"\n{}", b"]", b",", b"\x1a", b"\x0c"])
    )
    return _write(tree, draw) + extra


def m_json_lines(draw: Draw, tree: Tree) -> bytes:
    """Two objects on two lines: one message body to the function, two to `check`."""
    body = _write(tree, draw)
    return body + draw(st.sampled_from([b"\n", b"\r\n"])) + body


def m_not_object(draw: Draw, tree: Tree) -> bytes:
    return draw(
        st.sampled_from(
            [
                _write([tree], draw),
                b'"schemaVersion"',
                b"1",
                b"null",
                b"true",
                b"[]",
                b'""',
                b"",
                b"   ",
                b"\n",
                BOM,
                b"{",
                b"}",
                b"{}",
            ]
        )
    )


def m_oversize(draw: Draw, tree: Tree) -> bytes:
    body = _write(tree, draw)
    bom = draw(st.booleans())
    target = MAX_MESSAGE_BYTES + draw(st.sampled_from([-1, 0, 1, 1000]))
    pad = target - len(body) - (len(BOM) if bom else 0)
    if pad > 0:  # JSON white space after the opening brace keeps the body valid
        body = body[:1] + b" " * pad + body[1:] if body.startswith(b"{") else body + b" " * pad
    return (BOM if bom else b"") + body


def m_case_variant(draw: Draw, tree: Tree) -> bytes:
    objects = [p for p in _objects(tree) if _get(tree, p)] or [()]
    path = draw(st.sampled_from(objects))
    node = _get(tree, path) if isinstance(tree, dict) else {}
    if isinstance(node, dict) and node:
        name = draw(st.sampled_from(sorted(node)))
        variant = draw(st.sampled_from([name.upper(), name.lower(), name[:1].upper() + name[1:], name + " "]))
        if variant != name and variant not in node:
            node[variant] = node.pop(name)
    return _write(tree, draw)


def m_odd_string(draw: Draw, tree: Tree) -> bytes:
    return _write(_set(tree, _pick_string_path(draw, tree), draw(st.sampled_from(ODD_STRINGS))), draw)


def m_conditions(draw: Draw, tree: Tree) -> bytes:
    """Any combination of the four conditions, values valid or not."""
    values = {
        "ifMatch": ['"0x8D1"', "0x8D1", "*"],
        "ifNoneMatch": ['"0x8D1"', "*"],
        "ifModifiedSince": [format_http_date(NOW - timedelta(days=1)), "2026-01-01T11:00:00Z"],
        "ifUnmodifiedSince": [format_http_date(NOW + timedelta(days=1)), "2026-01-01T13:00:00+01:00"],
    }
    names = draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=4))
    chosen = {name: draw(st.sampled_from(values[name])) for name in names}
    if draw(st.booleans()):
        tree["mode"] = draw(st.sampled_from(["merge", "replace"]))
    return _write(_set(tree, ("conditions",), chosen), draw)


def m_empty_containers(draw: Draw, tree: Tree) -> bytes:
    path, value = draw(
        st.sampled_from(
            [
                (("update",), {}),
                (("conditions",), {}),
                (("options",), {}),
                (("update", "metadata"), []),
                (("update", "constraints"), {}),
                (("update", "poolInfo"), {}),
                (("update", "poolInfo"), {"autoPoolSpecification": {}}),
                (("update", "poolInfo"), {"autoPoolSpecification": {"pool": {}}}),
                (("update", "poolInfo"), {"poolId": "p", "autoPoolSpecification": {}}),
                (("update", "networkConfiguration"), {}),
                (("update", "metadata"), [{}]),
                (("update", "metadata"), [{"name": "a"}]),
            ]
        )
    )
    return _write(_set(tree, path, value), draw)


def m_drop_field(draw: Draw, tree: Tree) -> bytes:
    paths = _paths(tree)
    if paths:
        path = draw(st.sampled_from(paths))
        parent = _get(tree, path[:-1])
        del parent[path[-1]]
    return _write(tree, draw)


MUTATIONS: dict[str, Callable[[Draw, Tree], bytes]] = {
    "valid": m_valid,
    "reformat": m_reformat,
    "bom": m_bom,
    "wrong-type": m_wrong_type,
    "null": m_null,
    "boundary": m_boundary,
    "int-overflow": m_int_overflow,
    "float-for-int": m_float_for_int,
    "non-finite": m_non_finite,
    "bad-number": m_bad_number,
    "duplicate-key": m_duplicate_key,
    "dry-run-twice": m_dry_run_twice,
    "unknown-field": m_unknown_field,
    "long-names": m_long_names,
    "huge-string": m_huge_string,
    "huge-array": m_huge_array,
    "pool-depth": m_pool_depth,
    "deep-nesting": m_deep_nesting,
    "invalid-utf8": m_invalid_utf8,
    "lone-surrogate": m_lone_surrogate,
    "trailing-newline": m_trailing_newline,
    "control-char": m_control_char,
    "truncate": m_truncate,
    "byte-flip": m_byte_flip,
    "trailing-data": m_trailing_data,
    "json-lines": m_json_lines,
    "not-object": m_not_object,
    "oversize": m_oversize,
    "case-variant": m_case_variant,
    "odd-string": m_odd_string,
    "conditions": m_conditions,
    "empty-containers": m_empty_containers,
    "drop-field": m_drop_field,
}
# Most mutations break the message; these keep it valid (or nearly), so they are drawn
# more often and the plan's later paths (merge rounds, 412 checks, dry runs) get cases.
_WEIGHTS = {"valid": 4, "reformat": 2, "conditions": 2, "boundary": 2, "bom": 2}
WEIGHTED = tuple(name for name in MUTATIONS for _ in range(_WEIGHTS.get(name, 1)))


# --- Batch replies ------------------------------------------------------------------

REPLY_KINDS = [
    "ok",
    "ok-echo",
    "ok-noetag",
    "ok-empty",
    "ok-garbage",
    "412",
    "400",
    "404",
    "409",
    "413",
    "error-echo",
    "error-odd",
    "503",
    "429",
    "500",
    "network",
]


def replies() -> st.SearchStrategy[tuple[Reply, ...]]:
    reply = st.builds(Reply, st.sampled_from(REPLY_KINDS), st.integers(0, 15))
    return st.lists(reply, max_size=8).map(tuple)


# --- Cases --------------------------------------------------------------------------


def cases(bodies: tuple[Tree, ...], *, mutations: tuple[str, ...] = WEIGHTED) -> st.SearchStrategy[Case]:
    @st.composite
    def case(draw: Draw) -> Case:
        tree = copy.deepcopy(draw(st.sampled_from(bodies)))
        if draw(st.integers(0, 9)) < 8:
            tree = _retarget(tree, draw)
        name = draw(st.sampled_from(mutations))
        body = MUTATIONS[name](draw, tree)
        return Case(
            body=body,
            mutation=name,
            delivery_count=draw(st.integers(1, MAX_DELIVERIES + 1)),
            message_id=draw(st.sampled_from(["m-1", "m-2", ""])),  # "" -> the key is a digest of the body
            replies=draw(replies()),
        )

    return case()
