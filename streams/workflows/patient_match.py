"""Patient matching in the worker: an input without a known patient -> a chart, or a front-desk item.

Workflow agents that receive an input naming a person rather than a chart (an intake
form from a new patient, a fax, a pharmacy request) call :func:`resolve_patient` after
``PatientContexts.caught_up`` for the event's partition. It matches through the
crosswalk and the demographic index (``processors/context/matching.py``); an ambiguous
answer becomes the ``patient_match.ambiguous`` work item (``processors/workflows/
patient_match``), sent with its audit event through the caller's outbox, so it is
confirmed under the caller's commit rule like every other output of the batch. The
item's id comes from the input (subject type + id): a replay after a crash rewrites the
same item, never a second one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from practiceflow.processors.audit import audit_event
from practiceflow.processors.context import matching
from practiceflow.processors.workflows.patient_match import MatchEvent, step
from practiceflow.streams import catalog

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.normalize_agent import Outbox


async def resolve_patient(
    pipeline: Pipeline,
    outbox: Outbox,
    *,
    practice_id: str,
    subject_type: str,
    subject_id: str,
    record_key: str,
    probe: matching.Demographics,
    source: dict[str, Any],
    now: int,
) -> matching.MatchResult:
    """Match ``probe``; for an ambiguous result queue the candidates item (+ audit) on ``outbox``.

    ``now`` is the event's time (not the wall clock), so a replay builds the same item."""
    contexts = pipeline.contexts
    result = contexts.match(practice_id, probe)
    rules = contexts.rules()
    out = step(None, MatchEvent(practice_id, subject_type, subject_id, record_key, source, result), rules, now)  # type: ignore[arg-type]
    partition = catalog.partition_for(practice_id, pipeline.partitions)
    for item in out.work_items:
        await outbox.send(pipeline.topics["handoff"], f"{practice_id}/{item['item_id']}", dict(item), partition)
        pipeline._count("handoff.patient_match", 1)
    for i, reason in enumerate(out.audit, start=1):
        ev = audit_event(
            practice_id,
            actor="practiceflow.worker",
            at=now,
            source=f"patient_match/{subject_type}/{subject_id}",
            seq=i,
            action=reason.action,
            entity_type=reason.entity_type,
            entity_id=reason.entity_id,
            reason=reason.reason,
            outcome=reason.outcome,
            details=dict(reason.details),
        )
        await outbox.send(pipeline.topics["audit.in"], practice_id, ev, partition)
    return result
