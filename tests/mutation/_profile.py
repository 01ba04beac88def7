"""pytest plugin loaded by every mutation run (baseline, workers, module runs).

Hypothesis draws the same examples every run (so a kill is reproducible), keeps no
example database (a mutant's failing example must not be replayed by the real suite)
and has no deadline (two cores under load must not turn slowness into a kill).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "mutation",
    database=None,
    derandomize=True,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("mutation")


def pytest_configure(config: object) -> None:
    # Again after tests/conftest.py (imported before configure), which loads the CI
    # profile when HYPOTHESIS_PROFILE is set: a mutation run always draws its own examples.
    settings.load_profile("mutation")
