"""pytest plugin: run function-body mutants in forked children of one collected session.

The tests are collected once, with the real modules imported. For each mutant a child
is forked; it swaps the `__code__` of every live function object whose code the
mutation changed (closures already handed to pydantic included), runs the mutant's
tests with `runtestprotocol`, and exits 1 on the first failure, 0 if all pass. A
child that cannot patch (the mutation changed a closure's free variables, or touched
code that ran at import) exits 4 and the mutant goes to a fresh-import run instead.

$MUTATION_TASKS: JSON list of {"module", "number", "nodeids", "timeout"};
$MUTATION_RESULTS: JSON Lines written here, one per task; $MUTATION_JOBS: children at once.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from tests.mutation import _profile  # noqa: F401
from tests.mutation.mutants import Mutant, compile_mutant, compile_original, generate, module_path

EXIT_SURVIVED, EXIT_KILLED, EXIT_FALLBACK = 0, 1, 4


def _codes(code: types.CodeType) -> dict[tuple[str, int], types.CodeType]:
    """Every function code object inside a module's code, by (qualname, first line)."""
    out: dict[tuple[str, int], types.CodeType] = {}
    stack = [code]
    while stack:
        item = stack.pop()
        out[(item.co_qualname, item.co_firstlineno)] = item
        stack.extend(c for c in item.co_consts if isinstance(c, types.CodeType))
    return out


def _live_functions(files: set[str]) -> dict[str, list[types.FunctionType]]:
    found: dict[str, list[types.FunctionType]] = {f: [] for f in files}
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename in found:
            found[obj.__code__.co_filename].append(obj)
    return found


def _child(
    mutant: Mutant,
    original: dict[tuple[str, int], types.CodeType],
    functions: list[Any],
    items: list[pytest.Item],
    report_fd: int,
) -> int:
    mutated = _codes(compile_mutant(mutant))
    changed = {k: c for k, c in mutated.items() if original.get(k) != c}
    patched = 0
    try:
        for fn in functions:
            key = (fn.__code__.co_qualname, fn.__code__.co_firstlineno)
            if key in changed:
                fn.__code__ = changed[key]
                patched += 1
    except ValueError:  # free variables differ: only a fresh import can run this mutant
        return EXIT_FALLBACK
    if not patched:
        return EXIT_FALLBACK
    module = sys.modules.get(mutant.module)
    if module is None:
        return EXIT_FALLBACK
    for value in vars(module).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()  # an lru_cache must not answer with the original's results
    for item in items:
        reports = runtestprotocol(item, nextitem=None, log=False)
        if any(r.failed for r in reports):
            os.write(report_fd, item.nodeid.encode())
            return EXIT_KILLED
    return EXIT_SURVIVED


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool:
    tasks: list[dict[str, Any]] = json.loads(Path(os.environ["MUTATION_TASKS"]).read_text())
    jobs = max(1, int(os.environ.get("MUTATION_JOBS", "1")))
    by_id = {item.nodeid: item for item in session.items}
    modules = sorted({t["module"] for t in tasks})
    mutants = {m: generate(m) for m in modules}
    originals = {m: _codes(compile_original(m)) for m in modules}
    live = _live_functions({str(module_path(m)) for m in modules})
    results = open(os.environ["MUTATION_RESULTS"], "a", buffering=1)  # noqa: SIM115  (one loop, closed below)
    running: dict[int, tuple[dict[str, Any], float, int]] = {}
    pending = list(reversed(tasks))
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop()
            mutant = mutants[task["module"]][task["number"]]
            items = [by_id[n] for n in task["nodeids"] if n in by_id]
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = EXIT_KILLED
                try:
                    os.close(read_fd)
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                    code = _child(
                        mutant,
                        originals[task["module"]],
                        live[str(module_path(task["module"]))],
                        items,
                        write_fd,
                    )
                except BaseException:  # a mutant that breaks the runner itself is a kill
                    code = EXIT_KILLED
                finally:
                    os._exit(code)
            os.close(write_fd)
            running[pid] = (task, time.monotonic(), read_fd)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (task, started, _fd) in list(running.items()):
                if now - started > task["timeout"]:
                    os.kill(child, signal.SIGKILL)
                    task["timed_out"] = True
            time.sleep(0.005)
            continue
        task, started, read_fd = running.pop(pid)
        killer = os.read(read_fd, 65536).decode(errors="replace")
        os.close(read_fd)
        code = os.waitstatus_to_exitcode(status)
        if task.get("timed_out"):
            state = "timeout"
        elif code == EXIT_SURVIVED:
            state = "survived"
        elif code == EXIT_FALLBACK:
            state = "fallback"
        else:
            state = "killed"
        record = {
            "module": task["module"],
            "number": task["number"],
            "status": state,
            "killer": killer or None,
            "seconds": round(time.monotonic() - started, 3),
        }
        results.write(json.dumps(record) + "\n")
    results.close()
    return True
