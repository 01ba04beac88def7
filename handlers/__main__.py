"""Command line: `python -m handlers check FILE` and `python -m handlers schema`.

`check` lets producers validate messages in their own CI: for each message
(a JSON file, or JSON Lines; `-` for stdin) it prints the exact request that
would be sent (credentials aside) or the validation problems, as JSON, and
exits 1 if any message is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from handlers.batch_client import build_request, client_request_id_for
from handlers.contract import InvalidMessage, JobUpdateMessage, check_ocp_date, json_schema, parse_message
from handlers.endpoints import EndpointError, normalise_endpoint, parse_allowed_endpoint, resolve_endpoint
from handlers.settings import DEFAULT_API_VERSION

EXAMPLE_ENDPOINT = "https://{account}.{region}.batch.azure.com"


def _messages(raw: bytes) -> Iterator[bytes]:
    """One JSON document, or JSON Lines (one message per non-empty line).

    Several lines that are each a JSON object are JSON Lines; anything else is one
    document (so a pretty-printed file with a syntax error gets its own error).
    """
    text = raw.strip()
    if not text:
        return
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and all(
        line.lstrip().startswith(b"{") and line.rstrip().endswith(b"}") for line in lines
    ):
        try:
            for line in lines:
                json.loads(line)
        except ValueError:
            pass
        else:
            yield from lines
            return
    yield text


def check_one(
    body: bytes, *, api_version: str, now: datetime, allowed: frozenset[str] | None = None
) -> dict[str, Any]:
    try:
        message = parse_message(body)
        check_ocp_date(message, now)
    except InvalidMessage as invalid:
        return {"valid": False, "problems": [p.as_dict() for p in invalid.problems]}
    try:
        # The function's allow-list rules: the given list, else any Batch account endpoint.
        if message.endpoint is None:
            endpoint = EXAMPLE_ENDPOINT
        elif allowed is not None:
            endpoint = resolve_endpoint(message.endpoint, allowed, None)
        else:
            endpoint = parse_allowed_endpoint(message.endpoint)
    except EndpointError as exc:
        problem = {"path": "$.endpoint", "code": "endpoint_not_allowed", "message": str(exc)}
        return {"valid": False, "problems": [problem]}
    return {"valid": True, "requests": _requests(message, endpoint, api_version, now)}


def _requests(message: JobUpdateMessage, endpoint: str, api_version: str, now: datetime) -> list[Any]:
    client_request_id = message.options.client_request_id or client_request_id_for("<message id>")

    def request(method: str, **extra: Any) -> Any:
        return build_request(
            method,
            endpoint,
            message.target_job_id,
            api_version=api_version,
            client_request_id=client_request_id,
            options=message.options,
            now=now,
            **extra,
        )

    body = message.update.body()
    if message.options.dry_run:
        return [request("GET").describe()]
    if message.mode == "merge":
        # The PATCH body is the update merged into the job as read: shown here unmerged.
        patch = request("PATCH", body=body, if_match="<ETag read>").describe()
        patch["note"] = "merge mode: the body sent is this update merged into the job as read (GET above)"
        return [request("GET").describe(), patch]
    return [request("PATCH", conditions=message.conditions, body=body).describe()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate messages and print the requests they make")
    check.add_argument("file", help="a JSON message, or JSON Lines of messages; - for stdin")
    check.add_argument("--api-version", default=DEFAULT_API_VERSION)
    check.add_argument(
        "--allowed-endpoints",
        help="comma-separated allow-list, as BATCH_ALLOWED_ENDPOINTS (default: any Batch account endpoint)",
    )
    commands.add_parser("schema", help="print the message JSON Schema")
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    now = datetime.now(UTC)
    allowed = (
        frozenset(normalise_endpoint(e) for e in args.allowed_endpoints.split(",") if e.strip())
        if args.allowed_endpoints
        else None
    )
    results = [
        check_one(body, api_version=args.api_version, now=now, allowed=allowed) for body in _messages(raw)
    ]
    for result in results:
        print(json.dumps(result, indent=2))
    if not results:
        print("no messages found", file=sys.stderr)
        return 1
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
