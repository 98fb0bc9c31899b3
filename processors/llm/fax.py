"""The fax workflow's side of the LLM layer (pure): requests for a document, values back.

The fax workflow (``processors/workflows/fax``) reads fields with its embedded rules and
classifies pages with its embedded model; where the model abstains, or rules leave a
field empty, it asks the LLM through a ``cmd.llm`` command (``llm_command`` in
``commands.py``) built from :func:`extraction_request` / :func:`classification_request`.
When the result is in, :func:`model_values` turns it into values shaped like the fax
workflow's ``Extracted`` (field, value, page, start, end, source) - every one span-checked
already - and :class:`LLMResultExtractor` offers them through that workflow's
``Extractor`` protocol, so its ``merge(rules, llm)`` fills only what rules left empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from practiceflow.processors.llm.commands import command_id
from practiceflow.processors.llm.tasks import LLMRequest, PageText
from practiceflow.processors.llm.validate import LLMResult

WORKFLOW = "fax"


def _pages(pages: Sequence[str], page_numbers: Sequence[int]) -> list[PageText]:
    return [PageText(page=n, text=t) for t, n in zip(pages, page_numbers, strict=True)]


def extraction_request(
    doc_class: str, pages: Sequence[str], page_numbers: Sequence[int], fields: Sequence[str] = ()
) -> LLMRequest:
    return LLMRequest(
        task="fax_extract", pages=_pages(pages, page_numbers), fields=list(fields), hints={"class": doc_class}
    )


def classification_request(
    pages: Sequence[str], page_numbers: Sequence[int], hints: Mapping[str, str] | None = None
) -> LLMRequest:
    return LLMRequest(task="fax_classify", pages=_pages(pages, page_numbers), hints=dict(hints or {}))


@dataclass(frozen=True, slots=True)
class ModelValue:
    """Same attributes as the fax workflow's ``Extracted``: ``text[start:end]`` of ``page`` holds ``value``."""

    field: str
    value: str
    page: int
    start: int
    end: int
    source: str = "llm"


def model_values(result: LLMResult) -> list[ModelValue]:
    """The span-checked values of a result (``source`` llm, or fallback when the embedded one answered)."""
    source = "llm" if result.source == "model" else result.source
    return [ModelValue(f.name, f.text, f.page, f.span_start, f.span_end, source) for f in result.fields]


class LLMResultExtractor:
    """The fax workflow's ``Extractor`` over LLM results already received (a pure lookup).

    ``results`` maps command ids to results (the workflow folds ``cmd.results`` into its
    state); ``subject`` names the document (its hash, no PHI). Until the result is in,
    ``extract`` returns nothing and :meth:`command_id` says which command to emit."""

    name = "llm"

    def __init__(self, practice_id: str, subject: str, results: Mapping[str, LLMResult]) -> None:
        self.practice_id = practice_id
        self.subject = subject
        self.results = results

    def command_id(self, doc_class: str, pages: Sequence[str], page_numbers: Sequence[int]) -> str:
        request = extraction_request(doc_class, pages, page_numbers)
        return command_id(self.practice_id, WORKFLOW, self.subject, request)

    def extract(self, doc_class: str, pages: Sequence[str], page_numbers: Sequence[int]) -> list[ModelValue]:
        result = self.results.get(self.command_id(doc_class, pages, page_numbers))
        return model_values(result) if result is not None else []
