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

from practiceflow.processors.context import matching
from practiceflow.processors.workflows.patient_match import WORKFLOW, MatchEvent, step
from practiceflow.streams.workflows.context import contexts_of
from practiceflow.streams.workflows.emit import emit_step

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
    contexts = contexts_of(pipeline)
    result = contexts.match(practice_id, probe)
    event = MatchEvent(practice_id, subject_type, subject_id, record_key, source, result)  # type: ignore[arg-type]
    out = step(None, event, contexts.rules(), now)
    if out.work_items:
        pipeline._count("handoff.patient_match", len(out.work_items))
    await emit_step(
        pipeline,
        outbox,
        out,
        practice_id=practice_id,
        workflow=WORKFLOW,
        cause=f"patient_match/{subject_type}/{subject_id}",
        at=now,
    )
    return result
