"""The adversarial message-path suite: `run(cases, seed)` and `python -m tests.fuzz`.

The pytest tests (tests/unit/test_fuzz_*.py) and this soak share the generators
(`strategies.py`) and the properties (`properties.py`); the soak counts what the
tests assert, so a long run reports every finding instead of stopping at one.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from tests.fuzz.properties import PROPERTIES, Findings
from tests.fuzz.strategies import Case, corpus
from tests.fuzz.strategies import cases as case_strategy

__all__ = ["run"]

MAX_EXAMPLES_KEPT = 20


def corpus_size_for(cases_wanted: int) -> int:
    """Valid bodies to draw from the schema first (~8 ms each): more for longer runs."""
    return max(100, min(2000, cases_wanted // 25))


def run(cases: int, seed: int | None = None) -> dict[str, Any]:
    """Run every property on `cases` generated cases; a JSON-ready summary.

    `seed` fixes the corpus and hypothesis's choices (the same seed, the same
    cases); None draws one, reported in the summary so a run can be replayed.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    started = time.perf_counter()
    bodies = corpus(corpus_size_for(cases), seed)
    by_mutation: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    totals = Findings()
    examples: list[dict[str, Any]] = []
    seen = 0

    @hypothesis_seed(seed)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # a soak counts findings; no shrinking, no replay
        suppress_health_check=list(HealthCheck),
    )
    @given(case_strategy(bodies))
    def one(case: Case) -> None:
        nonlocal seen
        seen += 1
        by_mutation[case.mutation] += 1
        found = Findings()
        for name, prop in PROPERTIES.items():
            got = prop(case)
            found.extend(got)
            if name == "plan" and got.outcome:
                outcomes[got.outcome] += 1
        totals.extend(found)
        if found and len(examples) < MAX_EXAMPLES_KEPT:
            examples.append({**case.describe(), **{k: v for k, v in found.as_dict().items() if v}})

    one()
    return {
        "cases": seen,
        "seed": seed,
        "escapes": len(totals.escapes),
        "invalidReachedBatch": len(totals.invalid_reached_batch),
        "checkDisagreements": len(totals.check_disagreements),
        "violations": len(totals.violations),
        "byMutation": dict(sorted(by_mutation.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "seconds": round(time.perf_counter() - started, 2),
        "examples": examples,
    }
