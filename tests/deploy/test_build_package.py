"""infra/hooks/build_package.py: wheels only, for linux x86_64 / CPython 3.13.

The tag rules and the post-build verification are tested offline on synthetic
dist-info directories; one test runs the real build (pip, about 10 s with a warm
cache) and is skipped when the package index cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.hooks import build_package

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "tag",
    [
        "cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp39-abi3-manylinux_2_28_x86_64",
        "py3-none-any",
        "cp313-cp313-linux_x86_64",
    ],
)
def test_tags_a_flex_worker_loads(tag: str) -> None:
    assert build_package.tag_ok(tag)


@pytest.mark.parametrize(
    "tag",
    [
        "cp311-cp311-manylinux_2_17_x86_64",  # another interpreter
        "cp313-cp313-macosx_11_0_arm64",  # another platform
        "cp313-cp313-manylinux_2_17_aarch64",
        "cp313-cp313-win_amd64",
        "cp314-abi3-manylinux_2_17_x86_64",  # abi3 from a newer Python
        "py2-none-any",
        "garbage",
    ],
)
def test_tags_it_refuses(tag: str) -> None:
    assert not build_package.tag_ok(tag)


def _dist(site: Path, name: str, version: str, tag: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")


def test_verification_finds_missing_mismatched_and_foreign_wheels(tmp_path: Path) -> None:
    _dist(tmp_path, "good_pkg", "1.0", "py3-none-any")
    _dist(tmp_path, "old-pin", "2.0", "py3-none-any")
    _dist(tmp_path, "native", "3.0", "cp313-cp313-macosx_11_0_arm64")
    pins = {"good-pkg": "1.0", "old-pin": "1.0", "absent": "4.0"}
    assert build_package.problems(tmp_path, pins) == [
        "absent==4.0: not installed",
        "old-pin: 2.0 installed, 1.0 pinned",
        "native 3.0: no linux x86_64 / CPython 3.13 wheel tag in ['cp313-cp313-macosx_11_0_arm64']",
    ]


def test_every_requirement_is_pinned() -> None:
    """Only `name==version` lines: what is built is exactly what was tested."""
    lines = [
        line.split("#")[0].strip()
        for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    requirements = [line for line in lines if line]
    assert len(build_package.pinned_requirements(REPO / "requirements.txt")) == len(requirements)


def test_pip_is_asked_for_wheels_for_the_flex_runtime_only() -> None:
    cmd = build_package.pip_command(Path("r.txt"), Path("t"))
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.13"
    assert cmd[cmd.index("--implementation") + 1] == "cp"
    assert {cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"} <= {
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    }


def test_funcignore_ships_the_built_packages_and_not_the_restore_venv() -> None:
    rules = (REPO / ".funcignore").read_text(encoding="utf-8").splitlines()
    assert not any(r.strip().startswith(".python_packages") for r in rules)
    assert "*_env/" in rules  # azd's restore step creates <dir>_env/ in the project


@pytest.mark.skipif(os.environ.get("SKIP_NETWORK_TESTS") == "1", reason="SKIP_NETWORK_TESTS=1")
def test_real_build_installs_every_pin_from_flex_wheels(tmp_path: Path) -> None:
    target = tmp_path / "site-packages"
    proc = subprocess.run(
        [sys.executable, str(REPO / "infra" / "hooks" / "build_package.py"), "--target", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0 and any(
        s in proc.stderr for s in ("NewConnectionError", "Failed to establish", "Name or service not known")
    ):
        pytest.skip("package index not reachable")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pins = build_package.pinned_requirements(REPO / "requirements.txt")
    assert build_package.problems(target, pins) == []
    assert (target / "azure" / "functions").is_dir()


def test_a_requirement_without_a_flex_wheel_fails_and_changes_nothing(tmp_path: Path) -> None:
    """An sdist-only pin must fail the build (no compiling for the build machine)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this-package-does-not-exist-anywhere-7f3a==1.0\n")
    target = tmp_path / "site-packages"
    target.mkdir()
    (target / "keep").write_text("previous build")
    code = build_package.build(requirements, target)
    assert code != 0
    assert (target / "keep").read_text() == "previous build"


def test_the_settlement_extension_is_built_in_only_in_actions_mode() -> None:
    assert build_package.settlement_requirements({}) == []
    assert build_package.settlement_requirements({"JOB_UPDATES_SETTLEMENT": "host"}) == []
    (extra,) = build_package.settlement_requirements({"JOB_UPDATES_SETTLEMENT": "actions"})
    pins = build_package.pinned_requirements(extra)
    assert pins["azurefunctions-extensions-bindings-servicebus"] == "1.0.0b2"
    # Never in the default deploy.
    assert "azurefunctions-extensions-bindings-servicebus" not in build_package.pinned_requirements(
        REPO / "requirements.txt"
    )
