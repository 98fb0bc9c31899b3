"""One LLM request in, one checked result out, whatever the model server does.

The order of things for a request (``LLMRequest``, the payload of a ``cmd.llm`` command):

1. load the task's versioned prompt and render it (``processors/llm/prompts.py``);
2. if no model server is configured, or the client raises (down, slow, breaker open,
   guard refusal), answer with the embedded fallback (``processors/llm/fallback.py``);
3. otherwise parse and validate the completion (``processors/llm/validate.py``); an
   unusable answer (truncated, not JSON, off-schema) also falls back, and says so;
4. span-check every value, dropping what is not in the document.

The result always comes back - ``source`` ``model``, ``fallback`` or ``none`` - with
``needs_person`` and its reasons, plus a :class:`CallRecord` of what the audit event
records: model, prompt version, input hash, latency, outcome. Nothing here logs text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from practiceflow.processors.llm import fallback
from practiceflow.processors.llm.config import LLMSettings
from practiceflow.processors.llm.guard import EndpointRefused
from practiceflow.processors.llm.prompts import input_sha256, load_prompt, render
from practiceflow.processors.llm.tasks import TASKS, LLMRequest
from practiceflow.processors.llm.validate import LLMResult, OutputInvalid, checked_result, parse_output
from practiceflow.sinks.llm.client import LLMClient, LLMUnavailable


@dataclass(frozen=True)
class CallRecord:
    """What the audit event of one call says (ids, codes, numbers; never text)."""

    outcome: str  # ok | fallback | refused | invalid_output | unavailable | bad_request
    reason: str | None
    model: str | None
    prompt: str | None
    input_sha256: str | None
    latency_ms: float
    attempts: int


class LLMService:
    """The client plus everything around it; ``client=None`` = the fallback answers everything."""

    def __init__(self, cfg: LLMSettings, client: LLMClient | None = None) -> None:
        self.cfg = cfg
        self.client = client

    @classmethod
    def from_settings(cls, cfg: LLMSettings) -> LLMService:
        return cls(cfg, LLMClient(cfg) if cfg.base_url else None)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def run(self, request: LLMRequest) -> tuple[LLMResult, CallRecord]:
        started = time.perf_counter()
        spec = TASKS.get(request.task)
        if spec is None:
            result = LLMResult(task=request.task, source="none", needs_person=True, reasons=["llm_unknown_task"])
            return result, CallRecord("bad_request", "llm_unknown_task", None, None, None, 0.0, 0)
        prompt = load_prompt(spec.name, request.prompt_version or spec.prompt_version, self.cfg.prompts_dir)
        messages = render(prompt, request)
        schema = spec.json_schema(request.fields)
        if self.client is None:
            return self._fallback(request, "llm_not_configured", "fallback", prompt.ref, None, started, 0)
        try:
            model = await self.client.model()
            digest = input_sha256(model, messages, schema)
            completion = await self.client.complete(messages, spec.name, schema)
        except EndpointRefused as exc:
            return self._fallback(request, exc.code, "refused", prompt.ref, None, started, 0)
        except LLMUnavailable as exc:
            return self._fallback(request, exc.code, "unavailable", prompt.ref, None, started, 0)
        try:
            output = parse_output(spec.name, completion.content, completion.finish_reason)
        except OutputInvalid as exc:
            result, rec = self._fallback(
                request, exc.code, "invalid_output", prompt.ref, digest, started, completion.attempts
            )
            return result, CallRecord(
                rec.outcome, rec.reason, completion.model, rec.prompt, digest, rec.latency_ms, rec.attempts
            )
        result = checked_result(
            request, output, source="model", model=completion.model, prompt=prompt.ref, input_sha256=digest
        )
        record = CallRecord(
            "ok",
            ";".join(result.reasons) or None,
            completion.model,
            prompt.ref,
            digest,
            completion.latency_ms,
            completion.attempts,
        )
        return result, record

    def _fallback(
        self,
        request: LLMRequest,
        why: str,
        outcome: str,
        prompt: str,
        digest: str | None,
        started: float,
        attempts: int,
    ) -> tuple[LLMResult, CallRecord]:
        """The embedded model's answer (or none), always marked for a person."""
        latency = round((time.perf_counter() - started) * 1000, 1)
        if fallback.has_fallback(request.task):
            result = checked_result(
                request,
                fallback.extract_labelled(request),
                source="fallback",
                model=f"{fallback.MODEL_NAME}@{fallback.VERSION}",
            )
        else:
            result = LLMResult(task=request.task, source="none")
        result.reasons = [f"fallback:{why}", *result.reasons]
        result.needs_person = True
        return result, CallRecord(outcome, why, None, prompt, digest, latency, attempts)
