"""One interface for every clearinghouse connector, and the policy around it.

A connector does one thing: hand a 270 to a clearinghouse and return its 271
(:class:`Connector.exchange`). It raises :class:`Transient` for what may work on another
try (connection refused, HTTP 5xx/429, a per-attempt timeout, a folder answer not there
yet) and :class:`Refused` for what never will (the envelope refused, 4xx). Everything
else — retries with exponential backoff, the per-attempt timeout, the command's overall
deadline, and a per-payer rate limit — is :class:`EligibilityClient`, the same for every
connector, which never raises: a check that cannot complete ends as a
:class:`ConnectorAnswer` with outcome ``timeout``/``failed``/``refused`` and the reason,
which the intake workflow turns into "could not determine".

Why hand-written rather than tenacity/aiolimiter: the backoff must stop at the
command's deadline (not after N tries), the limiter must give up when waiting would
pass that deadline, and both are a few lines; a dependency would add a lock entry
for less than it replaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ConnectorAnswer",
    "Connector",
    "EligibilityClient",
    "EligibilityRequest",
    "PayerRateLimiter",
    "Refused",
    "Transient",
]


class Transient(Exception):
    """May work on another try (the clearinghouse down, busy, slow)."""


class Refused(Exception):
    """Will not work on another try (the envelope or the 270 refused)."""


@dataclass(frozen=True)
class EligibilityRequest:
    command_id: str
    practice_id: str
    payer_id: str
    x12_270: bytes
    payload_id: str  # the CORE PayloadID / file name: derived from the command id, so a resend is recognisable


@dataclass(frozen=True)
class ConnectorAnswer:
    outcome: str  # ok | timeout | failed | refused
    x12_271: bytes = b""
    reason: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0


class Connector(Protocol):
    name: str

    async def exchange(self, request: EligibilityRequest, timeout_s: float) -> bytes: ...

    async def close(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class PayerRateLimiter:
    """Token bucket per payer: ``rate`` requests per second, bursts up to ``burst``.

    Payers and clearinghouses throttle per submitter (CORE rule 270 lets a receiver refuse
    a busy sender); staying under their limit is cheaper than being refused and retrying."""

    rate: float
    burst: int = 1
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _take(self, payer: str) -> float:
        """Take a token now if there is one (0.0), else how long until there is one."""
        now = self.clock()
        b = self._buckets.get(payer)
        if b is None:
            b = self._buckets[payer] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate

    async def acquire(self, payer: str, deadline: float) -> bool:
        """Wait for the payer's next slot; False when it would come after ``deadline`` (monotonic)."""
        if self.rate <= 0:
            return True
        lock = self._locks.setdefault(payer, asyncio.Lock())
        async with lock:  # first come, first served per payer
            while True:
                wait = self._take(payer)
                if wait == 0.0:
                    return True
                if self.clock() + wait > deadline:
                    return False
                await asyncio.sleep(wait)


class EligibilityClient:
    """Retries, timeouts and the per-payer rate limit around a :class:`Connector` (see module doc)."""

    def __init__(
        self,
        connector: Connector,
        *,
        attempt_timeout_s: float = 10.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_attempts: int = 5,
        rate_per_payer: float = 5.0,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        self.attempt_timeout_s = attempt_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.limiter = PayerRateLimiter(rate_per_payer, burst, clock)
        self.clock = clock

    async def check(self, request: EligibilityRequest, budget_s: float) -> ConnectorAnswer:
        """Send ``request`` until a 271 comes back, the attempts are spent or ``budget_s`` is over."""
        start = self.clock()
        deadline = start + max(budget_s, 0.0)
        attempts = 0
        last = "no attempt made"
        while attempts < self.max_attempts:
            if not await self.limiter.acquire(request.payer_id, deadline):
                return self._end(
                    "timeout",
                    f"rate limit for payer {request.payer_id}: no slot before the deadline; last: {last}",
                    attempts,
                    start,
                )
            left = deadline - self.clock()
            if left <= 0:
                break
            attempts += 1
            try:
                body = await asyncio.wait_for(
                    self.connector.exchange(request, min(self.attempt_timeout_s, left)),
                    timeout=min(self.attempt_timeout_s, left),
                )
                return ConnectorAnswer("ok", body, None, attempts, (self.clock() - start) * 1000)
            except Refused as exc:
                return self._end("refused", f"{self.connector.name}: {exc}", attempts, start)
            except (Transient, TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            pause = min(self.backoff_max_s, self.backoff_s * (2 ** (attempts - 1)))
            if self.clock() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        outcome = "timeout" if self.clock() >= deadline or attempts < self.max_attempts else "failed"
        return self._end(outcome, f"{self.connector.name}: {attempts} attempt(s), last: {last}", attempts, start)

    def _end(self, outcome: str, reason: str, attempts: int, start: float) -> ConnectorAnswer:
        return ConnectorAnswer(outcome, b"", reason, attempts, (self.clock() - start) * 1000)

    async def close(self) -> None:
        await self.connector.close()
