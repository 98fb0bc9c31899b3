"""Side effects as commands: idempotency keys, draft ids, and the command builder.

A workflow step asks for a side effect by returning a ``WorkflowCommand``; the executor for
its kind (``streams/commands/<kind>.py``) performs each ``command_id`` at most once and
answers with a ``CommandResult``. The id is derived from what the command is about, not
from when it was issued, so a replay of the workflow's log re-emits the same id and the
executor answers from its record instead of sending a second 270 or calling the model again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from practiceflow.schemas.typed import SourceRefDict, WorkflowCommandDict

COMMAND_KINDS = ("eligibility", "llm", "ehr_write")  # kept in step with streams/catalog.py COMMAND_KINDS


def command_id_for(kind: str, workflow: str, practice_id: str, *subject: str) -> str:
    """The idempotency key: one id per (kind, workflow, practice, subject). Hashed: no PHI."""
    digest = hashlib.sha256("\x1f".join((kind, workflow, practice_id, *subject)).encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


def draft_id_for(workflow: str, kind: str, *subject: str) -> str:
    digest = hashlib.sha256("\x1f".join((workflow, kind, *subject)).encode()).hexdigest()[:32]
    return f"draft:{digest}"


def new_command(
    *,
    practice_id: str,
    kind: str,
    workflow: str,
    subject: Sequence[str],
    payload_type: str,
    payload: str,
    now: int,
    item_id: str | None = None,
    patient_id: str | None = None,
    params: Mapping[str, str] | None = None,
    deadline_at: int | None = None,
    source: SourceRefDict | None = None,
) -> WorkflowCommandDict:
    if kind not in COMMAND_KINDS:
        raise ValueError(f"unknown command kind {kind!r}; add it to COMMAND_KINDS and the topic catalog first")
    return {
        "practice_id": practice_id,
        "command_id": command_id_for(kind, workflow, practice_id, *subject),
        "kind": kind,
        "workflow": workflow,
        "item_id": item_id,
        "patient_id": patient_id,
        "payload_type": payload_type,
        "payload": payload,
        "params": dict(params or {}),
        "issued_at": now,
        "deadline_at": deadline_at,
        "source": source,
    }
