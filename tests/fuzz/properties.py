"""The properties every message must keep, as functions of one case.

Each returns `Findings` (empty when the property holds) instead of asserting, so
the pytest tests (assert it is empty, hypothesis shrinks) and the soak command
(count, keep the first few) share the very same code.

- `plan_property`: admit + next_step driven as the handler drives them, over a
  scripted Batch; one `Done` at the end, never an exception; every request that
  goes out passes Batch's own reading of the contract (the emulator's validator,
  standins/batch/validation.py, in-process); a rejected message sends nothing and
  names a JSON path for each problem.
- `handler_property`: the real JobUpdateHandler over httpx.MockTransport, the same
  scripted Batch and a recording publisher: one event per message (or RetryLater
  as documented), nothing else raised or swallowed as an internal error, and the
  same requests and outcome as the pure drive.
- `check_property`: `python -m handlers check`'s verdict (valid or not, and the
  problems) equals the function's, for the same policy read from the same settings.
- `identity_property`: salvaging ids for a rejected event never raises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import re
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from azure.core.credentials import AccessTokenInfo
from multidict import CIMultiDict, CIMultiDictProxy

from handlers.__main__ import check_one, main, messages, policy_from_args
from handlers.auth import BatchAuth, TokenCache
from handlers.batch_client import MIN_ATTEMPT_SECONDS, BatchClient, RetryPolicy
from handlers.contract import INT64_MAX, INT64_MIN, MAX_POOL_DEPTH
from handlers.errors import RetryLater
from handlers.events import OutcomeData, build_event
from handlers.handler import JobUpdateHandler, policy_from
from handlers.outcomes import Outcome, Result
from handlers.plan import (
    Done,
    Exchange,
    Inbound,
    Job,
    Policy,
    Settle,
    admit,
    identity_hint,
    internal_error,
    next_step,
)
from handlers.settings import Settings
from handlers.transport import NoCookies
from handlers.wire import RETRYABLE_STATUS, BatchReply, BatchRequest, Sent, reply_from
from standins.batch.conditions import parse_conditions
from standins.batch.errors import BatchServiceError
from standins.batch.timefmt import parse_rfc1123
from standins.batch.validation import (
    POOL_SPECIFICATION_UPDATE_PROPERTIES,
    parse_json_body,
    validate_job_update,
)
from tests.fakes import FakeCredential, RecordingPublisher
from tests.fuzz.strategies import ACCOUNT, ENQUEUED, MAX_DELIVERIES, NOW, OTHER, UNLIMITED, Case, Reply

SERVICE_BUS_MAX_BYTES = 256 * 1024
EMULATOR_MAX_BODY = 1024 * 1024
MAX_STEPS = 50  # far past any plan: merge rounds (5) x 2 requests + a verify
ENV: dict[str, Any] = {
    "BATCH_ALLOWED_ENDPOINTS": f"{ACCOUNT},{OTHER}",
    "BATCH_DEFAULT_ENDPOINT": ACCOUNT,
    "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
    "JOB_UPDATES_MAX_DELIVERY_COUNT": MAX_DELIVERIES,
    # Retries never sleep here (zero backoff, Retry-After at most 0 or past the
    # budget), so the budget only decides which waits are skipped, as in the client.
    "BATCH_RETRY_BUDGET_SECONDS": 30,
    "BATCH_MAX_ATTEMPTS": 3,
    "BATCH_HTTP_TIMEOUT_SECONDS": 5,
}
SETTINGS = Settings(**ENV)
FUNCTION_POLICY = policy_from(SETTINGS)


def check_policy() -> Policy:
    """The policy `check` builds from the same app settings as the function."""
    args = argparse.Namespace(
        allowed_endpoints=None, default_endpoint=None, allow_emulator=False, api_version=None
    )
    return policy_from_args(args, {k: str(v) for k, v in ENV.items()})


CHECK_POLICY = check_policy()


@dataclass
class Findings:
    escapes: list[str] = field(default_factory=list)  # exceptions other than RetryLater
    invalid_reached_batch: list[str] = field(default_factory=list)
    check_disagreements: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # any other property broken
    outcome: str | None = None  # how the plan ended the message (for the soak's tallies)

    def __bool__(self) -> bool:
        return bool(self.escapes or self.invalid_reached_batch or self.check_disagreements or self.violations)

    def extend(self, other: Findings) -> Findings:
        self.escapes += other.escapes
        self.invalid_reached_batch += other.invalid_reached_batch
        self.check_disagreements += other.check_disagreements
        self.violations += other.violations
        return self

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "escapes": self.escapes,
            "invalidReachedBatch": self.invalid_reached_batch,
            "checkDisagreements": self.check_disagreements,
            "violations": self.violations,
        }


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {str(exc)[:200]}{where}"


# --- What Batch would refuse ----------------------------------------------------------

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_JOB_PATH = re.compile(r"/jobs/([^/]+)")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _strict_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _free_json_problem(value: Any, depth: int) -> str | None:
    """The contract's pass-through rules for a pool specification (Batch reads these)."""
    if depth < 0:
        return f"pool nested past {MAX_POOL_DEPTH} levels"
    if isinstance(value, dict):
        items: Sequence[Any] = list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not INT64_MIN <= value <= INT64_MAX
        ):
            return f"pool number {str(value)[:20]} outside Int64"
        return None
    for item in items:
        problem = _free_json_problem(item, depth - 1)
        if problem:
            return problem
    return None


def batch_would_refuse(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, allowed: frozenset[str]
) -> str | None:
    """Why Batch (as the emulator reads its contract) would refuse this request, or None."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if origin not in allowed:
        return f"request to {origin}, not allow-listed"
    path = _JOB_PATH.fullmatch(parts.path)
    if path is None or not _JOB_ID.fullmatch(unquote(path.group(1))):
        return f"not a job path: {parts.path[:80]}"
    if "api-version=" not in parts.query:
        return "no api-version"
    lowered = {k.lower(): v for k, v in headers.items()}
    if not _GUID.fullmatch(lowered.get("client-request-id", "")):
        return "client-request-id is not a GUID"
    if lowered.get("return-client-request-id", "false") not in ("true", "false"):
        return "return-client-request-id is not true/false"
    try:
        parse_rfc1123(lowered.get("ocp-date", ""))
        parse_conditions(CIMultiDictProxy(CIMultiDict(headers)))
    except (ValueError, BatchServiceError) as exc:
        return f"headers: {exc}"
    if method == "GET":
        return "GET with a body" if body else None
    if method != "PATCH":
        return f"method {method}"
    if body is None:
        return "PATCH without a body"
    if not lowered.get("content-type", "").startswith("application/json"):
        return "PATCH without a JSON content type"
    if len(body) > EMULATOR_MAX_BODY:
        return f"PATCH body of {len(body)} bytes"
    try:
        json.loads(body, parse_constant=_strict_constant)  # NaN/Infinity are not JSON
        parsed = parse_json_body(body)  # UTF-8, one object, no repeated names
        pool = parsed.get("poolInfo", {}).get("autoPoolSpecification", {}).get("pool")
        if isinstance(pool, dict):
            problem = _free_json_problem(pool, MAX_POOL_DEPTH)
            if problem:
                return problem
            # The pool's property names are Batch's to check (docs/message-contract.md:
            # passed through; a mistake there is a `failed` outcome), so they are not
            # held against the plan here; everything else is.
            checked = json.loads(body)
            spec = checked["poolInfo"]["autoPoolSpecification"]
            spec["pool"] = {k: v for k, v in pool.items() if k in POOL_SPECIFICATION_UPDATE_PROPERTIES}
            parsed = checked
        validate_job_update(parsed)
    except BatchServiceError as exc:
        return f"Batch would answer {exc.status} {exc.code} {dict(exc.values)} to {body[:300]!r}"
    except (ValueError, AttributeError, TypeError, RecursionError) as exc:
        return f"PATCH body unreadable ({_describe(exc)}): {body[:300]!r}"
    return None


# --- The scripted Batch -------------------------------------------------------------

JOB_A: dict[str, Any] = {
    "id": "j",
    "state": "active",
    "priority": 0,
    "allowTaskPreemption": False,
    "maxParallelTasks": -1,
    "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0},
    "poolInfo": {"poolId": "pool-1"},
    "onAllTasksComplete": "noaction",
    "metadata": [{"name": "owner", "value": "team"}],
}
JOB_B: dict[str, Any] = {
    **JOB_A,
    "poolInfo": {
        "autoPoolSpecification": {
            "autoPoolIdPrefix": "ap",
            "poolLifetimeOption": "job",
            "keepAlive": False,
            "pool": {"vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1},
        }
    },
    "networkConfiguration": {
        "subnetId": "/subscriptions/s/resourceGroups/g/providers/p/virtualNetworks/v/subnets/n",
        "skipWithdrawFromVNet": False,
    },
    "metadata": [],
}
ETAGS = ["0x8DD1", '"0x8DD1"', "0x8DD2", '"0x8DD2"']
LAST_MODIFIED = [
    "Thu, 01 Jan 2026 11:00:00 GMT",  # before the message was enqueued
    "Thu, 01 Jan 2026 12:00:01 GMT",  # after
    "yesterday",
    "",
    None,
]
RETRY_AFTER = [None, "0", "abc", "NaN", "-5", "inf", "100"]
GARBAGE_JOBS = [
    b"<html>",
    b"[]",
    b"null",
    b'"job"',
    b"[" * 50_000,
    b'{"id": ',
    b'{"id":"\xff"}',
    b"\xef\xbb\xbf{}",
]
ODD_ERRORS = [
    b"",
    b"<html>",
    b"[]",
    b'{"code": 5}',
    b'{"message": {"value": 5}}',
    b'{"message": {"value": null}}',
    b'{"message": "plain"}',
    b'{"values": [{"key": 1}]}',
    b'{"values": {"a": 1}}',
    b'{"values": [1]}',
    b'{"code": null, "message": {"value": ["x"]}}',
    b'{"code": "E", "values": [{"key": "k", "value": {"deep": [1]}}]}',
    b"[" * 50_000,
]
NETWORK_FAILURE = "ConnectError: connection refused"  # what BatchClient.send_once reports


def _error_body(code: str, text: str, values: Sequence[tuple[str, str]] = ()) -> bytes:
    doc: dict[str, Any] = {"code": code, "message": {"lang": "en-US", "value": text}}
    if values:
        doc["values"] = [{"key": k, "value": v} for k, v in values]
    return json.dumps(doc).encode()


Answer = tuple[int, dict[str, str], bytes] | str  # a reply, or a transport failure's text


class FakeBatch:
    """Answers requests from a script, checking each against Batch's contract first.
    A request Batch would refuse is recorded and answered 400, as Batch would."""

    def __init__(self, replies: Sequence[Reply], allowed: frozenset[str]) -> None:
        self.script = list(replies)
        self.allowed = allowed
        self.seen: list[tuple[str, str, bytes]] = []
        self.refused: list[str] = []
        self.last_patch: dict[str, Any] | None = None

    def answer(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Answer:
        self.seen.append((method, url, body or b""))
        why = batch_would_refuse(method, url, headers, body, self.allowed)
        if why is not None:
            self.refused.append(f"{method} {url}: {why}")
            return 400, {"Content-Type": "application/json"}, _error_body("InvalidRequestBody", why[:200])
        if method == "PATCH" and body:
            self.last_patch = json.loads(body)
        reply = self.script.pop(0) if self.script else Reply("ok")
        return self._render(reply, method, body or b"")

    def _render(self, reply: Reply, method: str, body: bytes) -> Answer:
        v = reply.variant
        ok_headers = {"request-id": f"r-{v}", "ETag": ETAGS[v % 4]}
        modified = LAST_MODIFIED[v % 5]
        if modified is not None:
            ok_headers["Last-Modified"] = modified
        job = JOB_B if v >= 8 else JOB_A
        kind = reply.kind
        if kind in ("ok", "ok-echo", "ok-noetag"):
            if kind == "ok-echo" and self.last_patch:
                job = {**job, **self.last_patch}  # Batch merges at the top level
            if kind == "ok-noetag":
                del ok_headers["ETag"]
            return 200, ok_headers, b"" if method == "PATCH" else json.dumps(job).encode()
        if kind == "ok-empty":
            return 200, ok_headers, b""
        if kind == "ok-garbage":
            return 200, ok_headers, GARBAGE_JOBS[v % len(GARBAGE_JOBS)]
        if kind == "network":
            return NETWORK_FAILURE
        error_headers = {"request-id": f"r-{v}", "Content-Type": "application/json"}
        if kind in ("503", "429", "500"):
            retry_after = RETRY_AFTER[v % len(RETRY_AFTER)]
            if retry_after is not None:
                error_headers["Retry-After"] = retry_after
            return int(kind), error_headers, _error_body("ServerBusy", "try later")
        if kind == "error-echo":  # Batch quotes the request back: the event must not
            status = (400, 409, 412, 403)[v % 4]
            text = body.decode("utf-8", "replace")
            return status, error_headers, _error_body("InvalidPropertyValue", text, [("PropertyValue", text)])
        if kind == "error-odd":
            status = (400, 409, 412, 503, 401)[v % 5]
            return status, error_headers, ODD_ERRORS[v % len(ODD_ERRORS)]
        code = {"412": "ConditionNotMet", "400": "InvalidPropertyValue", "404": "JobNotFound"}.get(
            kind, "JobCompleted"
        )
        return int(kind), error_headers, _error_body(code, f"{code} text", [("Reason", "x")])


def _reply(answer: tuple[int, dict[str, str], bytes]) -> BatchReply:
    status, headers, body = answer
    return reply_from(status, [(k.encode(), v.encode()) for k, v in headers.items()], body)


def simulate_send(batch: FakeBatch, request: BatchRequest, policy: RetryPolicy, budget: float) -> Sent:
    """BatchClient.send's retry loop (and BatchAuth's one resend after a 401), with
    time standing still (no backoff is slept)."""
    attempts = 0
    last: BatchReply | None = None
    failure = "no time left in the budget"
    while True:
        attempts += 1
        got = batch.answer(request.method, request.url, request.headers, request.body)
        if not isinstance(got, str) and got[0] == 401:
            # BatchAuth: a 401 fetches a fresh token and resends once, inside the attempt.
            got = batch.answer(request.method, request.url, request.headers, request.body)
        retry_after: float | None = None
        if isinstance(got, str):
            failure = got
        else:
            reply = _reply(got)
            if reply.status not in RETRYABLE_STATUS:
                return Sent(reply, attempts)
            last, failure, retry_after = reply, f"HTTP {reply.status}", reply.retry_after
        if attempts >= policy.max_attempts:
            return Sent(last, attempts, failure)
        wait = retry_after if retry_after is not None else 0.0  # zero backoff, as the rig
        if wait + MIN_ATTEMPT_SECONDS >= budget:
            return Sent(last, attempts, failure)


RETRY = RetryPolicy(
    max_attempts=SETTINGS.max_attempts, attempt_timeout=5.0, initial_backoff=0.0, max_backoff=0.0
)


# --- a. and b. through the plan ------------------------------------------------------


@dataclass
class Drive:
    admitted: bool = False
    done: Done | None = None
    raised: str | None = None
    batch: FakeBatch | None = None


def inbound_of(case: Case) -> Inbound:
    return Inbound(case.body, case.message_id, case.delivery_count, ENQUEUED)


def drive_plan(case: Case, policy: Policy = FUNCTION_POLICY) -> Drive:
    """admit, then next_step until Done, exactly as JobUpdateHandler._drive loops."""
    drive = Drive(batch=FakeBatch(case.replies, policy.allowed_endpoints))
    assert drive.batch is not None
    try:
        job = admit(inbound_of(case), policy, NOW)
        if isinstance(job, Done):
            drive.done = job
            return drive
        drive.admitted = True
        history: tuple[Exchange, ...] = ()
        for _ in range(MAX_STEPS):
            step = next_step(job, history)
            if isinstance(step, Done):
                drive.done = step
                return drive
            sent = simulate_send(drive.batch, step.request, RETRY, SETTINGS.retry_budget_seconds)
            history = (*history, Exchange(step, sent))
        drive.raised = f"no outcome after {MAX_STEPS} steps"
    except Exception as exc:  # the property: nothing but a Done comes out
        drive.raised = _describe(exc)
    return drive


def _outcome_problems(result: Result, case: Case, findings: Findings) -> None:
    if result.outcome is Outcome.rejected:
        if not result.problems:
            findings.violations.append("rejected with no problem")
        for problem in result.problems:
            if not (problem.path == "$" or problem.path.startswith(("$.", "$["))):
                findings.violations.append(f"problem without a JSON path: {problem}")


def _settle_problems(done: Done, case: Case, findings: Findings) -> None:
    last = case.delivery_count >= MAX_DELIVERIES
    if done.settle is not Settle.complete and done.result.outcome is not Outcome.given_up:
        findings.violations.append(f"settle {done.settle} with outcome {done.result.outcome}")
    if done.settle is Settle.retry and last:
        findings.violations.append("retry on the last delivery (it must give up)")
    if done.settle is Settle.give_up and not last:
        findings.violations.append("gave up before the last delivery")


def _event_problems(result: Result, key: str, findings: Findings) -> None:
    try:
        event = build_event(result, key, duration_ms=1.0, now=NOW)
        doc = json.loads(event.body)
        OutcomeData.model_validate(doc["data"])
    except Exception as exc:
        findings.escapes.append(f"building the event: {_describe(exc)}")
        return
    if len(event.body) > SERVICE_BUS_MAX_BYTES:
        findings.violations.append(f"event of {len(event.body)} bytes does not fit a message")
    if doc["data"]["outcome"] != result.outcome.value:
        findings.violations.append("event outcome differs from the result")


def plan_property(case: Case) -> Findings:
    findings = Findings()
    drive = drive_plan(case)
    assert drive.batch is not None
    if drive.raised is not None:
        findings.escapes.append(f"plan: {drive.raised}")
        return findings
    assert drive.done is not None
    result = drive.done.result
    findings.outcome = "transient" if drive.done.settle is Settle.retry else result.outcome.value
    findings.invalid_reached_batch += drive.batch.refused
    if drive.batch.seen and not drive.admitted:
        findings.invalid_reached_batch.append("a request went out for a message admit refused")
    if drive.admitted == (result.outcome is Outcome.rejected):
        findings.violations.append(f"admitted={drive.admitted} but outcome {result.outcome}")
    _outcome_problems(result, case, findings)
    _settle_problems(drive.done, case, findings)
    if drive.done.settle is not Settle.retry:
        _event_problems(result, inbound_of(case).key, findings)
    return findings


# --- a. and b. through the handler ----------------------------------------------------


class _RefreshingCredential(FakeCredential):
    """Every cache-skipping call (claims given) mints a new token, as a managed
    identity endpoint does: so every 401 is followed by a resend, as simulate_send
    models it, whatever earlier cases did to the shared token cache."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.minted = 0

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        info = await super().get_token_info(*scopes, options=options)
        if options is not None and options.get("claims") is not None:
            self.minted += 1
            return AccessTokenInfo(f"{info.token}-{self.minted}", info.expires_on)
        return info


class _Unexpected(logging.Handler):
    """Records what the handler logs with a traceback: an internal error it swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.records.append(_describe(record.exc_info[1]))


class HandlerRig:
    """One handler, client and loop for the process (as handlers.runtime keeps them);
    each case swaps in its own scripted Batch."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.batch = FakeBatch((), SETTINGS.allowed_endpoints)
        auth = BatchAuth(
            SETTINGS.allowed_endpoints,
            tokens=TokenCache(_RefreshingCredential("fuzz-token"), SETTINGS.token_scope),
        )
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(self._transport),
            auth=auth,
            timeout=httpx.Timeout(SETTINGS.http_timeout_seconds, connect=10.0),
            follow_redirects=False,
            trust_env=False,
        )
        http._cookies = NoCookies()
        self.publisher = RecordingPublisher()
        self.handler = JobUpdateHandler(SETTINGS, BatchClient(http, RETRY), self.publisher, clock=lambda: NOW)
        self.unexpected = _Unexpected()
        logger = logging.getLogger("handlers.job_update")
        logger.addHandler(self.unexpected)

    async def _transport(self, request: httpx.Request) -> httpx.Response:
        answer = self.batch.answer(request.method, str(request.url), dict(request.headers), request.content)
        if isinstance(answer, str):
            raise httpx.ConnectError(answer.removeprefix("ConnectError: "), request=request)
        status, headers, body = answer
        return httpx.Response(status, headers=headers, content=body)

    def handle(self, case: Case) -> tuple[Result | BaseException, FakeBatch, list[Any], list[str]]:
        self.batch = FakeBatch(case.replies, SETTINGS.allowed_endpoints)
        self.publisher.events.clear()
        self.unexpected.records.clear()
        outcome: Result | BaseException
        try:
            outcome = self.loop.run_until_complete(self.handler.handle(inbound_of(case)))
        except Exception as exc:
            outcome = exc
        return outcome, self.batch, list(self.publisher.events), list(self.unexpected.records)


_RIG: HandlerRig | None = None


def rig() -> HandlerRig:
    global _RIG
    if _RIG is None:
        _RIG = HandlerRig()
    return _RIG


def handler_property(case: Case) -> Findings:
    findings = Findings()
    outcome, batch, events, swallowed = rig().handle(case)
    findings.escapes += [f"handler swallowed {s}" for s in swallowed]
    findings.invalid_reached_batch += batch.refused
    last = case.delivery_count >= MAX_DELIVERIES
    if isinstance(outcome, RetryLater):
        expected = 1 if last else 0  # given-up is published first on the last delivery
        if len(events) != expected:
            findings.violations.append(
                f"RetryLater with {len(events)} events on delivery {case.delivery_count}"
            )
    elif isinstance(outcome, BaseException):
        findings.escapes.append(f"handler raised {_describe(outcome)}")
        return findings
    elif len(events) != 1:
        findings.violations.append(f"{len(events)} events for one message")
    data: dict[str, Any] | None = None
    if events:
        event = events[-1]
        if len(event.body) > SERVICE_BUS_MAX_BYTES:
            findings.violations.append(f"event of {len(event.body)} bytes")
        data = json.loads(event.body)["data"]
        OutcomeData.model_validate(data)
        if data["outcome"] == "rejected":
            if batch.seen:
                findings.invalid_reached_batch.append(f"rejected but sent {len(batch.seen)} requests")
            for problem in data.get("problems", []):
                if not str(problem.get("path", "")).startswith("$"):
                    findings.violations.append(f"problem without a JSON path: {problem}")
    # The handler does what the plan says: same requests, same outcome.
    drive = drive_plan(case)
    assert drive.batch is not None
    if batch.seen and not drive.admitted:
        findings.invalid_reached_batch.append("the handler sent requests for a message admit refused")
    if drive.done is not None and not swallowed:
        if [(m, u, b) for m, u, b in batch.seen] != drive.batch.seen:
            findings.violations.append("the handler's requests differ from the plan's")
        want = drive.done.result.outcome.value
        got = data["outcome"] if data else None
        if drive.done.settle is not Settle.retry and got != want:
            findings.violations.append(f"handler outcome {got}, plan outcome {want}")
        if isinstance(outcome, Result) and drive.done.settle is not Settle.complete:
            findings.violations.append("handler completed a message the plan retries")
    return findings


# --- c. check and the function ---------------------------------------------------------


def _verdict(done_or_job: Job | Done) -> tuple[bool, list[tuple[str, str]]]:
    if isinstance(done_or_job, Done):
        return False, sorted((p.path, p.code) for p in done_or_job.result.problems)
    return True, []


def check_property(case: Case) -> Findings:
    findings = Findings()
    try:
        function = _verdict(admit(inbound_of(case), FUNCTION_POLICY, NOW))
    except Exception as exc:
        findings.escapes.append(f"admit: {_describe(exc)}")
        return findings
    try:
        # As the CLI reads a file: one JSON document, or JSON Lines.
        found = list(messages("message.json", case.body))
        verdicts = []
        for _, body in found:
            result = check_one(body, CHECK_POLICY, NOW)
            problems = sorted((p["path"], p["code"]) for p in result.get("problems", []))
            verdicts.append((bool(result["valid"]), problems))
    except Exception as exc:
        findings.escapes.append(f"check: {_describe(exc)}")
        return findings
    if len(found) == 1 and found[0][1] == case.body:
        if verdicts[0] != function:
            findings.check_disagreements.append(f"check says {verdicts[0]}, the function {function}")
    elif function[0]:
        # Split into several messages (JSON Lines), or none: as one body it must be invalid.
        findings.check_disagreements.append(
            f"check read {len(found)} messages from a body the function accepts"
        )
    return findings


def check_cli_property(case: Case, workdir: Path) -> Findings:
    """The whole command (file read, JSON Lines, exit code) against the function."""
    findings = Findings()
    if len(list(messages("message.json", case.body))) > 1:
        return findings  # JSON Lines: several messages to check, one invalid body to the function
    path = workdir / "message.json"
    path.write_bytes(case.body)
    out = io.StringIO()
    argv = ["check", str(path), "--allowed-endpoints", ENV["BATCH_ALLOWED_ENDPOINTS"]]
    argv += ["--default-endpoint", ENV["BATCH_DEFAULT_ENDPOINT"]]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv, {})
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    except Exception as exc:
        findings.escapes.append(f"check CLI: {_describe(exc)}")
        return findings
    # check reads the real clock; so does the function here, for the ocpDate window.
    accepted = not isinstance(admit(inbound_of(case), FUNCTION_POLICY, datetime.now(UTC)), Done)
    if (code == 0) != accepted or code not in (0, 1, 2):
        findings.check_disagreements.append(f"check exited {code}, the function accepted={accepted}")
    return findings


def cli_workdir() -> contextlib.AbstractContextManager[str]:
    return tempfile.TemporaryDirectory(prefix="fuzz-check-")


# --- Salvaging ids -----------------------------------------------------------------


def identity_property(case: Case) -> Findings:
    findings = Findings()
    inbound = inbound_of(case)
    try:
        job_id, endpoint = identity_hint(case.body)
        done = internal_error(inbound, FUNCTION_POLICY, ValueError("fuzz"), NOW)
        build_event(done.result, inbound.key, now=NOW)
    except Exception as exc:
        findings.escapes.append(f"identity: {_describe(exc)}")
        return findings
    if job_id is not None and not _JOB_ID.fullmatch(job_id):
        findings.violations.append(f"identity_hint salvaged an invalid job id {job_id[:80]!r}")
    if endpoint is not None and not isinstance(endpoint, str):
        findings.violations.append("identity_hint salvaged a non-string endpoint")
    return findings


PROPERTIES = {
    "plan": plan_property,
    "handler": handler_property,
    "check": check_property,
    "identity": identity_property,
}
