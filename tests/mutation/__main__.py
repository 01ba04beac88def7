"""Mutation testing of the pure decision modules.

    python -m tests.mutation                         # all modules, summary + survivors
    python -m tests.mutation --module plan --module wire
    python -m tests.mutation --json docs/mutation-score.json   # the committed score
    python -m tests.mutation --list --module endpoints          # the mutants, not run

1. Mutants come from a small AST mutator (tests/mutation/mutants.py lists the operators).
2. A baseline run of tests/unit records, per test, the lines of the mutated modules it
   executes (tests/mutation/_trace.py), and which lines run at import time.
3. A mutant of a function body that no import-time code runs is tested in a forked
   child of one collected pytest session, by swapping the live functions' code
   (tests/mutation/_worker.py), with only the tests that execute its lines. Any other
   mutant (module level, class bodies, decorators, code run at import) is tested by a
   fresh pytest run in a forked child that imports the mutated module, with every
   test that touches the module.
4. Tests that start subprocesses (they test the file on disk, not the mutant) and the
   slow schema-agreement draw (EXCLUDED_TESTS) are left out of mutant runs.

Equivalent mutants (no observable behaviour change) are listed, each with why, in
tests/mutation/equivalent.toml; the score is killed / (mutants - excluded).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.abc
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.mutation.mutants import MODULES, ROOT, Mutant, compile_mutant, generate, module_path

EQUIVALENT = Path(__file__).with_name("equivalent.toml")
TEST_DIR = "tests/unit"
# Left out of mutant runs: too slow to repeat per mutant (2,000 schema draws, ~20 s).
EXCLUDED_TESTS = ("tests/unit/test_schema_agreement.py::test_bodies_drawn_from_the_schema_are_accepted",)


@dataclass
class Task:
    mutant: Mutant
    path: str  # "fast" (patch a live session), "module" (fresh import), or "" (not run)
    nodeids: list[str] = field(default_factory=list)
    later: list[str] = field(default_factory=list)  # fresh-import runs: only if `nodeids` all pass
    timeout: float = 0.0
    status: str = "pending"  # killed, timeout, survived, uncovered, excluded, error
    killer: str | None = None
    why: str | None = None


# --- equivalent mutants ------------------------------------------------------------


def load_equivalents() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])
    for entry in entries:
        if not entry.get("why") or sum(k in entry for k in ("key", "keys", "match")) != 1:
            raise SystemExit(
                f"{EQUIVALENT.name}: each entry needs `why` and one of key / keys / match: {entry}"
            )
    return entries


def equivalent_reason(mutant: Mutant, entries: list[dict[str, str]], used: set[int]) -> str | None:
    for i, entry in enumerate(entries):
        if (
            entry.get("key") == mutant.key
            or mutant.key in entry.get("keys", ())
            or ("match" in entry and fnmatch.fnmatchcase(mutant.key, entry["match"]))
        ):
            used.add(i)
            return entry["why"]
    return None


# --- baseline ----------------------------------------------------------------------


def baseline(modules: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trace.json"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MUTATION_TRACE_OUT": str(out),
            "MUTATION_TRACE_FILES": os.pathsep.join(str(module_path(m)) for m in modules),
        }
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutation._trace"]
        argv += [TEST_DIR, *(f"--deselect={t}" for t in EXCLUDED_TESTS)]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if not out.exists():
            raise SystemExit(f"baseline run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        trace: dict[str, Any] = json.loads(out.read_text())
    failing = [n for n, t in trace["tests"].items() if not t.get("passed", True)]
    if failing:
        print(
            f"warning: {len(failing)} tests fail without mutation; not used: {failing[:5]}", file=sys.stderr
        )
    return trace


def plan_tasks(
    mutants: list[Mutant], trace: dict[str, Any], entries: list[dict[str, str]], used: set[int]
) -> list[Task]:
    usable = {n: t for n, t in trace["tests"].items() if t.get("passed", True) and not t.get("spawns")}
    by_line: dict[tuple[str, int], set[str]] = {}
    for nodeid, t in usable.items():
        for file, lines in t["lines"].items():
            for line in lines:
                by_line.setdefault((file, line), set()).add(nodeid)
    imports = {file: set(lines) for file, lines in trace["import"].items()}

    def ordered(nodeids: set[str], short: str) -> list[str]:
        # The module's own pin tests first, then the fastest: -x-style runs stop early.
        own = f"test_pins_{short}"
        return sorted(nodeids, key=lambda n: (own not in n, usable[n]["seconds"], n))

    def first_files(file: str, short: str, mutant_module: str) -> set[str]:
        # The module's own pin tests (small, so cheap to collect), else the two test
        # files that cover most of it; the rest runs only if these all pass.
        reach: dict[str, set[int]] = {}
        for nodeid, t in usable.items():
            reach.setdefault(nodeid.split("::", 1)[0], set()).update(t["lines"].get(file, ()))
        pins = {
            f
            for f in reach
            if Path(f).name.startswith(f"test_pins_{short}") and mutant_module in _source_of(f)
        }
        return pins or set(sorted(reach, key=lambda f: -len(reach[f]))[:2])

    tasks: list[Task] = []
    module_tests: dict[str, set[str]] = {}
    first: dict[str, set[str]] = {}
    for mutant in mutants:
        file = str(module_path(mutant.module))
        short = mutant.module.rsplit(".", 1)[-1]
        if file not in module_tests:
            # Tests that run the module's lines, and every test in a file that imports it:
            # a dataclass's or enum's generated code runs none of the module's lines.
            importers = {f for f in {n.split("::", 1)[0] for n in usable} if mutant.module in _source_of(f)}
            module_tests[file] = {
                n for n, t in usable.items() if t["lines"].get(file) or n.split("::", 1)[0] in importers
            }
            first[file] = first_files(file, short, mutant.module)
        why = equivalent_reason(mutant, entries, used)
        if why is not None:
            tasks.append(Task(mutant, "", status="excluded", why=why))
            continue
        lines = range(mutant.line, mutant.end_line + 1)
        at_import = any(line in imports.get(file, ()) for line in lines)
        later: list[str] = []
        if not mutant.in_function or at_import:
            nodeids = ordered({n for n in module_tests[file] if n.split("::", 1)[0] in first[file]}, short)
            later = ordered({n for n in module_tests[file] if n.split("::", 1)[0] not in first[file]}, short)
            path = "module"
        else:
            nodeids = ordered(set().union(*(by_line.get((file, line), set()) for line in lines)), short)
            path = "fast"
        if not nodeids:
            nodeids, later = later, []
        if not nodeids:
            tasks.append(Task(mutant, "", status="uncovered"))
            continue
        seconds = sum(usable[n]["seconds"] for n in [*nodeids, *later])
        timeout = (30.0 if path == "module" else 10.0) + 5 * seconds
        tasks.append(Task(mutant, path, nodeids, later, timeout))
    return tasks


def _source_of(test_file: str) -> str:
    return (ROOT / test_file).read_text()


# --- running -----------------------------------------------------------------------


def run_fast(tasks: list[Task], jobs: int, progress: Progress) -> None:
    if not tasks:
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec, results = Path(tmp) / "tasks.json", Path(tmp) / "results.jsonl"
        spec.write_text(
            json.dumps(
                [
                    {
                        "module": t.mutant.module,
                        "number": t.mutant.number,
                        "nodeids": t.nodeids,
                        "timeout": t.timeout,
                    }
                    for t in tasks
                ]
            )
        )
        results.touch()
        files = sorted({n.split("::", 1)[0] for t in tasks for n in t.nodeids})
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MUTATION_TASKS": str(spec),
            "MUTATION_RESULTS": str(results),
            "MUTATION_JOBS": str(jobs),
        }
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.mutation._worker",
            *files,
            *(f"--deselect={t}" for t in EXCLUDED_TESTS),
        ]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        index = {(t.mutant.module, t.mutant.number): t for t in tasks}
        seen = 0
        with results.open() as fh:
            while True:
                line = fh.readline()
                if line:
                    record = json.loads(line)
                    task = index[(record["module"], record["number"])]
                    task.status, task.killer = record["status"], record["killer"]
                    seen += 1
                    progress.tick(task)
                    continue
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if seen < len(tasks):
            raise SystemExit(f"mutation worker stopped after {seen}/{len(tasks)} mutants:\n{output[-3000:]}")


class _FirstFailure:
    """pytest plugin for a fresh-import run: reports the first failing test's id."""

    def __init__(self, fd: int) -> None:
        self.fd, self.done = fd, False

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and not self.done:
            self.done = True
            os.write(self.fd, report.nodeid.encode())

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed and not self.done:
            self.done = True
            os.write(self.fd, f"collection of {report.nodeid}".encode())


def _module_child(mutant: Mutant, nodeids: list[str], fd: int) -> int:
    import pytest

    code = compile_mutant(mutant)
    path = str(module_path(mutant.module))

    class Loader(importlib.abc.Loader):
        def create_module(self, spec: Any) -> None:
            return None

        def exec_module(self, module: Any) -> None:
            exec(code, module.__dict__)  # noqa: S102  (the mutant under test)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path_: Any, target: Any = None) -> Any:
            if name != mutant.module:
                return None
            return importlib.util.spec_from_file_location(name, path, loader=Loader())

    sys.meta_path.insert(0, Finder())
    argv = ["-q", "-x", "-p", "no:cacheprovider", "-p", "tests.mutation._profile", *nodeids]
    argv += [f"--deselect={t}" for t in EXCLUDED_TESTS]
    return int(pytest.main(argv, plugins=[_FirstFailure(fd)]))


def run_module(tasks: list[Task], jobs: int, progress: Progress) -> None:
    """Fresh-import runs, each in a child forked from this process (pytest and the heavy
    libraries are imported once here; the handlers package never is)."""
    import httpx  # noqa: F401
    import hypothesis  # noqa: F401
    import jsonschema  # noqa: F401
    import pydantic  # noqa: F401
    import pytest  # noqa: F401
    import pytest_asyncio.plugin  # noqa: F401

    assert not any(m == "handlers" or m.startswith("handlers.") for m in sys.modules)
    os.chdir(ROOT)
    running: dict[int, tuple[Task, float, int]] = {}
    pending = list(reversed(tasks))
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop()
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(read_fd)
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                    code = _module_child(task.mutant, task.nodeids, write_fd)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(write_fd)
            running[pid] = (task, time.monotonic(), read_fd)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (task, started, _fd) in list(running.items()):
                if now - started > task.timeout and task.status != "timeout":
                    os.kill(child, signal.SIGKILL)
                    task.status = "timeout"
            time.sleep(0.005)
            continue
        task, _started, read_fd = running.pop(pid)
        task.killer = os.read(read_fd, 65536).decode(errors="replace") or None
        os.close(read_fd)
        code = os.waitstatus_to_exitcode(status)
        if task.status != "timeout":
            # pytest: 0 passed, 1 failed, 2 interrupted (the mutant broke an import), 3 internal
            # error, 4 the selected tests cannot be found (their module no longer imports, or
            # their parameter ids changed): each is the mutant's doing.
            task.status = {0: "survived", 1: "killed", 2: "killed", 3: "killed", 4: "killed"}.get(
                code, "error"
            )
            if task.status == "error":
                task.killer = f"exit {code}"
            if task.status == "survived" and task.later:
                task.nodeids, task.later, task.status = task.later, [], "pending"
                pending.append(task)  # the rest of the module's tests, in a second run
                continue
        progress.tick(task)


class Progress:
    def __init__(self, total: int, report: Path | None = None) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.report = report.open("w") if report else None  # written as results come in

    def tick(self, task: Task) -> None:
        self.done += 1
        if self.report is not None and task.status != "fallback":
            self.report.write(json.dumps(_record(task)) + "\n")
            self.report.flush()
        if self.done % 100 == 0 or self.done == self.total:
            elapsed = time.monotonic() - self.started
            print(f"  {self.done}/{self.total} mutants run ({elapsed:.0f} s)", file=sys.stderr, flush=True)


# --- reporting ---------------------------------------------------------------------


def _record(t: Task) -> dict[str, Any]:
    m = t.mutant
    return {
        "key": m.key,
        "module": m.module,
        "line": m.line,
        "op": m.op,
        "status": t.status,
        "path": t.path,
        "killer": t.killer,
        "why": t.why,
        "tests": len(t.nodeids),
    }


def summarise(tasks: list[Task], modules: Sequence[str], seconds: float) -> dict[str, Any]:
    def counts(subset: list[Task]) -> dict[str, Any]:
        killed = sum(t.status in {"killed", "timeout"} for t in subset)
        excluded = sum(t.status == "excluded" for t in subset)
        survived = len(subset) - killed - excluded
        scored = killed + survived
        return {
            "mutants": len(subset),
            "killed": killed,
            "survived": survived,
            "excluded": excluded,
            "score": round(100.0 * killed / scored, 1) if scored else 100.0,
        }

    per_module = {m.rsplit(".", 1)[-1]: counts([t for t in tasks if t.mutant.module == m]) for m in modules}
    return {
        "ranAt": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "seconds": round(seconds, 1),
        "command": "python -m tests.mutation" + ("" if len(modules) == len(MODULES) else " --module ..."),
        "modules": per_module,
        "total": counts(tasks),
    }


def merge_scores(recorded: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    """A partial run's modules replace theirs in the recorded score; the total is re-added.

    Each module keeps the time of the run that scored it (`ranAt`), so a merged file
    says which figure came from which run.
    """
    modules = {
        name: {"ranAt": recorded.get("ranAt"), **counts} for name, counts in recorded["modules"].items()
    }
    modules.update({name: {"ranAt": partial["ranAt"], **c} for name, c in partial["modules"].items()})
    keys = ("mutants", "killed", "survived", "excluded")
    total: dict[str, Any] = {k: sum(m[k] for m in modules.values()) for k in keys}
    scored = total["killed"] + total["survived"]
    total["score"] = round(100.0 * total["killed"] / scored, 1) if scored else 100.0
    return {
        "ranAt": partial["ranAt"],
        "seconds": recorded.get("seconds"),
        "command": recorded.get("command"),
        "modules": modules,
        "total": total,
        "merged": sorted(set(recorded.get("merged", [])) | set(partial["modules"])),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="repeatable; default all")
    parser.add_argument("--json", type=Path, help="write the score here (docs/mutation-score.json)")
    parser.add_argument("--report", type=Path, help="write every mutant's result here (JSON Lines)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--all-survivors", action="store_true", help="print every survivor (default 60)")
    args = parser.parse_args(argv)
    # Every child compiles the test modules (assertion rewriting) anew unless the
    # rewritten bytecode is cached: allow it for these runs (__pycache__ is ignored).
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    modules = [MODULES[m] for m in (args.module or MODULES)]
    started = time.monotonic()
    mutants = [m for module in modules for m in generate(module)]
    if args.list:
        for m in mutants:
            print(f"{m.module}:{m.line} [{m.op}] {m.key}")
        return 0
    entries = load_equivalents()
    used: set[int] = set()
    print(f"{len(mutants)} mutants in {len(modules)} modules; baseline run ...", file=sys.stderr, flush=True)
    trace = baseline(modules)
    print(f"  baseline: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    tasks = plan_tasks(mutants, trace, entries, used)
    fast = [t for t in tasks if t.path == "fast"]
    progress = Progress(sum(1 for t in tasks if t.path), args.report)
    for t in tasks:
        if not t.path:
            progress.tick(t)
    progress.done = 0
    print(
        f"  {len(fast)} in a live session, {sum(t.path == 'module' for t in tasks)} by fresh import, "
        f"{sum(t.status == 'excluded' for t in tasks)} excluded as equivalent",
        file=sys.stderr,
        flush=True,
    )
    run_fast(fast, args.jobs, progress)
    print(f"  live-session mutants done: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    fallback = [t for t in fast if t.status == "fallback"]
    for t in fallback:
        t.path, t.status = "module", "pending"
        t.timeout += 20.0
    progress.total += len(fallback)
    run_module([t for t in tasks if t.path == "module"], args.jobs, progress)
    seconds = time.monotonic() - started
    summary = summarise(tasks, modules, seconds)

    stale = [
        e for i, e in enumerate(entries) if i not in used and e.get("key", "").split(":", 1)[0] in modules
    ]
    for entry in stale:
        print(
            f"warning: equivalent.toml entry matches no mutant: {entry.get('key') or entry.get('match')}",
            file=sys.stderr,
        )
    survivors = [t for t in tasks if t.status in {"survived", "uncovered", "error"}]
    shown = survivors if args.all_survivors else survivors[:60]
    for t in shown:
        m = t.mutant
        print(
            f"{t.status:9} {m.module.rsplit('.', 1)[-1]}:{m.line} [{m.op}] {m.before}  ->  {m.after}"
            f"   ({m.scope})"
        )
    if len(shown) < len(survivors):
        print(f"... and {len(survivors) - len(shown)} more (--all-survivors)")
    print(f"\n{'module':14} {'mutants':>8} {'killed':>7} {'survived':>9} {'excluded':>9} {'score':>7}")
    for name, c in [*summary["modules"].items(), ("total", summary["total"])]:
        print(
            f"{name:14} {c['mutants']:>8} {c['killed']:>7} {c['survived']:>9} {c['excluded']:>9} "
            f"{c['score']:>6.1f}%"
        )
    print(f"{seconds:.0f} s")
    if args.json:
        if len(modules) < len(MODULES) and args.json.exists():
            summary = merge_scores(json.loads(args.json.read_text()), summary)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if progress.report is not None:
        progress.report.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
