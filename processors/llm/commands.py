"""Building ``cmd.llm`` commands and reading their results (pure): the API workflows use.

A workflow step (pure) that wants a model's help returns ``llm_command(...)`` among its
commands; the executor (``streams/commands/llm.py``) answers on ``cmd.results``, and the
step that consumes results calls :func:`read_result`. The command id hashes the request
itself (task, prompt version, pages, fields, hints), so the same question about the
same document is one command however often the workflow's log is replayed, and a new
prompt version is a new question.
"""

from __future__ import annotations

import hashlib
from typing import Any

from practiceflow.processors.llm.tasks import TASKS, LLMRequest
from practiceflow.processors.llm.validate import LLMResult

PAYLOAD_TYPE = "llm.request"
RESULT_TYPE = "llm.result"


def command_id(workflow: str, subject: str, request: LLMRequest) -> str:
    """``llm:<workflow>:<task>:<subject>:<hash of the request>``: stable, and new when the question changes."""
    spec = TASKS.get(request.task)
    pinned = request.model_copy(update={"prompt_version": request.prompt_version or (spec and spec.prompt_version)})
    digest = hashlib.sha256(pinned.model_dump_json().encode()).hexdigest()[:20]
    return f"llm:{workflow}:{request.task}:{subject}:{digest}"


def llm_command(
    practice_id: str,
    workflow: str,
    subject: str,
    request: LLMRequest,
    *,
    issued_at: int,
    item_id: str | None = None,
    patient_id: str | None = None,
    deadline_at: int | None = None,
) -> dict[str, Any]:
    """A WorkflowCommand record (topic ``cmd.llm``) asking for ``request``.

    ``subject`` names what the question is about without PHI (a document hash, a fax
    id, a page number): it is part of the command id, which is a Kafka key."""
    return {
        "practice_id": practice_id,
        "command_id": command_id(workflow, subject, request),
        "kind": "llm",
        "workflow": workflow,
        "item_id": item_id,
        "patient_id": patient_id,
        "payload_type": PAYLOAD_TYPE,
        "payload": request.model_dump_json(),
        "params": {"task": request.task},
        "issued_at": issued_at,
        "deadline_at": deadline_at,
        "source": None,
    }


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
