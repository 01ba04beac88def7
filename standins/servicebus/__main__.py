"""``python -m standins.servicebus``: serve the local Service Bus broker until SIGINT/SIGTERM.

Why a CLI: a locally running function host (or a developer's shell) needs a broker that
outlives one test; it prints the connection string to put in the function's settings.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .broker import DEFAULT_CONFIG, LocalBroker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.servicebus", description=__doc__)
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        help="emulator-shaped Config.json (default: the checked-in one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672, 0 = any free port)")
    parser.add_argument(
        "--lock-check-interval",
        type=float,
        default=0.1,
        help="seconds between lock/TTL/session expiry checks (default 0.1)",
    )
    parser.add_argument("--verbose", action="store_true", help="log broker errors and warnings")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    broker = LocalBroker(
        args.config, host=args.host, port=args.port, lock_check_interval=args.lock_check_interval
    ).start()
    try:
        print(broker.connection_string, flush=True)
        ns = broker.config
        entities = [q.name for q in ns.queues] + [
            f"{t.name}/Subscriptions/{s.name}" for t in ns.topics for s in t.subscriptions
        ]
        print(f"namespace {ns.name}: " + ", ".join(entities), file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
