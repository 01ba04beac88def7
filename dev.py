#!/usr/bin/env python3
"""Developer entry point: needs only Python 3.13 on the PATH.

    python3 dev.py local   # run the main job end to end on loopback (no Azure account)
    python3 dev.py serve   # the stand-ins and the function, up until Ctrl-C (docs/local-run.md)
    python3 dev.py test    # lint, type-check and run every test (what CI runs)
    python3 dev.py reliability   # regenerate docs/reliability.md (fuzz soak, leaks, fault matrix)

Creates `.venv` on first use and reinstalls when a requirements file changes.
Any further arguments go to the command (e.g. `python3 dev.py test -k merge`).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
# Every file requirements-dev.txt pulls in: a change to any of them reinstalls.
REQUIREMENTS = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-settlement.txt",
    "requirements-bench.txt",
)


def _requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in REQUIREMENTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 13):
        sys.exit(f"Python 3.13 is required (this is {sys.version.split()[0]}); see README.md")
    wanted = _requirements_digest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing requirements-dev.txt (first run builds python-qpid-proton, ~30 s) ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(ROOT / "requirements-dev.txt")], check=True)
    STAMP.write_text(wanted)


def run(*argv: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(list(argv), cwd=ROOT, env=env, check=False).returncode


def test(extra: list[str]) -> int:
    py = str(PY)
    steps: list[tuple[str, list[str]]] = [
        ("ruff check", [py, "-m", "ruff", "check", "."]),
        ("ruff format --check", [py, "-m", "ruff", "format", "--check", "."]),
        ("mypy --strict", [py, "-m", "mypy"]),
        ("pytest", [py, "-m", "pytest", *extra]),
    ]
    if not extra:
        # Bicep checks: checkov in its own venv (its pins clash with the app's).
        steps.append(("infra checks (checkov)", ["bash", ".ci/infra-check.sh"]))
    for name, argv in steps:
        print(f"==> {name}", flush=True)
        code = run(*argv)
        if code != 0:
            print(f"FAILED: {name} (exit {code})", flush=True)
            return code
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"local", "serve", "test", "reliability"}:
        print(__doc__)
        return 2
    ensure_venv()
    command, extra = sys.argv[1], sys.argv[2:]
    if command == "local":
        return run(str(PY), "-m", "localrun", *extra)
    if command == "serve":
        # Ctrl-C reaches the child too; without this, subprocess.run would kill it
        # before in-flight messages settle. The child sets its own handlers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return run(str(PY), "-m", "localrun", "serve", *extra)
    if command == "reliability":
        return run(str(PY), "-m", "tests.reliability", *extra)
    return test(extra)


if __name__ == "__main__":
    sys.exit(main())
