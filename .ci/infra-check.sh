#!/usr/bin/env bash
# Offline checks of infra/ (no Bicep compiler, no Azure):
#   1. checkov --framework bicep over infra/ with the custom checks in infra/checks/,
#      judged by infra/tools/checkov_gate.py: fails on parsing errors, on failed checks
#      not accepted (with a reason) in infra/checkov-skips.yaml, and on custom checks
#      that produced no result;
#   1b. infra/tools/bicep_lint.py: platform limits of parameters across modules, and
#      role assignments in resource groups `azd down` could delete;
#   2. a grep for key material in the Bicep (belt and braces for CKV_JU_5);
#   3. pytest tests/infra in that venv: the custom checks fail on bad fixtures and
#      pass on good ones, the gate fails when it must, the Bicep wiring a compiler
#      would check (module params/outputs, main.parameters.json), the alert/log
#      contract. tests/infra/test_app_settings.py needs the app's dependencies
#      (handlers.settings): it is skipped here and runs in the main test run, where
#      the checkov/pycep tests are in turn skipped unless checkov is installed.
#
# Own venv (.venv-infra, or $INFRA_VENV), rebuilt only when requirements-infra.txt
# changes: idempotent, and the checkov pins never touch the app's .venv.
# Env: INFRA_VENV, INFRA_PYTHON (default python3, >= 3.10), INFRA_SKIP_PYTEST=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${INFRA_VENV:-$ROOT/.venv-infra}"
PYTHON="${INFRA_PYTHON:-python3}"
REQUIREMENTS="$ROOT/requirements-infra.txt"
STAMP="$VENV/.requirements-infra.sha256"
START=$SECONDS

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"infra-check: need Python >= 3.10 for checkov, found {sys.version.split()[0]}")
PY

want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]]; then
    echo "infra-check: creating $VENV ($("$PYTHON" --version 2>&1)) and installing requirements-infra.txt"
    "$PYTHON" -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" 2>&1 \
        | grep -v -E "^WARNING: Location '.*' is ignored" || true
    "$VENV/bin/python" -c 'import checkov, pytest' # fails the script if the install did
    echo "$want" > "$STAMP"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- 1. checkov ---------------------------------------------------------------------
# BC_SKIP_MAPPING + --skip-download: no calls to Prisma Cloud / guideline downloads.
export BC_SKIP_MAPPING=TRUE
export LOG_LEVEL="${LOG_LEVEL:-WARNING}"
set +e
"$VENV/bin/checkov" --framework bicep --skip-download \
    -d infra --external-checks-dir infra/checks -o json \
    > "$WORK/checkov.json" 2> "$WORK/checkov.log"
rc=$?
set -e
# 0 = all passed, 1 = some check failed (the gate decides); anything else is a crash.
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
    echo "infra-check: checkov exited $rc" >&2
    tail -n 40 "$WORK/checkov.log" >&2
    exit 1
fi
if grep -q -E "Cannot load external check|Traceback" "$WORK/checkov.log"; then
    echo "infra-check: a custom check failed to load:" >&2
    grep -A 15 -E "Cannot load external check|Traceback" "$WORK/checkov.log" >&2
    exit 1
fi
"$VENV/bin/python" infra/tools/checkov_gate.py "$WORK/checkov.json" \
    --skips infra/checkov-skips.yaml --checks-dir infra/checks

# --- 1b. cross-file checks checkov cannot make (param ranges, azd down scopes) ------
"$VENV/bin/python" infra/tools/bicep_lint.py infra

# --- 2. key material in the Bicep ----------------------------------------------------
if grep -rn -i -E "listKeys|listConnectionStrings|AccountKey=|SharedAccessKey=|SharedAccessSignature=" \
        --include='*.bicep' infra; then
    echo "infra-check: key material or listKeys() in infra/*.bicep (see above)" >&2
    exit 1
fi
echo "infra-check: no listKeys()/AccountKey=/SharedAccessKey= in infra/*.bicep"

# --- 3. tests of the checks, the gate and the wiring ---------------------------------
if [[ "${INFRA_SKIP_PYTEST:-0}" != "1" ]]; then
    "$VENV/bin/python" -m pytest -c tests/infra/pytest-infra.ini -q tests/infra
fi

echo "infra-check: OK in $((SECONDS - START))s"
