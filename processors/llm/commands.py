"""Building ``cmd.llm`` commands and reading their results (pure): the API workflows use.

A workflow step (pure) that wants a model's help returns ``llm_command(...)`` among its
``StepResult.commands``; the executor (``streams/commands/llm.py``) answers on
``cmd.results``, and the step that consumes results calls :func:`read_result`. The
command id is the contract's idempotency key (``processors/workflows/commands.py``) over
the subject *and a hash of the request itself* (task, prompt version, pages, fields,
hints): the same question about the same document is one command however often the
workflow's log is replayed, and a new prompt version is a new question.
"""

from __future__ import annotations

import hashlib
from typing import Any

from practiceflow.processors.llm.tasks import TASKS, LLMRequest
from practiceflow.processors.llm.validate import LLMResult
from practiceflow.processors.workflows.commands import command_id_for, new_command
from practiceflow.schemas.typed import SourceRefDict, WorkflowCommandDict

KIND = "llm"
PAYLOAD_TYPE = "llm.request"
RESULT_TYPE = "llm.result"


def request_digest(request: LLMRequest) -> str:
    """A hash of the question, with the prompt version pinned (None = the task's current one)."""
    spec = TASKS.get(request.task)
    pinned = request.model_copy(update={"prompt_version": request.prompt_version or (spec and spec.prompt_version)})
    return hashlib.sha256(pinned.model_dump_json().encode()).hexdigest()[:32]


def command_id(practice_id: str, workflow: str, subject: str, request: LLMRequest) -> str:
    return command_id_for(KIND, workflow, practice_id, subject, request.task, request_digest(request))


def llm_command(
    practice_id: str,
    workflow: str,
    subject: str,
    request: LLMRequest,
    *,
    now: int,
    item_id: str | None = None,
    patient_id: str | None = None,
    deadline_at: int | None = None,
    source: SourceRefDict | None = None,
) -> WorkflowCommandDict:
    """A WorkflowCommand (topic ``cmd.llm``) asking for ``request``.

    ``subject`` names what the question is about without PHI (a document hash, a page):
    it goes into the hashed command id, never into a key in clear."""
    return new_command(
        practice_id=practice_id,
        kind=KIND,
        workflow=workflow,
        subject=(subject, request.task, request_digest(request)),
        payload_type=PAYLOAD_TYPE,
        payload=request.model_dump_json(),
        now=now,
        item_id=item_id,
        patient_id=patient_id,
        params={"task": request.task},
        deadline_at=deadline_at,
        source=source,
    )


def read_result(result_record: dict[str, Any]) -> LLMResult:
    """The LLMResult inside a CommandResult of kind ``llm``; an empty or foreign payload
    reads as 'nobody answered' (a person must look), never as an empty success."""
    if result_record.get("payload_type") == RESULT_TYPE and result_record.get("payload"):
        try:
            return LLMResult.model_validate_json(result_record["payload"])
        except ValueError:
            pass
    reason = result_record.get("reason") or result_record.get("outcome") or "no_result"
    return LLMResult(task="unknown", source="none", needs_person=True, reasons=[str(reason)])
