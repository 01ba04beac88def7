"""Local stand-ins for the Azure services the function talks to. Not deployed.

Each stand-in speaks its real service's wire protocol closely enough that the
official clients (azure-identity, azure-batch, ...) work against it unchanged,
so tests and local runs exercise the production code paths without Azure.

`LoopThread` lives here because every HTTP stand-in needs the same thing: an
asyncio server that keeps running while a *synchronous* test (or a sync SDK
client) blocks the calling thread. Only the standard library is imported here so
that importing one stand-in does not drag in another's dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

_T = TypeVar("_T")

__all__ = ["LoopThread"]


class LoopThread:
    """An asyncio event loop running forever in a daemon thread.

    Servers started on it keep answering while the caller's thread is blocked in a
    synchronous client call, and async tests can use their own loop undisturbed.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self._name}: loop thread is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = 30.0) -> _T:
        """Run `coro` on the loop thread and wait for its result from this thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        # Cancel what is still running (a request sleeping in an injected delay, say)
        # so the loop closes without "Task was destroyed but it is pending".
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.run(_cancel_other_tasks(), timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not loop.is_closed():
            loop.close()
        self._loop = None
        self._thread = None


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class StartStop:
    """The context-manager protocol for a stand-in with start() and stop()."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
