"""A guarded client for an OpenAI-compatible model server (vLLM), with JSON-schema output.

httpx directly rather than the ``openai`` package: the calls are two documented
endpoints (``GET /v1/models``, ``POST /v1/chat/completions``), and owning the transport
is what lets the PHI guard see every request, redirects included, through an httpx
request hook (``processors/llm/guard.py``). Around each call:

* **concurrency**: an ``asyncio.Semaphore`` (``llm.concurrency``) so a burst of faxes
  cannot queue hundreds of prompts on one GPU;
* **timeouts**: per attempt (``timeout_s``, ``connect_timeout_s``) and per call across all
  attempts (``deadline_s``), after which the caller falls back;
* **retries with jitter**: tenacity, exponential backoff with random jitter, only for
  what may pass on its own (connect errors, timeouts, 5xx, 429);
* **circuit breaker**: pybreaker (maintained; its ``calling()`` context manager works
  around an ``await``). Only service failures count (not a refused endpoint, not a bad
  answer); once open, calls fail at once for ``breaker_reset_s`` and the caller uses the
  embedded fallback instead of waiting on a dead server.

No prompt or completion text is ever logged: log lines name the host, the outcome and
the latency. The audit event of each call is written by the command executor
(``streams/commands/llm.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pybreaker
from prometheus_client import Counter, Gauge, Histogram
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from practiceflow.processors.llm.config import LLMSettings
from practiceflow.processors.llm.guard import EndpointRefused, address_problem, check_url

log = logging.getLogger("practiceflow.llm")

CALLS = Counter("practiceflow_llm_calls_total", "LLM calls by outcome", ["outcome"])
ATTEMPTS = Counter("practiceflow_llm_attempts_total", "HTTP attempts to the model server by result", ["result"])
LATENCY = Histogram("practiceflow_llm_call_seconds", "LLM call latency, all attempts together")
BREAKER_OPEN = Gauge("practiceflow_llm_breaker_open", "1 while the LLM circuit breaker is open")
REFUSED = Counter("practiceflow_llm_refused_total", "Requests the PHI guard refused", ["code"])


class LLMUnavailable(Exception):
    """The model server could not answer in time (down, slow, failing, breaker open).

    ``code``: llm_unreachable | llm_timeout | llm_server_error | llm_rate_limited |
    llm_breaker_open | llm_deadline | llm_client_error | llm_no_model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Transient(LLMUnavailable):
    """An attempt that may succeed if repeated (retried, and counted by the breaker)."""


@dataclass
class Completion:
    content: str
    model: str
    finish_reason: str | None
    attempts: int
    latency_ms: float
    usage: dict[str, Any] = field(default_factory=dict)


def response_format_body(style: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields that constrain decoding to ``schema`` (see ``LLMSettings.structured_output``)."""
    if style == "structured_outputs":  # vLLM >= 0.10 (the only spelling after 0.12 besides response_format)
        return {"structured_outputs": {"json": schema}}
    if style == "guided_json":  # vLLM < 0.12
        return {"guided_json": schema}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}}


class LLMClient:
    """One per process; ``async with LLMClient(cfg) as c: await c.complete(...)``."""

    def __init__(self, cfg: LLMSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if cfg.base_url is None:
            raise ValueError("llm.base_url is not set: no model server to call")
        self.cfg = cfg
        self.allowed = tuple(cfg.allowed_endpoints)
        check_url(cfg.base_url, self.allowed)  # the settings validator did too; a client is never built unguarded
        self.base_url = cfg.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"} if cfg.api_key else {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            follow_redirects=True,
            max_redirects=3,
            headers=headers,
            event_hooks={"request": [self._guard]},
            transport=transport,
            trust_env=False,  # no proxy from the environment: a proxy would see the prompt
        )
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=cfg.breaker_fail_max,
            reset_timeout=cfg.breaker_reset_s,
            exclude=[lambda exc: not isinstance(exc, _Transient)],
            name="llm",
        )
        self._resolved: dict[str, float] = {}  # host -> when its addresses were last checked
        self._model: str | None = cfg.model
        self.requests_sent = 0  # requests the guard let through (tests read it)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ the guard
    async def _guard(self, request: httpx.Request) -> None:
        """Runs before every request httpx sends, each redirect hop included."""
        try:
            origin = check_url(str(request.url), self.allowed)
            if self.cfg.require_private_address:
                await self._check_addresses(origin.host, origin.port)
        except EndpointRefused as exc:
            REFUSED.labels(exc.code).inc()
            log.error("PHI guard refused a request to %s: %s", request.url.host, exc.code)
            raise
        self.requests_sent += 1

    async def _check_addresses(self, host: str, port: int) -> None:
        now = time.monotonic()
        if now - self._resolved.get(host, -1e9) < 60:
            return
        host = host.strip("[]")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return  # unresolvable: the connection attempt fails (and is retried) on its own
        for info in infos:
            problem = address_problem(str(info[4][0]))
            if problem is not None:
                raise EndpointRefused(
                    "llm_public_address",
                    f"refused to call {host}: it resolves to {problem}; the practice's model server must be on a "
                    "private network (llm.require_private_address)",
                )
        self._resolved[host] = now

    # ------------------------------------------------------------------ calls
    async def models(self) -> list[str]:
        """Model ids the server serves (``GET /v1/models``)."""
        data = await self._request("GET", "/models")
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    async def model(self) -> str:
        if self._model is None:
            names = await self.models()
            if not names:
                raise LLMUnavailable("llm_no_model", "the model server lists no model")
            self._model = names[0]
        return self._model

    async def complete(self, messages: list[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> Completion:
        """One chat completion constrained to ``schema``; raises LLMUnavailable or EndpointRefused."""
        started = time.perf_counter()
        attempts = 0
        try:
            async with asyncio.timeout(self.cfg.deadline_s), self._sem:
                model = await self.model()
                body: dict[str, Any] = {
                    "model": model,
                    "messages": messages,
                    "temperature": self.cfg.temperature,
                    "max_tokens": self.cfg.max_tokens,
                    **response_format_body(self.cfg.structured_output, schema_name, schema),
                }
                async for attempt in self._retrying():
                    with attempt:
                        attempts += 1
                        data = await self._request("POST", "/chat/completions", json=body)
        except TimeoutError as exc:
            CALLS.labels("llm_deadline").inc()
            raise LLMUnavailable("llm_deadline", f"no answer within {self.cfg.deadline_s}s") from exc
        except LLMUnavailable as exc:
            CALLS.labels(exc.code).inc()
            raise
        except EndpointRefused:
            CALLS.labels("refused").inc()
            raise
        latency = (time.perf_counter() - started) * 1000
        LATENCY.observe(latency / 1000)
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            CALLS.labels("llm_bad_response").inc()
            raise LLMUnavailable("llm_bad_response", "the server's answer has no choices[0].message") from exc
        CALLS.labels("ok").inc()
        return Completion(
            content=content,
            model=str(data.get("model") or model),
            finish_reason=choice.get("finish_reason"),
            attempts=attempts,
            latency_ms=round(latency, 1),
            usage=dict(data.get("usage") or {}),
        )

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.cfg.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.cfg.backoff_s, max=self.cfg.backoff_max_s, jitter=self.cfg.backoff_s
            ),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )

    async def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """One attempt through the breaker; errors sorted into transient / refused / client."""
        try:
            with self.breaker.calling():
                return await self._attempt(method, path, **kw)
        except pybreaker.CircuitBreakerError as exc:
            BREAKER_OPEN.set(1)
            raise LLMUnavailable("llm_breaker_open", "the model server failed repeatedly; breaker open") from exc
        finally:
            BREAKER_OPEN.set(1 if self.breaker.current_state == pybreaker.STATE_OPEN else 0)

    async def _attempt(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = await self._http.request(method, self.base_url + path, **kw)
        except EndpointRefused:
            ATTEMPTS.labels("refused").inc()
            raise
        except httpx.TimeoutException as exc:
            ATTEMPTS.labels("timeout").inc()
            raise _Transient("llm_timeout", f"{type(exc).__name__} from the model server") from exc
        except httpx.TooManyRedirects as exc:
            ATTEMPTS.labels("redirects").inc()
            raise LLMUnavailable("llm_client_error", "too many redirects") from exc
        except httpx.TransportError as exc:
            ATTEMPTS.labels("unreachable").inc()
            raise _Transient("llm_unreachable", f"{type(exc).__name__}: model server unreachable") from exc
        if resp.status_code == 429:
            ATTEMPTS.labels("429").inc()
            raise _Transient("llm_rate_limited", "the model server is busy (429)")
        if resp.status_code >= 500:
            ATTEMPTS.labels("5xx").inc()
            raise _Transient("llm_server_error", f"the model server answered {resp.status_code}")
        if resp.status_code >= 400:
            ATTEMPTS.labels("4xx").inc()
            raise LLMUnavailable("llm_client_error", f"the model server answered {resp.status_code}")
        ATTEMPTS.labels("ok").inc()
        try:
            data = resp.json()
        except ValueError as exc:
            raise _Transient("llm_server_error", "the model server's answer is not JSON") from exc
        if not isinstance(data, dict):
            raise LLMUnavailable("llm_bad_response", "the model server's answer is not a JSON object")
        return data
