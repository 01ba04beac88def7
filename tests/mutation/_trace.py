"""pytest plugin for the baseline run: which test executes which line of the mutated
modules, and which lines run at import time (outside every test).

Uses sys.monitoring (Python 3.12+): each line reports once per test, then its event is
disabled until the next test restarts them, so tracing costs little. Writes JSON to
$MUTATION_TRACE_OUT: {"import": {file: [lines]}, "tests": {nodeid: {"lines": {file:
[lines]}, "seconds": s, "passed": bool, "spawns": bool}}}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Generator
from typing import Any

import pytest

from tests.mutation import _profile  # noqa: F401  (same hypothesis draws as the mutant runs)

_TOOL = 4  # hypothesis uses 3 (its scrutineer); 0-2 and 5 are reserved by convention
_FILES = frozenset(os.environ.get("MUTATION_TRACE_FILES", "").split(os.pathsep)) - {""}
_IMPORT: dict[str, set[int]] = {}
_current: dict[str, set[int]] = _IMPORT
_tests: dict[str, dict[str, Any]] = {}
_spawned = False


def _line(code: Any, line: int) -> Any:
    if code.co_filename in _FILES:
        _current.setdefault(code.co_filename, set()).add(line)
    return sys.monitoring.DISABLE


sys.monitoring.use_tool_id(_TOOL, "mutation-baseline")
sys.monitoring.register_callback(_TOOL, sys.monitoring.events.LINE, _line)
sys.monitoring.set_events(_TOOL, sys.monitoring.events.LINE)

_popen_init = subprocess.Popen.__init__


def _flag_spawn(self: Any, *args: Any, **kwargs: Any) -> None:
    # A test that runs the code in a child process tests the file on disk, not the mutant.
    global _spawned
    _spawned = True
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _flag_spawn  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    global _current, _spawned
    lines: dict[str, set[int]] = {}
    _current, _spawned = lines, False
    sys.monitoring.restart_events()
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        record = _tests.setdefault(item.nodeid, {"passed": True})
        record["lines"] = {f: sorted(v) for f, v in lines.items()}
        record["seconds"] = time.perf_counter() - started
        record["spawns"] = _spawned
        _current = {}  # between tests: neither import time nor a test


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed or (report.when == "call" and report.skipped):
        _tests.setdefault(report.nodeid, {})["passed"] = False


def pytest_sessionfinish(session: pytest.Session) -> None:
    sys.monitoring.set_events(_TOOL, 0)
    out = {
        "import": {f: sorted(v) for f, v in _IMPORT.items()},
        "tests": _tests,
    }
    with open(os.environ["MUTATION_TRACE_OUT"], "w") as fh:
        json.dump(out, fh)
