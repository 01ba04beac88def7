"""A partial mutation run merges into the recorded score instead of replacing it."""

from __future__ import annotations

from tests.mutation.__main__ import merge_scores


def _counts(mutants: int, killed: int, excluded: int = 0) -> dict[str, int | float]:
    survived = mutants - killed - excluded
    return {
        "mutants": mutants,
        "killed": killed,
        "survived": survived,
        "excluded": excluded,
        "score": round(100.0 * killed / (killed + survived), 1),
    }


def test_a_partial_run_replaces_its_modules_and_re_adds_the_total() -> None:
    recorded = {
        "ranAt": "T0",
        "seconds": 10.0,
        "command": "python -m tests.mutation",
        "modules": {"plan": _counts(100, 90), "flow": _counts(50, 40, 2)},
        "total": {},
    }
    partial = {"ranAt": "T1", "seconds": 3.0, "command": "x", "modules": {"flow": _counts(48, 47, 2)}}
    merged = merge_scores(recorded, partial)
    assert merged["modules"]["plan"]["ranAt"] == "T0" and merged["modules"]["plan"]["killed"] == 90
    assert merged["modules"]["flow"]["ranAt"] == "T1" and merged["modules"]["flow"]["killed"] == 47
    assert merged["total"]["mutants"] == 148 and merged["total"]["killed"] == 137
    assert merged["total"]["survived"] == 148 - 137 - 2
    assert merged["total"]["score"] == round(100 * 137 / (137 + 9), 1)
    assert merged["merged"] == ["flow"] and merged["ranAt"] == "T1"
