"""Send one job-update message to a queue, validated with the function's own models.

python -m localrun.produce --connection-string "$SB" --job nightly-render --priority 10
python -m localrun.produce --connection-string "$SB" --job j1 --file body.json   # REST body (JsonFilePath)
python -m localrun.produce --connection-string "$SB" --message samples/dry-run.json
python -m localrun.produce --namespace mysb.servicebus.windows.net --job j1 --priority 10   # Entra
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

from handlers.contract import JobUpdateMessage, parse_message
from handlers.errors import InvalidMessage


def build_message(args: argparse.Namespace) -> dict[str, Any]:
    if args.message:
        loaded: dict[str, Any] = json.loads(Path(args.message).read_text())
        return loaded
    update: dict[str, Any] = json.loads(Path(args.file).read_text()) if args.file else {}
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
        "--namespace",
        help="Service Bus namespace host (NAME.servicebus.windows.net), with Entra: DefaultAzureCredential "
        "(needs Azure Service Bus Data Sender on the queue)",
    )
    p.add_argument("--queue", default="job-updates")
    p.add_argument("--sessions", action="store_true", help="set session_id = job id (session queues)")
    p.add_argument("--message-id", default=None, help="default: a new UUID")
    p.add_argument("--message", help="a whole message file (JSON)")
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
    if not args.message and not args.job:
        p.error("give --message FILE, or --job with update flags or --file")
    body = json.dumps(build_message(args)).encode()
    try:
        message = parse_message(body)
    except InvalidMessage as invalid:
        print(json.dumps({"valid": False, "problems": [x.as_dict() for x in invalid.problems]}, indent=2))
        return 1
    message_id = args.message_id or str(uuid.uuid4())
    asyncio.run(
        send(
            args.connection_string or args.namespace,
            args.queue,
            message,
            body,
            message_id=message_id,
            sessions=args.sessions,
        )
    )
    print(json.dumps({"sent": True, "messageId": message_id, "queue": args.queue}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
