"""Every exception this package raises on purpose, in one place.

    JobUpdateError                 base: anything raised here on purpose
    ├── InvalidMessage             the message cannot be applied as written (-> `rejected`);
    │                              carries one Problem (JSON path, code, text) per fault
    ├── EndpointError (ValueError) not an origin a Batch credential may go to: a bad
    │                              allow-list entry (settings, `check`), a message endpoint
    │                              not listed, or a request the auth flow refuses to sign
    ├── UsageError                 a bad command-line option or input file (`check`: exit 2)
    ├── AlreadySettled             explicit settlement (JOB_UPDATES_SETTLEMENT=actions) asked
    │                              to settle a message a second time: a bug, never sent
    ├── PublishInterrupted         an outcome event's transfer was cancelled, or the publisher
    │   │                          closed, before the broker answered: not published (the
    │   │                          message is abandoned and its redelivery publishes)
    │   └── PublisherClosed        the publisher is closed (shutting down): no retry in place
    └── RetryLater                 raised to the Functions host: abandon the message so
        │                          Service Bus redelivers it. On the last delivery the
        │                          `given-up` event has been published before it is raised.
        └── DeadLetterPending      a scheduled copy whose only job is to reach the DLQ with
                                   the reason it carries (its `given-up` event is out):
                                   abandoned on every delivery, no Batch call, no event

Transient Batch failures (throttling, 5xx, network) are not exceptions: the client
returns them as an `Exchange` with a `failure`, and the plan decides what follows.
A ValueError base on EndpointError lets pydantic report it as a settings error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadySettled",
    "DeadLetterPending",
    "EndpointError",
    "InvalidMessage",
    "JobUpdateError",
    "Problem",
    "PublishInterrupted",
    "PublisherClosed",
    "RetryLater",
    "UsageError",
]


class JobUpdateError(Exception):
    """Base of every exception this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a message: where (JSON path), what (code), and why."""

    path: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


class InvalidMessage(JobUpdateError):
    """The message cannot be applied as written; retrying will not change that."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


class EndpointError(JobUpdateError, ValueError):
    """The endpoint is not one a credential may be sent to."""


class UsageError(JobUpdateError):
    """A command-line option or input the tools cannot use."""


class AlreadySettled(JobUpdateError):
    """A second settlement of one message (explicit settlement only): refused, not sent."""


class PublishInterrupted(JobUpdateError):
    """An outcome event whose transfer was cancelled or never started: not published."""


class PublisherClosed(PublishInterrupted):
    """The publisher is closed: nothing more will be sent by this process."""


class RetryLater(JobUpdateError):
    """Raised to the host: abandon the message so Service Bus redelivers it."""


class DeadLetterPending(RetryLater):
    """Abandon until Service Bus dead-letters it (the GA trigger cannot dead-letter)."""
