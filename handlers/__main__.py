"""Command line: `python -m handlers check ...` and `python -m handlers schema ...`.

`check` lets producers validate messages in their own CI, through the same plan
and the same allow-list parser as the function: for each message it prints the
request the function would send first (credentials aside) and what follows, or
the problems with their JSON paths. Exit 0 when every message is valid, 1 when
any is not, 2 for a bad option or an unreadable file.

    python -m handlers check --allowed-endpoints https://acct.westeurope.batch.azure.com samples/*.json
    BATCH_ALLOWED_ENDPOINTS=... python -m handlers check messages.jsonl -
    python -m handlers schema --write      # regenerate docs/*.schema.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from pydantic import TypeAdapter, ValidationError

from handlers.contract import json_schema
from handlers.endpoints import default_endpoint, parse_allow_list, parse_allowed_endpoint
from handlers.errors import EndpointError, UsageError
from handlers.events import outcome_json_schema
from handlers.plan import Done, Inbound, Job, Policy, Purpose, admit, next_step
from handlers.settings import DEFAULT_API_VERSION, setting_name
from handlers.wire import SUPPORTED_API_VERSIONS

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMAS = {
    "job-update.schema.json": json_schema,
    "outcome.schema.json": outcome_json_schema,
}


def schema_text(name: str) -> str:
    return json.dumps(SCHEMAS[name](), indent=2) + "\n"


# --- Inputs --------------------------------------------------------------------------


def _expand(sources: Sequence[str]) -> list[str]:
    """Files and globs in order ("-" is stdin); a pattern matching nothing is an error."""
    out: list[str] = []
    for source in sources:
        if source == "-" or not glob.has_magic(source) or Path(source).exists():
            out.append(source)
            continue
        matched = sorted(glob.glob(source, recursive=True))
        if not matched:
            raise UsageError(f"{source}: no file matches")
        out.extend(matched)
    return out


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror or exc}") from None


def messages(source: str, raw: bytes) -> Iterator[tuple[str, bytes]]:
    """(label, body) for each message: one JSON document, or JSON Lines.

    `.jsonl`/`.ndjson` files are JSON Lines; so is any input of several lines that
    each hold one JSON object (a pretty-printed file keeps its own error).
    """
    name = "<stdin>" if source == "-" else source
    lines = [(n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
    if not lines:
        return
    if source.endswith((".jsonl", ".ndjson")) or (len(lines) > 1 and all(_one_object(b) for _, b in lines)):
        for number, line in lines:
            yield f"{name}:{number}", line
        return
    yield name, raw


def _one_object(line: bytes) -> bool:
    stripped = line.strip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return False
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        return False
    return True


# --- Checking ------------------------------------------------------------------------


def check_one(body: bytes, policy: Policy, now: datetime) -> dict[str, Any]:
    """What the function would do first with this body: the plan's own answer."""
    job = admit(Inbound(body, message_id=""), policy, now)
    if isinstance(job, Done):
        return {"valid": False, "problems": [p.as_dict() for p in job.result.problems]}
    step = next_step(job)
    assert not isinstance(step, Done)  # an admitted job always starts with a request
    return {"valid": True, "requests": [step.request.describe()], "then": _then(job, step.purpose)}


def _then(job: Job, first: Purpose) -> str:
    if job.message.options.dry_run:
        return "no write: the event reports what would change and whether the conditions hold"
    if first is Purpose.read:
        return (
            "PATCH of the changed top-level properties, merged into the job as read, with "
            f"If-Match: <ETag read>; on 412 read again, at most {job.policy.merge_max_rounds} rounds"
        )
    return "nothing, unless a 412 on a redelivery: then one GET checks whether the values are in place"


def policy_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Policy:
    """The allow-list as the function reads it: the option, else the app setting."""
    raw = args.allowed_endpoints or environ.get(setting_name("allowed_endpoints"))
    if not raw:
        raise UsageError(
            "no allow-list: pass --allowed-endpoints or set BATCH_ALLOWED_ENDPOINTS "
            "(the same value the function app has)"
        )
    try:  # read as Settings reads it (a pydantic bool)
        allow_emulator = args.allow_emulator or TypeAdapter(bool).validate_python(
            environ.get(setting_name("allow_emulator"), "false")
        )
    except ValidationError:
        raise UsageError("BATCH_ALLOW_EMULATOR is not a boolean") from None
    try:
        allowed = parse_allow_list(raw, allow_emulator=allow_emulator)
        configured = args.default_endpoint or environ.get(setting_name("default_endpoint")) or None
        default = parse_allowed_endpoint(configured) if configured else None
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    if default is not None and default not in allowed:
        raise UsageError("the default endpoint must be one of the allowed endpoints")
    api_version = args.api_version or environ.get(setting_name("api_version")) or DEFAULT_API_VERSION
    if api_version not in SUPPORTED_API_VERSIONS:
        raise UsageError(f"api version {api_version} is not one of {', '.join(SUPPORTED_API_VERSIONS)}")
    try:
        rounds = int(environ.get(setting_name("merge_max_rounds"), "5"))
    except ValueError:
        raise UsageError("BATCH_MERGE_MAX_ROUNDS is not a whole number") from None
    return Policy(
        allowed, default_endpoint(allowed, default), api_version=api_version, merge_max_rounds=rounds
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m handlers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate messages and print the requests they make")
    check.add_argument(
        "sources", nargs="+", metavar="FILE", help="JSON files, JSON Lines, globs; - for stdin"
    )
    check.add_argument(
        "--api-version", choices=SUPPORTED_API_VERSIONS, help="default: $BATCH_API_VERSION, else 2025-06-01"
    )
    check.add_argument(
        "--allowed-endpoints",
        help="the allow-list, as BATCH_ALLOWED_ENDPOINTS (comma or semicolon separated); "
        "default: $BATCH_ALLOWED_ENDPOINTS",
    )
    check.add_argument(
        "--default-endpoint", help="as BATCH_DEFAULT_ENDPOINT; default: $BATCH_DEFAULT_ENDPOINT"
    )
    check.add_argument(
        "--allow-emulator", action="store_true", help="allow https://localhost (BATCH_ALLOW_EMULATOR)"
    )
    schema = commands.add_parser("schema", help="print, write or verify the JSON Schemas in docs/")
    schema.add_argument("--write", action="store_true", help="write docs/*.schema.json")
    schema.add_argument("--check", action="store_true", help="exit 1 if docs/*.schema.json are stale")
    schema.add_argument("--name", choices=sorted(SCHEMAS), default="job-update.schema.json")
    return parser


def _usage_exit(message: str) -> NoReturn:
    print(f"python -m handlers: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)  # argparse itself exits 2 on a bad option
    try:
        if args.command == "schema":
            return _schema(args)
        return _check(args, dict(os.environ) if environ is None else environ)
    except UsageError as exc:
        _usage_exit(str(exc))


def _schema(args: argparse.Namespace) -> int:
    if not (args.write or args.check):
        sys.stdout.write(schema_text(args.name))
        return 0
    stale = [
        name
        for name in SCHEMAS
        if not (DOCS / name).exists() or (DOCS / name).read_text() != schema_text(name)
    ]
    if args.write:
        for name in stale:
            (DOCS / name).write_text(schema_text(name))
            print(f"wrote docs/{name}")
        return 0
    for name in stale:
        print(f"docs/{name} is stale: run python -m handlers schema --write", file=sys.stderr)
    return 1 if stale else 0


def _check(args: argparse.Namespace, environ: dict[str, str]) -> int:
    policy = policy_from_args(args, environ)
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    for source in _expand(args.sources):
        raw = _read(source)
        results.extend(
            {"source": label, **check_one(body, policy, now)} for label, body in messages(source, raw)
        )
    for result in results:
        print(json.dumps(result, indent=2))
    if not results:
        raise UsageError("no messages found")
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
