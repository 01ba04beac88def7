"""`python -m tests.faults.host`: the function under the local host loop, in its own
process, configured from the environment (app settings), until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal

from handlers.runtime import reset_runtime
from standins.functions_host import LocalFunctionsHost
from tests.faults.stack import host_options, load_function_app


async def main() -> None:
    host = LocalFunctionsHost(
        load_function_app().app,
        os.environ["ServiceBusConnection"],  # noqa: SIM112 - the app setting's name
        # Row-specific host.json overrides (tests/faults/matrix.py), as JSON.
        options=host_options(**json.loads(os.environ.get("FAULT_HOST_OPTIONS", "{}"))),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, host.stop)
    await host.run()
    await reset_runtime()


if __name__ == "__main__":
    asyncio.run(main())
