"""LLM tasks: what is asked, what must come back (pydantic), and the command payloads.

A task is data: a name, the pydantic model its output must validate against (its JSON
schema is also what constrains the model's decoding), the field names it may return,
and its current prompt version. Fax extraction and classification are here; prior-auth
drafting and denial follow-up add a :class:`TaskSpec` each and reuse everything else
(the client, the guard, the span check, the executor).

Every value a model returns is a *verbatim quote* (``text``) plus the page it is on;
the span check (``processors/llm/validate.py``) finds the quote in that page's text or
drops the value. A normalized form (``value``, e.g. an ISO date) may ride along, but it
is only ever trusted together with a quote that was found.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FAX_CLASSES: tuple[str, ...] = (
    "lab_result",
    "referral",
    "prior_auth_response",
    "records_request",
    "refill_request",
    "marketing",
    "cover_sheet",
    "blank_form",
    "other_clinical",
)

# What staff need from a fax (issue 10): identity and sender on every class, then per class. The names are
# the fax workflow's own (processors/workflows/fax/extract.py), so its merge() takes model values as they are.
EXTRACT_FIELDS: tuple[str, ...] = (
    "patient_name",
    "dob",
    "mrn",
    "member_id",
    "sender",
    "sender_fax",
    "addressee",
    "test",
    "abnormal",
    "payer",
    "decision",
    "reference",
    "records_requested",
    "date_range",
    "drug",
    "strength",
    "pharmacy",
    "referral_reason",
    "direction",
    "pages_announced",
)


class PageText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int = Field(ge=1, description="1-based page of the document")
    text: str


class LLMRequest(BaseModel):
    """The payload of a ``cmd.llm`` WorkflowCommand (``payload_type`` ``llm.request``)."""

    model_config = ConfigDict(extra="forbid")
    task: str
    prompt_version: str | None = Field(default=None, description="None = the task's current version")
    pages: list[PageText] = Field(min_length=1)
    fields: list[str] = Field(default_factory=list, description="fields wanted ([] = all the task knows)")
    document_uri: str | None = None
    hints: dict[str, str] = Field(default_factory=dict, description="e.g. the class the embedded model guessed")


# ----------------------------------------------------------------- model outputs
class QuotedField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="one of the requested field names")
    text: str = Field(min_length=1, max_length=300, description="the value exactly as written in the document")
    page: int = Field(ge=1, description="the page the text is on")
    value: str | None = Field(default=None, max_length=120, description="normalized form, e.g. a date as YYYY-MM-DD")


class ExtractionOutput(BaseModel):
    """What ``fax_extract`` must return."""

    model_config = ConfigDict(extra="forbid")
    fields: list[QuotedField] = Field(max_length=60)


class Quote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=300)
    page: int = Field(ge=1)


class ClassificationOutput(BaseModel):
    """What ``fax_classify`` must return: a class, how sure, and the words that show it."""

    model_config = ConfigDict(extra="forbid")
    label: Literal[
        "lab_result",
        "referral",
        "prior_auth_response",
        "records_request",
        "refill_request",
        "marketing",
        "cover_sheet",
        "blank_form",
        "other_clinical",
    ]
    kind: str | None = Field(default=None, max_length=60, description="finer kind, e.g. prior_auth_response.denied")
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Quote] = Field(min_length=1, max_length=5)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    output: type[BaseModel]
    prompt_version: str
    field_names: tuple[str, ...] = ()

    def json_schema(self, fields: list[str] | None = None) -> dict[str, Any]:
        """The output model's JSON schema, with field names narrowed to an enum (so
        constrained decoding cannot invent a field) when the task has named fields."""
        schema = copy.deepcopy(_output_schema(self.output))
        names = [f for f in (fields or self.field_names) if f in self.field_names] or list(self.field_names)
        if names and "QuotedField" in schema.get("$defs", {}):
            schema["$defs"]["QuotedField"]["properties"]["name"]["enum"] = names
        return schema


@functools.cache
def _output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """pydantic builds a JSON schema in milliseconds; a task's never changes in a process."""
    return model.model_json_schema()


TASKS: dict[str, TaskSpec] = {
    "fax_extract": TaskSpec("fax_extract", ExtractionOutput, "v1", EXTRACT_FIELDS),
    "fax_classify": TaskSpec("fax_classify", ClassificationOutput, "v1"),
}
