"""Faults by hand: a one-line fault spec, and a loopback admin endpoint (emulator only).

A spec is `KIND[:key=value,...]`, the same on the command line
(`python -m standins.batch --fault ...`, `python -m localrun serve --fault ...`) and in
the admin endpoint's request body:

  429 | throttle     429 TooManyRequests with Retry-After (default 1 s)
  503 | busy         503 ServerBusy with Retry-After (default 1 s)
  NNN | error        any other 4xx/5xx (`error` needs status=NNN); code=CODE overrides the code
  delay            answer normally after seconds=S (500 OperationTimedOut past the request's timeOut)
  reset            drop the connection with no response

  keys: job=ID, method=GET|PATCH, times=N|always (default 1), retry-after=S|none,
        status=NNN, code=CODE, seconds=S (delay), delay=S (a delay before any kind)

e.g. `503:job=nightly-render,method=PATCH,times=always`, `reset:times=2`, `delay:seconds=5`.

The admin endpoint is plain HTTP on 127.0.0.1 only, without authentication: it is part
of the local emulator and nothing like it exists in Azure Batch.

  GET    /faults     pending faults (what each does, what it matches, fired / times)
  POST   /faults     add the spec(s) in the body, one per line -> 201; a bad spec -> 400
  DELETE /faults     drop every pending fault
  GET    /requests   the last `?last=N` requests (default 20): method, path, status, code, fault
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from standins import StartStop
from standins.batch.faults import Fault

if TYPE_CHECKING:
    from standins.batch.emulator import BatchEmulator

# `times=always`: a count no hand-driven run reaches; DELETE /faults ends it.
ALWAYS = 1_000_000_000
_KINDS = {"throttle": 429, "busy": 503}
_KEYS = {"job", "method", "times", "retry-after", "status", "code", "seconds", "delay"}
_MAX_BODY = 64 * 1024


def parse_fault_spec(spec: str) -> Fault:
    """One fault from `KIND[:key=value,...]`; ValueError says what is wrong."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in ("reset", "delay", "error", *_KINDS) and not kind.isdigit():
        raise ValueError(
            f"{spec!r}: a fault spec starts with its kind: 429/throttle, 503/busy, a status "
            "such as 500, error, delay or reset"
        )
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in _KEYS:
            raise ValueError(f"{spec!r}: {item!r} is not one of {', '.join(sorted(_KEYS))} as key=value")
        if key in options:
            raise ValueError(f"{spec!r}: {key} given twice")
        options[key] = value.strip()

    match: dict[str, Any] = {"times": _times(spec, options.pop("times", "1"))}
    if "job" in options:
        match["job_id"] = options.pop("job") or None
    if "method" in options:
        method = options.pop("method").upper()
        if method not in ("GET", "PATCH"):
            raise ValueError(f"{spec!r}: method must be GET or PATCH (the emulator serves only these)")
        match["method"] = method
    delay = _seconds(spec, "delay", options.pop("delay", "0"))

    fields: dict[str, Any] = {}
    if kind == "reset":
        fields["reset"] = True
    elif kind == "delay":
        if "seconds" not in options:
            raise ValueError(f"{spec!r}: delay needs seconds=S")
        delay += _seconds(spec, "seconds", options.pop("seconds"))
    else:
        status = _KINDS.get(kind)
        if status is None and kind != "error":
            status = _int(spec, "status", kind)
        if "status" in options:
            given = _int(spec, "status", options.pop("status"))
            if status is not None and given != status:
                raise ValueError(f"{spec!r}: {kind} is {status}, not status={given}")
            status = given
        if status is None:
            raise ValueError(f"{spec!r}: error needs status=NNN")
        fields["status"] = status
        if "code" in options:
            fields["code"] = options.pop("code") or None
        retry_after = options.pop("retry-after", "1" if status in (429, 503) else "none")
        if retry_after.lower() != "none":
            fields["retry_after"] = _seconds(spec, "retry-after", retry_after)
        else:
            fields["retry_after"] = None
    if options:
        raise ValueError(f"{spec!r}: {', '.join(sorted(options))} does not apply to {kind}")
    try:
        return Fault(delay_seconds=delay, **fields, **match)
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None


def describe_fault(fault: Fault) -> dict[str, Any]:
    """A pending fault for people: what it does, what it matches, how often."""
    return {
        "does": fault.describe(),
        "retryAfter": fault.retry_after,
        "job": fault.job_id,
        "method": fault.method,
        "fired": fault.fired,
        "times": "always" if fault.times >= ALWAYS else fault.times,
    }


def _times(spec: str, value: str) -> int:
    if value.lower() == "always":
        return ALWAYS
    times = _int(spec, "times", value)
    if times < 1:
        raise ValueError(f"{spec!r}: times must be at least 1 (or always)")
    return times


def _int(spec: str, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{spec!r}: {name} must be a whole number, got {value!r}") from None


def _seconds(spec: str, name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{spec!r}: {name} must be seconds, got {value!r}") from None
    if not 0 <= seconds <= 3600:  # also refuses nan and inf
        raise ValueError(f"{spec!r}: {name} must be 0 to 3600 seconds")
    return seconds


class FaultAdmin(StartStop):
    """The admin endpoint for one emulator, on 127.0.0.1 (never another address)."""

    def __init__(self, emulator: BatchEmulator, port: int = 0) -> None:
        self.emulator = emulator
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), _handler(self.emulator))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="batch-emulator-admin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultAdmin is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"


def _handler(emulator: BatchEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "batch-emulator-admin"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a terminal someone is watching is no place for an access log

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/faults":
                self._send(HTTPStatus.OK, {"pending": [describe_fault(f) for f in emulator.pending_faults]})
            elif url.path == "/requests":
                last = parse_qs(url.query).get("last", ["20"])[0]
                count = int(last) if last.isdigit() else 20
                entries = emulator.requests[-count:] if count else []
                self._send(
                    HTTPStatus.OK,
                    {
                        "requests": [
                            {
                                "at": r.received_at.isoformat(),
                                "method": r.method,
                                "path": r.path,
                                "status": r.status,
                                "code": r.error_code,
                                "fault": r.fault,
                            }
                            for r in entries
                        ]
                    },
                )
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "GET /faults or /requests"})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/faults":
                self._send(HTTPStatus.NOT_FOUND, {"error": "POST /faults"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "one fault spec per line, please"})
                return
            text = self.rfile.read(length).decode("utf-8", errors="replace")
            try:
                faults = [parse_fault_spec(line) for line in text.splitlines() if line.strip()]
            except ValueError as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            if not faults:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "no fault spec in the body"})
                return
            for fault in faults:
                emulator.inject(fault)
            self._send(HTTPStatus.CREATED, {"added": [describe_fault(f) for f in faults]})

        def do_DELETE(self) -> None:
            if urlsplit(self.path).path != "/faults":
                self._send(HTTPStatus.NOT_FOUND, {"error": "DELETE /faults"})
                return
            self._send(HTTPStatus.OK, {"cleared": emulator.clear_faults()})

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
