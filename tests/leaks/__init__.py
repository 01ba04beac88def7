"""The leak suite: credentials and secrets never leave where they should not.

`run() -> dict` runs the same code as the tests (tests/unit/test_leaks_*.py,
tests/integration/test_leaks_*.py) and returns the counts; `python -m tests.leaks
[--json PATH]` prints them. See tests/leaks/README.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def run() -> dict[str, Any]:
    """Run every leak check; the counts as a JSON-ready dict (see README.md for each key)."""
    from tests.leaks.report import run as run_all

    return run_all()
