"""Loopback servers that record everything that reaches them, and a DNS that sends every
name the function has no business resolving to them.

`RawServer` is a bare HTTP/1.1 server (HTTPS or plain) that counts connections before any
TLS, records every request with its full Authorization header, and answers what its
`respond` function says (a 404, a redirect, a Batch-like 200). `hijacked_dns` replaces
aiohttp's resolver while it is active: names in `routes` go where they say, every other
name to a canary, so a request that slipped past the allow-list would really arrive
somewhere, with its credential, instead of failing to resolve and passing unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp.connector
from aiohttp.abc import AbstractResolver, ResolveResult

from standins import LoopThread


@dataclass(frozen=True)
class Hit:
    server: str
    method: str
    target: str
    headers: dict[str, str]  # lower-case names

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


Response = tuple[int, list[tuple[str, str]], bytes]
Responder = Callable[[Hit], Response]


def not_found(hit: Hit) -> Response:
    return 404, [("Content-Type", "application/json")], b"{}"


@dataclass
class RawServer:
    name: str
    tls: ssl.SSLContext | None
    respond: Responder = not_found
    hits: list[Hit] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    ipv6: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: LoopThread | None = None
    _servers: list[asyncio.Server] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    def start(self) -> RawServer:
        self._loop = LoopThread(f"leaks-{self.name}")
        self._loop.start()
        self._loop.run(self._serve())
        return self

    async def _serve(self) -> None:
        first = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = first.sockets[0].getsockname()[1]
        self._servers.append(first)
        with contextlib.suppress(OSError):  # ::1 on the same port when the host has IPv6
            self._servers.append(await asyncio.start_server(self._client, "::1", self.port))
            self.ipv6 = True

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            for server in self._servers:
                server.close()

        self._loop.run(close())
        self._loop.stop()
        self._loop = None

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.connections, len(self.hits)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            if self.tls is not None:
                await asyncio.wait_for(writer.start_tls(self.tls), 5)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await asyncio.wait_for(reader.readexactly(length), 5)
            hit = Hit(self.name, method, target, headers)
            with self._lock:
                self.hits.append(hit)
            status, extra, body = self.respond(hit)
            out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            out += [f"{k}: {v}" for k, v in extra]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a refused TLS handshake or a half request: the connection is counted
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.contextmanager
def hijacked_dns(
    routes: dict[tuple[str, int], tuple[str, int]],
    https_canary: tuple[str, int],
    http_canary: tuple[str, int],
    lookups: list[tuple[str, int]],
) -> Iterator[None]:
    """aiohttp resolves through `routes`, and every other name to a canary (port 80 to the
    plain one). IP literals never reach a resolver; hostile ones point at the canaries."""

    class HijackResolver(AbstractResolver):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            lookups.append((host, port))
            ip, target = routes.get((host, port)) or (http_canary if port == 80 else https_canary)
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            return [
                ResolveResult(
                    hostname=host, host=ip, port=target, family=socket.AF_INET, proto=0, flags=flags
                )
            ]

        async def close(self) -> None:
            return None

    original = aiohttp.connector.DefaultResolver  # type: ignore[attr-defined]
    aiohttp.connector.DefaultResolver = HijackResolver  # type: ignore[attr-defined]
    try:
        yield
    finally:
        aiohttp.connector.DefaultResolver = original  # type: ignore[attr-defined]
