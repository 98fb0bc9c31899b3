"""When a failed input is tried again, and when it becomes a dead letter (pure).

A dead letter is for input that can never succeed (bad bytes, an unsupported type).
A failure of something the input depends on — an OCR subprocess killed, the document
store or ClickHouse down, a registry timeout — says nothing about the input, so it is
retried with exponential backoff; only when the attempts are spent does it become a
``retries_exhausted`` dead letter that carries the last error. Each retry travels
through the feed's retry topic as the original RawMessage plus the ``retry.*``
headers below (``streams/retry.py``), so a restart never forgets a pending retry.

Time is passed in (``failed_at``), never read from a clock, and the backoff has no
random jitter: the same failure replays to the same schedule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import subprocess
from dataclasses import dataclass

from practiceflow.processors.base import Transient

ATTEMPT = "retry.attempt"  # attempts already made (1 after the first failure)
NOT_BEFORE = "retry.not_before"  # epoch ms before which the next attempt must not start
LAST_ERROR = "retry.last_error"  # "<ExceptionType>: <text>" of the last failure
FIRST_FAILED_AT = "retry.first_failed_at"  # epoch ms of the first failure
HEADERS = (ATTEMPT, NOT_BEFORE, LAST_ERROR, FIRST_FAILED_AT)

# Exceptions that mean "the world was not ready", not "the input is bad". OSError covers
# ConnectionError, TimeoutError, BrokenPipeError and an unreachable file system.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    Transient,
    OSError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
    subprocess.TimeoutExpired,
    socket.timeout,
)
# Third-party connection/timeout errors, matched by name so processors/ imports none of
# those libraries (requests, urllib3, httpx, botocore, clickhouse-connect, confluent-kafka).
_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeoutException",
        "ProtocolError",
        "NewConnectionError",
        "MaxRetryError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "OperationalError",
        "KafkaException",
        "SchemaRegistryError",
        "DocumentStoreUnavailable",  # sinks/docstore.py: the store did not confirm
        "OcrFailed",  # streams/fax.py: the OCR child died (OOM killer, crash)
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts every try, the first included; backoff doubles from
    ``base_ms`` up to ``max_backoff_ms``."""

    max_attempts: int = 6
    base_ms: int = 2_000
    max_backoff_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    attempt: int  # attempts made so far, this one included
    not_before: int | None  # epoch ms for the next attempt when ``retry``


def is_transient(exc: BaseException) -> bool:
    """True when the failure is about a dependency, not the input.

    ``subprocess.CalledProcessError`` is transient only when the child was killed by a
    signal (negative return code: OOM killer, a timeout); a child that exited with an
    error looked at the input and refused it.
    """
    if isinstance(exc, subprocess.CalledProcessError):
        return exc.returncode < 0
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def attempts_made(headers: dict[str, str] | None) -> int:
    """How many attempts a RawMessage has behind it (0 for a fresh one)."""
    try:
        return max(int((headers or {}).get(ATTEMPT, "0")), 0)
    except ValueError:
        return 0


def not_before(headers: dict[str, str] | None) -> int:
    """Epoch ms before which a retried message must wait (0: no wait)."""
    try:
        return int((headers or {}).get(NOT_BEFORE, "0"))
    except ValueError:
        return 0


def backoff_ms(policy: RetryPolicy, attempt: int) -> int:
    """Delay after the ``attempt``-th failure: base, 2x base, 4x base ... capped."""
    return int(min(policy.base_ms * (2 ** max(attempt - 1, 0)), policy.max_backoff_ms))


def decide(policy: RetryPolicy, headers: dict[str, str] | None, failed_at: int) -> RetryDecision:
    """After a transient failure of a message with these headers at ``failed_at``."""
    attempt = attempts_made(headers) + 1
    if attempt >= policy.max_attempts:
        return RetryDecision(False, attempt, None)
    return RetryDecision(True, attempt, failed_at + backoff_ms(policy, attempt))


def retry_headers(
    headers: dict[str, str] | None, decision: RetryDecision, error: str, failed_at: int
) -> dict[str, str]:
    """The RawMessage headers for the retry topic: the originals plus ``retry.*``."""
    out = dict(headers or {})
    out[ATTEMPT] = str(decision.attempt)
    out[NOT_BEFORE] = str(decision.not_before or failed_at)
    out[LAST_ERROR] = error[:2000]
    out.setdefault(FIRST_FAILED_AT, str(failed_at))
    return out
