"""Model output -> a result staff can trust, or a reason it goes to a person (pure).

Three gates, in order, each with its reason code:

1. **JSON**: the completion must parse. A cut-off answer (``finish_reason`` ``length``, or
   JSON that ends early) is ``llm_truncated_json``; anything else unparseable is
   ``llm_not_json``. Constrained decoding makes both rare, not impossible (a server
   without it, a token limit).
2. **Schema**: the parsed JSON must validate against the task's pydantic model
   (``llm_schema_violation``), and a field name must be one the request asked for.
3. **Span check**: every quoted value must be found in the page text it claims (or, if
   the page number is wrong, on another page of the same document). Not found - a value
   the model invented, corrected or normalized - means the value is **dropped** and the
   result says ``needs_person`` with ``llm_span_not_found:<field>``. A wrong value is
   worse than a missing one: staff would file the fax into the wrong chart.

Matching tolerates what OCR and models legitimately differ on: runs of whitespace and
letter case. Nothing else: ``01/02/1980`` is not ``1980-01-02``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from practiceflow.processors.llm.tasks import (
    TASKS,
    ClassificationOutput,
    ExtractionOutput,
    LLMRequest,
    PageText,
)


class OutputInvalid(ValueError):
    """The model's answer is unusable as a whole (not JSON, cut off, or off-schema)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FoundField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    text: str = Field(description="the text as it stands in the page (the span), not as the model wrote it")
    value: str | None = None
    page: int
    span_start: int
    span_end: int


class DroppedField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    page: int | None = None
    reason: str


class LLMResult(BaseModel):
    """The payload of a CommandResult for a ``cmd.llm`` command (``payload_type`` ``llm.result``).

    ``source`` says who answered: ``model`` (the practice's LLM), ``fallback`` (the
    embedded model, because the LLM was down, slow, refused or gave an unusable answer)
    or ``none`` (nobody could: a person must read the document). ``needs_person`` is
    true whenever anything was dropped or nobody answered; ``reasons`` says why.
    """

    model_config = ConfigDict(extra="forbid")
    task: str
    source: Literal["model", "fallback", "none"]
    model: str | None = None
    prompt: str | None = Field(default=None, description="task/version@sha256 prefix of the prompt file")
    input_sha256: str | None = None
    fields: list[FoundField] = Field(default_factory=list)
    dropped: list[DroppedField] = Field(default_factory=list)
    label: str | None = None
    kind: str | None = None
    confidence: float | None = None
    evidence: list[FoundField] = Field(default_factory=list)
    needs_person: bool = False
    reasons: list[str] = Field(default_factory=list)


def parse_output(task: str, content: str, finish_reason: str | None = None) -> BaseModel:
    """Gates 1 and 2: the completion text as the task's output model, or :class:`OutputInvalid`."""
    spec = TASKS[task]
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        if finish_reason == "length" or _ends_early(content, exc):
            raise OutputInvalid("llm_truncated_json", f"the answer ends before its JSON does ({exc.msg})") from exc
        raise OutputInvalid("llm_not_json", f"the answer is not JSON ({exc.msg})") from exc
    try:
        return spec.output.model_validate(data)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in exc.errors()[:5])
        raise OutputInvalid("llm_schema_violation", f"the answer does not match the task's schema at: {where}") from exc


def _ends_early(content: str, exc: json.JSONDecodeError) -> bool:
    """JSON that was going fine until the text ran out (a token limit or a cut connection)."""
    stripped = content.rstrip()
    if not stripped or stripped[0] not in "{[":
        return False
    return exc.pos >= len(stripped) - 1 or exc.msg.startswith("Unterminated string")


_WS = re.compile(r"\s+")


def locate(page_text: str, quote: str) -> tuple[int, int] | None:
    """(start, end) of ``quote`` in ``page_text``: exact first, then ignoring case and
    collapsing whitespace runs; None when it is not there."""
    quote = quote.strip()
    if not quote:
        return None
    i = page_text.find(quote)
    if i >= 0:
        return i, i + len(quote)
    pattern = r"\s+".join(re.escape(part) for part in _WS.split(quote) if part)
    m = re.search(pattern, page_text, flags=re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def _find(pages: list[PageText], quote: str, page: int) -> tuple[int, int, int] | None:
    """(page, start, end): the claimed page first, then the others in order."""
    ordered = sorted(pages, key=lambda p: (p.page != page, p.page))
    for p in ordered:
        span = locate(p.text, quote)
        if span is not None:
            return p.page, span[0], span[1]
    return None


def _page_text(pages: list[PageText], page: int) -> str:
    return next((p.text for p in pages if p.page == page), "")


def span_check(request: LLMRequest, output: BaseModel) -> tuple[list[FoundField], list[DroppedField], list[FoundField]]:
    """Gate 3: (kept fields, dropped fields, kept evidence quotes)."""
    spec = TASKS[request.task]
    wanted = set(request.fields) & set(spec.field_names) or set(spec.field_names)
    kept: list[FoundField] = []
    dropped: list[DroppedField] = []
    evidence: list[FoundField] = []
    if isinstance(output, ExtractionOutput):
        for f in output.fields:
            if f.name not in wanted:
                dropped.append(DroppedField(name=f.name, page=f.page, reason="llm_field_not_requested"))
                continue
            hit = _find(request.pages, f.text, f.page)
            if hit is None:
                dropped.append(DroppedField(name=f.name, page=f.page, reason="llm_span_not_found"))
                continue
            page, start, end = hit
            kept.append(
                FoundField(
                    name=f.name,
                    text=_page_text(request.pages, page)[start:end],
                    value=f.value,
                    page=page,
                    span_start=start,
                    span_end=end,
                )
            )
    elif isinstance(output, ClassificationOutput):
        for i, q in enumerate(output.evidence):
            hit = _find(request.pages, q.text, q.page)
            if hit is None:
                dropped.append(DroppedField(name=f"evidence[{i}]", page=q.page, reason="llm_span_not_found"))
                continue
            page, start, end = hit
            evidence.append(
                FoundField(
                    name="evidence",
                    text=_page_text(request.pages, page)[start:end],
                    page=page,
                    span_start=start,
                    span_end=end,
                )
            )
    return kept, dropped, evidence


def checked_result(
    request: LLMRequest, output: BaseModel, *, source: Literal["model", "fallback"], **meta: Any
) -> LLMResult:
    """The output after the span check, as the result the workflow reads.

    A classification whose every evidence quote was dropped keeps no label: a class
    nothing in the document supports is a guess, and guesses go to a person.
    """
    kept, dropped, evidence = span_check(request, output)
    reasons = [f"{d.reason}:{d.name}" for d in dropped]
    result = LLMResult(task=request.task, source=source, fields=kept, dropped=dropped, evidence=evidence, **meta)
    if isinstance(output, ClassificationOutput):
        if evidence:
            result.label, result.kind, result.confidence = output.label, output.kind, output.confidence
        else:
            reasons.append("llm_label_unsupported")
    result.reasons = reasons
    result.needs_person = bool(reasons)
    return result
