"""Send one job-update message to a queue, validated with the function's own models.

python -m localrun.produce --connection-string "$SB" --job nightly-render --priority 10
python -m localrun.produce --connection-string "$SB" --job j1 --file body.json   # REST body (JsonFilePath)
python -m localrun.produce --connection-string "$SB" --message samples/dry-run.json
python -m localrun.produce --namespace mysb.servicebus.windows.net --job j1 --priority 10   # Entra
python -m localrun.produce --local --job nightly-render --priority 10   # a running `localrun serve`

--message sends the file's bytes as written (a BOM, repeated names, odd whitespace
included), after the function's own parse says it would accept them. Exit 0 when
sent, 1 when the message is invalid (problems printed as JSON) or the send failed,
2 for a bad option or an unreadable file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from handlers.contract import JobUpdateMessage, duplicate_keys, parse_message
from handlers.errors import InvalidMessage, Problem, UsageError

_UTF8_BOM = b"\xef\xbb\xbf"
# Everything that shapes the update or the envelope; --message sends a file as written.
BUILD_FLAGS = (
    "job",
    "endpoint",
    "mode",
    "file",
    "priority",
    "max_parallel_tasks",
    "allow_task_preemption",
    "on_all_tasks_complete",
    "max_wall_clock_time",
    "max_task_retry_count",
    "pool_id",
    "metadata",
    "if_match",
    "if_none_match",
    "if_modified_since",
    "if_unmodified_since",
    "dry_run",
)


def read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def load_update_file(raw: bytes) -> dict[str, Any]:
    """A REST update body (--file), read strictly: it is re-serialised into the message,
    so whatever a lenient read would hide (a repeated name kept last-wins) must be
    refused here, with paths as they will be in the message (`$.update...`)."""
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]  # the function accepts one too (.NET and PowerShell write it)

    def refuse(code: str, why: str) -> InvalidMessage:
        return InvalidMessage([Problem("$.update", code, f"--file: {why}")])

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse("json_invalid", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise refuse(
            "json_invalid", f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise refuse("json_invalid", "nested too deeply") from None
    repeated = duplicate_keys(text)
    if repeated:
        raise InvalidMessage([Problem("$.update" + p.path[1:], p.code, p.message) for p in repeated])
    if not isinstance(loaded, dict):
        raise refuse("dict_type", "must hold a JSON object (the REST update body)")
    return loaded


def build_message(args: argparse.Namespace) -> dict[str, Any]:
    update: dict[str, Any] = load_update_file(read_bytes(args.file)) if args.file else {}
    flags = {
        "priority": args.priority,
        "maxParallelTasks": args.max_parallel_tasks,
        "allowTaskPreemption": None
        if args.allow_task_preemption is None
        else args.allow_task_preemption == "true",
        "onAllTasksComplete": args.on_all_tasks_complete,
    }
    update.update({k: v for k, v in flags.items() if v is not None})
    constraints = {
        "maxWallClockTime": args.max_wall_clock_time,
        "maxTaskRetryCount": args.max_task_retry_count,
    }
    if any(v is not None for v in constraints.values()):
        update["constraints"] = {k: v for k, v in constraints.items() if v is not None}
    if args.pool_id:
        update["poolInfo"] = {"poolId": args.pool_id}
    if args.metadata:
        update["metadata"] = [
            {"name": n, "value": v} for n, _, v in (m.partition("=") for m in args.metadata)
        ]
    message: dict[str, Any] = {"schemaVersion": "1.0", "jobId": args.job, "update": update}
    if args.endpoint:
        message["endpoint"] = args.endpoint
    if args.mode:
        message["mode"] = args.mode
    conditions = {
        "ifMatch": args.if_match,
        "ifNoneMatch": args.if_none_match,
        "ifModifiedSince": args.if_modified_since,
        "ifUnmodifiedSince": args.if_unmodified_since,
    }
    if any(v is not None for v in conditions.values()):
        message["conditions"] = {k: v for k, v in conditions.items() if v is not None}
    if args.dry_run:
        message["options"] = {"dryRun": True}
    return message


async def send(
    target: str,
    queue: str,
    message: JobUpdateMessage,
    body: bytes,
    *,
    message_id: str,
    sessions: bool,
) -> None:
    """`target` is a connection string, or a namespace host name for Entra
    (DefaultAzureCredential: `az login`, a managed identity, workload identity ...)."""
    credential = None
    if "=" in target:  # Endpoint=sb://...;SharedAccessKeyName=...
        client = ServiceBusClient.from_connection_string(target)
    else:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        client = ServiceBusClient(target, credential)
    async with client, client.get_queue_sender(queue) as sender:
        await sender.send_messages(
            ServiceBusMessage(
                body,
                message_id=message_id,
                content_type="application/json",
                session_id=message.target_job_id if sessions else None,
            )
        )
    if credential is not None:
        await credential.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m localrun.produce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--connection-string", help="Service Bus connection string (the local broker)")
    where.add_argument(
        "--local",
        action="store_true",
        help="the broker of a running `python -m localrun serve` (its connection string from --state)",
    )
    where.add_argument(
        "--namespace",
        help="Service Bus namespace host (NAME.servicebus.windows.net), with Entra: DefaultAzureCredential "
        "(needs Azure Service Bus Data Sender on the queue)",
    )
    p.add_argument(
        "--state", type=Path, default=None, help="with --local: the serve state file (.localrun/serve.json)"
    )
    p.add_argument("--queue", default="job-updates")
    p.add_argument("--sessions", action="store_true", help="set session_id = job id (session queues)")
    p.add_argument("--message-id", default=None, help="default: a new UUID")
    p.add_argument("--message", help="a whole message file (JSON), sent as the bytes written")
    p.add_argument("--job", help="jobId")
    p.add_argument("--endpoint")
    p.add_argument("--mode", choices=["replace", "merge"])
    p.add_argument("--file", help="a REST update body (JSON) to use as `update` (Update-AzJob -JsonFilePath)")
    p.add_argument("--priority", type=int)
    p.add_argument("--max-parallel-tasks", type=int)
    p.add_argument("--allow-task-preemption", choices=["true", "false"])
    p.add_argument("--on-all-tasks-complete")
    p.add_argument("--max-wall-clock-time")
    p.add_argument("--max-task-retry-count", type=int)
    p.add_argument("--pool-id")
    p.add_argument("--metadata", action="append", help="name=value (repeatable)")
    p.add_argument("--if-match")
    p.add_argument("--if-none-match")
    p.add_argument("--if-modified-since")
    p.add_argument("--if-unmodified-since")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    if args.message and any(getattr(args, name) not in (None, False) for name in BUILD_FLAGS):
        p.error("--message sends the file as written: leave out --job, --file and the update flags")
    if not args.message and not args.job:
        p.error("give --message FILE, or --job with update flags or --file")
    if args.state is not None and not args.local:
        p.error("--state goes with --local")
    try:
        # --message: the bytes as written, for the function to judge as they are.
        body = read_bytes(args.message) if args.message else json.dumps(build_message(args)).encode()
        message = parse_message(body)
    except UsageError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except InvalidMessage as invalid:
        print(json.dumps({"valid": False, "problems": [x.as_dict() for x in invalid.problems]}, indent=2))
        return 1
    except RecursionError:  # only json.dumps of flags merged into a very deep --file
        problem = Problem("$.update", "json_invalid", "--file: nested too deeply")
        print(json.dumps({"valid": False, "problems": [problem.as_dict()]}, indent=2))
        return 1
    target = args.connection_string or args.namespace
    if args.local:
        from localrun.serve import STATE, read_state

        try:
            target = read_state(args.state or STATE)["connectionString"]
        except UsageError as exc:
            print(f"{p.prog}: error: {exc}", file=sys.stderr)
            return 2
    message_id = args.message_id or str(uuid.uuid4())
    try:
        asyncio.run(
            send(
                target,
                args.queue,
                message,
                body,
                message_id=message_id,
                sessions=args.sessions,
            )
        )
    except (ServiceBusError, ValueError) as exc:  # ValueError: a message id over 128 characters
        print(json.dumps({"sent": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"sent": True, "messageId": message_id, "queue": args.queue}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
