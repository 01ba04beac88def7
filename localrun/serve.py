"""`python -m localrun serve`: the stand-ins and the function, up until Ctrl-C.

Starts, on 127.0.0.1: the token endpoint, the Batch emulator (the sample jobs, or
--jobs), its fault admin endpoint, the Service Bus broker (standins/servicebus/
Config.json) and, unless --no-function, function_app.py under the local host loop.
Prints the connection string, the endpoints and the app settings (as a
local.settings.json block), writes them to --state (default .localrun/serve.json) for
`watch`, `fault` and `produce --local`, and serves until Ctrl-C (SIGINT) or SIGTERM.

Ports are fixed by default (the values in local.settings.json.example, so `func start`
finds the stand-ins): broker 5672, Batch 7443, token endpoint 7080, fault admin 7081.
--free-ports takes any free ones instead. The connection string, the identity header
and the signing key are fixed local test values for these loopback stand-ins only.

Exit 0 after a clean stop, 1 when something could not start or the host loop failed,
2 for a bad option or an unreadable --jobs file. See docs/local-run.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from handlers import telemetry
from handlers.errors import UsageError
from localrun.common import CLIENT_ID, CONFIG, QUEUE, ROOT, SIGNING_KEY, TOPIC, seed
from localrun.inputs import read_jobs

STATE = ROOT / ".localrun" / "serve.json"
CA_COPY = ROOT / ".localrun" / "batch-ca.pem"
# Fixed so that the token endpoint's address and header can be written down once
# (local.settings.json.example); a local test value, not a secret.
IDENTITY_HEADER = "local-identity-header-not-a-secret"
PORTS = {"broker": 5672, "batch": 7443, "identity": 7080, "admin": 7081}
FAILURES = "failures"
MAX_DELIVERY_COUNT = 5  # the queue's MaxDeliveryCount in Config.json

log = logging.getLogger("localrun.serve")


def app_settings(
    *, connection_string: str, batch_endpoint: str, ca_path: str, identity_endpoint: str
) -> dict[str, str]:
    """What the function needs to run against the stand-ins (its own settings only)."""
    return {
        "IDENTITY_ENDPOINT": identity_endpoint,
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "ServiceBusConnection": connection_string,
        "JOB_UPDATES_QUEUE": QUEUE,
        "JOB_UPDATES_MAX_DELIVERY_COUNT": str(MAX_DELIVERY_COUNT),
        "OUTCOME_TOPIC": TOPIC,
        "BATCH_ALLOWED_ENDPOINTS": batch_endpoint,
        "BATCH_ALLOW_EMULATOR": "true",
        "BATCH_CA_BUNDLE": ca_path,
    }


def local_settings_file(settings: Mapping[str, str]) -> dict[str, Any]:
    """local.settings.json for `func start`: the function's settings plus the host's own.

    AzureWebJobsStorage: Core Tools asks for it for any non-HTTP trigger; the
    development storage value needs Azurite running (docs/local-run.md)."""
    return {
        "IsEncrypted": False,
        "Values": {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            **settings,
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localrun serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=Path, metavar="FILE", help="JSON Lines of Batch jobs to seed")
    parser.add_argument(
        "--no-function",
        action="store_true",
        help="start only the stand-ins (for `func start` with local.settings.json)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="queue a Batch emulator fault at start-up, e.g. '503:job=nightly-render,times=always' "
        "(repeatable; syntax in docs/local-run.md)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set or override one app setting, e.g. BATCH_RETRY_BUDGET_SECONDS=2 (repeatable)",
    )
    parser.add_argument(
        "--write-settings", type=Path, metavar="PATH", help="also write the local.settings.json shape here"
    )
    parser.add_argument("--state", type=Path, default=STATE, help=f"default {STATE.relative_to(ROOT)}")
    parser.add_argument("--free-ports", action="store_true", help="any free ports instead of the fixed ones")
    for name, port in PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=None, metavar="N", help=f"default {port}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the SDKs' lines too")
    return parser.parse_args(argv)


def _ports(args: argparse.Namespace) -> dict[str, int]:
    return {
        name: given
        if (given := getattr(args, f"{name}_port")) is not None
        else 0
        if args.free_ports
        else port
        for name, port in PORTS.items()
    }


def _overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--setting {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "python -m localrun serve"
    from standins.batch.admin import parse_fault_spec

    try:
        jobs = read_jobs(args.jobs) if args.jobs else None
        overrides = _overrides(args.setting)
        try:
            faults = [parse_fault_spec(spec) for spec in args.fault]
        except ValueError as exc:
            raise UsageError(f"--fault {exc}") from None
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    # One JSON object per line, with the trace, span, message and job ids (docs/telemetry.md).
    telemetry.configure_local_logging(logging.INFO if args.verbose else logging.WARNING)
    telemetry.setup_local()
    # The function's one line per delivery, as Application Insights would show it.
    logging.getLogger("handlers").setLevel(logging.INFO)
    try:
        return asyncio.run(serve(args, jobs, faults, overrides, _ports(args)))
    except StartFailed as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


class StartFailed(Exception):
    """A stand-in could not start (usually: its port is taken)."""


@contextmanager
def _starting(what: str, port: int) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        hint = (
            f" (port {port} in use? another `serve` or the Service Bus emulator may hold it: "
            "stop it, or use --free-ports / --<name>-port)"
            if port
            else ""
        )
        raise StartFailed(f"could not start the {what}: {exc}{hint}") from exc


async def serve(
    args: argparse.Namespace,
    jobs: list[dict[str, Any]] | None,
    faults: list[Any],
    overrides: dict[str, str],
    ports: dict[str, int],
) -> int:
    from standins.batch import BatchEmulator
    from standins.batch.admin import FaultAdmin
    from standins.identity import TokenEndpoint
    from standins.servicebus import LocalBroker

    state_path: Path = args.state
    with ExitStack() as running:
        with _starting("token endpoint", ports["identity"]):
            tokens = running.enter_context(
                TokenEndpoint(
                    signing_key=SIGNING_KEY,
                    client_id=CLIENT_ID,
                    identity_header=IDENTITY_HEADER,
                    port=ports["identity"],
                )
            )
        with _starting("Batch emulator", ports["batch"]):
            emu = running.enter_context(BatchEmulator(token_signing_key=SIGNING_KEY, port=ports["batch"]))
        with _starting("fault admin endpoint", ports["admin"]):
            admin = running.enter_context(FaultAdmin(emu, port=ports["admin"]))
        with _starting("Service Bus broker", ports["broker"]):
            broker = running.enter_context(LocalBroker(config=str(CONFIG), port=ports["broker"]))
        seed(emu, jobs)
        for fault in faults:
            emu.inject(fault)
        # A stable path for the CA: local.settings.json names it once. The CA itself is
        # new on every start, so a `func start` must be restarted after `serve` is.
        ca_copy = state_path.parent / CA_COPY.name
        ca_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(emu.ca_path, ca_copy)
        settings = {
            **app_settings(
                connection_string=broker.connection_string,
                batch_endpoint=emu.endpoint,
                ca_path=str(ca_copy.resolve()),
                identity_endpoint=tokens.env["IDENTITY_ENDPOINT"],
            ),
            **overrides,
        }
        state = {
            "pid": os.getpid(),
            "connectionString": broker.connection_string,
            "queue": QUEUE,
            "topic": TOPIC,
            "subscriptions": ["all-outcomes", FAILURES],
            "batchEndpoint": emu.endpoint,
            "batchCaPath": str(ca_copy.resolve()),
            "identityEndpoint": tokens.env["IDENTITY_ENDPOINT"],
            "faultAdmin": admin.url,
            "function": not args.no_function,
            "settings": settings,
        }
        running.callback(_remove, state_path)
        _write_private(state_path, json.dumps(state, indent=2) + "\n")
        if args.write_settings:
            _write_private(args.write_settings, json.dumps(local_settings_file(settings), indent=2) + "\n")
        _banner(state, args)

        os.environ.update(settings)
        return await _run_until_stopped(broker.connection_string, with_function=not args.no_function)


async def _run_until_stopped(connection_string: str, *, with_function: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not with_function:
        await stop.wait()
        print("\nstopping the stand-ins ...", flush=True)
        return 0

    import function_app  # after the app settings are in place, as on the host
    from handlers.runtime import reset_runtime
    from standins.functions_host import HostOptions, LocalFunctionsHost

    host = LocalFunctionsHost(
        function_app.app, connection_string, options=HostOptions.from_host_json(ROOT / "host.json")
    )
    host_task = asyncio.create_task(host.run())
    stopped = asyncio.create_task(stop.wait())
    print("ready: the function is listening on the queue (Ctrl-C stops)", flush=True)
    await asyncio.wait({host_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if host_task.done():
        stopped.cancel()
        error = host_task.exception()
        print(f"the host loop stopped on its own: {error!r}", file=sys.stderr, flush=True)
        code = 1
    else:
        print("\nstopping: in-flight messages settle first ...", flush=True)
        host.stop()
        await host_task
    await reset_runtime()
    return code


def _banner(state: dict[str, Any], args: argparse.Namespace) -> None:
    cs = state["connectionString"]
    state_arg = "" if args.state == STATE else f" --state {args.state}"
    function = (
        "job_update under the local host loop"
        if state["function"]
        else "not started (--no-function): run `func start` with the settings below"
    )
    print(
        "Local stand-ins on 127.0.0.1 (the connection string and identity header are fixed\n"
        "local test values for these loopback stand-ins, not secrets):\n"
        f"  Service Bus     {cs}\n"
        f"                  queue {state['queue']}, topic {state['topic']}: all-outcomes, {FAILURES}\n"
        f"  Batch emulator  {state['batchEndpoint']}  (CA {state['batchCaPath']})\n"
        f"  Token endpoint  {state['identityEndpoint']}\n"
        f"  Fault admin     {state['faultAdmin']}/faults  (emulator only)\n"
        f"  Function        {function}\n"
        f"  State file      {args.state}\n"
        "\nApp settings (local.settings.json shape):\n"
        + json.dumps(local_settings_file(state["settings"]), indent=2)
        + "\n\nTry, in another shell (repository root, inside .venv):\n"
        f"  python -m localrun.produce --local{state_arg} --job nightly-render --priority 10\n"
        f"  python -m localrun watch{state_arg}\n"
        f"  python -m localrun fault{state_arg} '503:job=nightly-render,times=always'\n",
        flush=True,
    )


def _write_private(path: Path, text: str) -> None:
    """Owner-only: the file names the local identity header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _remove(path: Path) -> None:
    # Only our own: a second `serve` (say with --free-ports) may have written it since.
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read_state(path: Path = STATE) -> dict[str, Any]:
    """What a running `serve` wrote; UsageError when there is none."""
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path}: not found; start `python -m localrun serve` first, or give --connection-string"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from None
    if not isinstance(state.get("connectionString"), str):
        raise UsageError(f"{path}: no connectionString in it")
    return state
