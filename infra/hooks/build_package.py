"""azd prepackage hook: build the function's dependencies here, for Flex Consumption.

Flex's remote build has run Python 3.11 for a 3.13 app (Azure/azure-dev#8538), where
azure-functions 2.x (Requires-Python >= 3.13) does not install. azure.yaml therefore
turns remote build off, and this script fills `.python_packages/lib/site-packages`
(where the Python worker looks) from requirements.txt with WHEELS ONLY for linux
x86_64 / CPython 3.13: nothing is compiled for the machine that runs azd, and a
requirement without such a wheel fails here instead of on the platform.

    python3 infra/hooks/build_package.py [--requirements FILE] [--target DIR]

With JOB_UPDATES_SETTLEMENT=actions in the environment (azd passes its environment's
values to hooks) and no --requirements, requirements-settlement.txt is built in too:
that mode's function imports the settlement extension (docs/host.md).

Stdlib only (it runs before any venv exists). Builds into a temporary directory and
swaps it in, so a failed build never leaves a half-filled package directory.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / ".python_packages" / "lib" / "site-packages"
PYTHON_VERSION = "3.13"
# glibc 2.28 or older: what the Flex Python 3.13 workers run is newer than that.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ABIS = ("cp313", "abi3", "none")

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
# Interpreter tags a CPython 3.13 worker loads: cp313, py3/py313, or cp3x-abi3 (x <= 13).
PY_OK = re.compile(r"^(?:cp313|py3|py313|cp3\d{1,2})$")
PLATFORM_OK = re.compile(r"^(?:any|manylinux\w*_x86_64|linux_x86_64)$")


def pinned_requirements(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file (normalised name -> version)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tag_ok(tag: str) -> bool:
    """One wheel tag `python-abi-platform` that a linux x86_64 CPython 3.13 accepts."""
    try:
        python, abi, platform = tag.split("-")
    except ValueError:
        return False
    if abi == "abi3":
        ok_python = python.startswith("cp3") and int(python[3:] or 0) <= 13
    elif abi == "none":
        ok_python = python in ("py3", "py313", "cp313")
    else:
        ok_python = abi == "cp313" and python == "cp313"
    return ok_python and bool(PY_OK.match(python)) and all(PLATFORM_OK.match(p) for p in platform.split("."))


def installed(site_packages: Path) -> dict[str, tuple[str, list[str]]]:
    """Installed distributions: normalised name -> (version, wheel tags)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for info in sorted(site_packages.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        name = re.search(r"^Name: (.+)$", meta, re.M)
        version = re.search(r"^Version: (.+)$", meta, re.M)
        wheel = info / "WHEEL"
        tags = re.findall(r"^Tag: (.+)$", wheel.read_text(encoding="utf-8"), re.M) if wheel.exists() else []
        if name and version:
            found[normalise(name.group(1).strip())] = (version.group(1).strip(), [t.strip() for t in tags])
    return found


def problems(site_packages: Path, pins: dict[str, str]) -> list[str]:
    """Pins missing or at another version, and distributions without a usable wheel tag."""
    dists = installed(site_packages)
    found: list[str] = []
    for name, version in sorted(pins.items()):
        if name not in dists:
            found.append(f"{name}=={version}: not installed")
        elif dists[name][0] != version:
            found.append(f"{name}: {dists[name][0]} installed, {version} pinned")
    for name, (version, tags) in sorted(dists.items()):
        if not any(tag_ok(tag) for tag in tags):
            found.append(f"{name} {version}: no linux x86_64 / CPython 3.13 wheel tag in {tags}")
    return found


def pip_command(requirements: Path, target: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet"]
    cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    for abi in ABIS:
        cmd += ["--abi", abi]
    return [*cmd, "--target", str(target), "-r", str(requirements)]


def build(requirements: Path, target: Path, *more: Path) -> int:
    pins = pinned_requirements(requirements)
    for extra in more:
        pins.update(pinned_requirements(extra))
    if not pins:
        print(f"build_package: no pinned requirements in {requirements}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        staging = Path(tmp) / "site-packages"
        command = pip_command(requirements, staging) + [arg for extra in more for arg in ("-r", str(extra))]
        result = subprocess.run(command, check=False)  # noqa: S603
        if result.returncode != 0:
            print(
                "build_package: pip could not install every requirement from linux x86_64 / "
                "CPython 3.13 wheels (see above); nothing was changed",
                file=sys.stderr,
            )
            return result.returncode
        found = problems(staging, pins)
        if found:
            print("build_package: the built packages are not usable on Flex:", file=sys.stderr)
            for problem in found:
                print(f"  {problem}", file=sys.stderr)
            return 1
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    print(
        f"build_package: {len(pins)} pinned requirements (and their dependencies) in "
        f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requirements", type=Path, default=None)
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    if args.requirements is not None:
        return build(args.requirements.resolve(), args.target.resolve())
    return build(ROOT / "requirements.txt", args.target.resolve(), *settlement_requirements(os.environ))


def settlement_requirements(environ: Mapping[str, str]) -> list[Path]:
    """The extension's pins, when the app settles messages itself."""
    if environ.get("JOB_UPDATES_SETTLEMENT", "host") == "actions":
        return [ROOT / "requirements-settlement.txt"]
    return []


if __name__ == "__main__":
    sys.exit(main())
