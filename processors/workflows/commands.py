"""Side effects as commands: idempotency keys, draft ids, and the command builder.

A workflow step asks for a side effect by returning a ``WorkflowCommand``; the executor for
its kind (``streams/commands/<kind>.py``) performs each ``command_id`` at most once and
answers with a ``CommandResult``. The id is derived from what the command is about, not
from when it was issued, so a replay of the workflow's log re-emits the same id and the
executor answers from its record instead of sending a second 270 or calling the model again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from practiceflow.schemas.typed import HandoffItemDict, SourceRefDict, StaffDecisionDict, WorkflowCommandDict

COMMAND_KINDS = ("eligibility", "llm", "ehr_write", "prior_auth")  # kept in step with streams/catalog.py COMMAND_KINDS


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


def signed_ehr_write(
    item: HandoffItemDict,
    decision: StaffDecisionDict,
    draft_id: str,
    *,
    workflow: str,
    payload_type: str,
    draft_kind: str | None = None,
) -> WorkflowCommandDict:
    """The ``ehr_write`` command that carries a person's signature of one draft to the EHR
    (``streams/commands/ehr_write.py``): who signed, when, with which option and edits; its id
    is derived from the decision and the draft, so a replay re-emits the same command."""
    payload: dict[str, object] = {
        "draft_id": draft_id,
        "item_id": item["item_id"],
        "decision_id": decision["decision_id"],
        "option": decision["option"],
        "signed_by": decision["actor"],
        "signed_at": decision["decided_at"],
        "edits": dict(decision.get("edits") or {}),
    }
    if draft_kind is not None:
        payload["draft_kind"] = draft_kind
    return new_command(
        practice_id=item["practice_id"],
        kind="ehr_write",
        workflow=workflow,
        subject=(decision["decision_id"], draft_id),
        payload_type=payload_type,
        payload=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        now=decision["decided_at"],
        item_id=item["item_id"],
        patient_id=item.get("patient_id"),
        params={"draft_id": draft_id},
        source=item.get("source"),
    )
