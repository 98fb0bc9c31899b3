"""Patient matching in the worker: an input without a known patient -> a chart, or a front-desk item.

Workflow agents that receive an input naming a person rather than a chart (an intake
form from a new patient, a fax, a pharmacy request) call :func:`resolve_patient`, after
``PatientContexts.caught_up`` on the practice's partition (or with ``wait_for_context=True``)
so every chart registered before the input is in the index. It matches through the
crosswalk and the demographic index (``processors/context/matching.py``); an ambiguous
answer becomes the ``patient_match.ambiguous`` work item (``processors/workflows/
patient_match``), sent with its audit event through the caller's outbox, so it is
confirmed under the caller's commit rule like every other output of the batch. The
item's id comes from the input (subject type + id): a replay after a crash rewrites the
same item, never a second one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from practiceflow.processors.context import matching
from practiceflow.processors.workflows.patient_match import WORKFLOW, MatchEvent, step
from practiceflow.streams import catalog
from practiceflow.streams.workflows.context import contexts_of
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.offsets import Outbox

log = logging.getLogger("practiceflow.worker.patient_match")
CONTEXT_WAIT_SECONDS = 30.0


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
    wait_for_context: bool = False,
) -> matching.MatchResult:
    """Match ``probe``; for an ambiguous result queue the candidates item (+ audit) on ``outbox``.

    ``now`` is the event's time (not the wall clock), so a replay builds the same item.
    ``wait_for_context``: pass the barrier first (a caller that has not called
    ``caught_up`` for this partition in its batch should: it costs a few broker round trips,
    more while the normalize agents have a backlog)."""
    contexts = contexts_of(pipeline)
    if wait_for_context:
        # the charts registered before this input must be in the index (streams/workflows/context.py)
        partition = catalog.partition_for(practice_id, pipeline.partitions)
        if not await contexts.caught_up(partition, timeout=CONTEXT_WAIT_SECONDS):
            log.warning("patient match: context not caught up on partition %s; matching on what is folded", partition)
    result = contexts.match(practice_id, probe)
    event = MatchEvent(practice_id, subject_type, subject_id, record_key, source, result)  # type: ignore[arg-type]
    out = step(None, event, contexts.rules(practice_id), now)
    if out.work_items:
        outbox.after(pipeline._count, "handoff.patient_match", len(out.work_items))
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
