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
from handlers.endpoints import EndpointError, normalise_endpoint
from handlers.settings import DEFAULT_API_VERSION

EXAMPLE_ENDPOINT = "https://{account}.{region}.batch.azure.com"


def _messages(raw: bytes) -> Iterator[bytes]:
    """One JSON document, or JSON Lines (one message per non-empty line)."""
    text = raw.strip()
    if not text:
        return
    try:
        json.loads(text)
    except ValueError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            yield from lines
            return
    yield text


def check_one(body: bytes, *, api_version: str, now: datetime) -> dict[str, Any]:
    try:
        message = parse_message(body)
        check_ocp_date(message, now)
    except InvalidMessage as invalid:
        return {"valid": False, "problems": [p.as_dict() for p in invalid.problems]}
    try:
        endpoint = normalise_endpoint(message.endpoint) if message.endpoint else EXAMPLE_ENDPOINT
    except EndpointError as exc:
        return {
            "valid": False,
            "problems": [{"path": "$.endpoint", "code": "invalid_endpoint", "message": str(exc)}],
        }
    return {"valid": True, "requests": [r.describe() for r in _requests(message, endpoint, api_version, now)]}


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
        return [request("GET")]
    if message.mode == "merge":
        return [request("GET"), request("PATCH", body=body, if_match="<ETag read>")]
    return [request("PATCH", conditions=message.conditions, body=body)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate messages and print the requests they make")
    check.add_argument("file", help="a JSON message, or JSON Lines of messages; - for stdin")
    check.add_argument("--api-version", default=DEFAULT_API_VERSION)
    commands.add_parser("schema", help="print the message JSON Schema")
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    now = datetime.now(UTC)
    results = [check_one(body, api_version=args.api_version, now=now) for body in _messages(raw)]
    for result in results:
        print(json.dumps(result, indent=2))
    if not results:
        print("no messages found", file=sys.stderr)
        return 1
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
