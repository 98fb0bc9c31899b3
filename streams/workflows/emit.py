"""Send what a workflow step returned: work items, drafts, commands and audit events.

One function for every workflow, so they all key, partition and audit their outputs the
same way: work items on ``handoff`` (key ``practice/item_id``), drafts on ``drafts``
(``practice/draft_id``), commands on ``cmd.<kind>`` (``practice/command_id``, the idempotency
key), audit reasons on ``audit.in``. Everything of one practice goes to the practice's
partition, so a staff tool sees one practice's items in the order they were written.

The sends go into the caller's :class:`~practiceflow.streams.normalize_agent.Outbox`; the
caller confirms the batch before committing its input offsets (``streams/offsets.py``).
Pilot mode is enforced here, for every workflow at once: the commands of a piloted
practice + workflow (settings ``pilot``) are withheld and audited as ``command_withheld``
(``processors/pilot/mode.py``), so no executor ever receives them. Every draft is audited
(``drafted``), whichever workflow wrote it.

Audit event ids derive from ``cause`` (the input's stable id) and the position of the
reason in the step's result, so a replayed batch writes the same ids and the audit chain
skips them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from practiceflow.processors.audit import audit_event
from practiceflow.processors.pilot.mode import withhold
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.streams import catalog
from practiceflow.streams.health import HANDOFFS

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.offsets import Outbox


async def emit_step(
    pipeline: Pipeline,
    outbox: Outbox,
    result: StepResult,
    *,
    practice_id: str,
    workflow: str,
    cause: str,
    at: int,
) -> int:
    """Queue every output of ``result`` in ``outbox``; returns how many sends were queued.

    ``cause`` names the input that led to the step (e.g. ``norm.refill_request/<request id>``);
    ``at`` is the time to stamp on audit events (the shell's clock, not the step's)."""
    partition = catalog.partition_for(practice_id, pipeline.partitions)
    topics = pipeline.topics
    sent = 0
    cfg = pipeline.cfg
    result, withheld = withhold(result, cfg.pilot, practice_id, cfg.pilot_allowed_commands)
    for cmd in withheld:
        outbox.after(pipeline._count, f"pilot.withheld.{cmd['workflow']}.{cmd['kind']}")
    for record in (*result.work_items, *result.drafts, *result.commands):
        if record["practice_id"] != practice_id:
            raise ValueError(f"{workflow} produced a record for another practice; refusing to send it")
    for item in result.work_items:
        await outbox.send(topics["handoff"], f"{practice_id}/{item['item_id']}", dict(item), partition)
        HANDOFFS.labels(item["workflow"], item["queue"]).inc()
        sent += 1
    for draft in result.drafts:
        await outbox.send(topics["drafts"], f"{practice_id}/{draft['draft_id']}", dict(draft), partition)
        sent += 1
    for cmd in result.commands:
        topic = topics[f"cmd.{cmd['kind']}"]
        await outbox.send(topic, f"{practice_id}/{cmd['command_id']}", dict(cmd), partition)
        sent += 1
    drafted = tuple(
        AuditReason(
            "drafted",
            "Draft",
            d["draft_id"],
            f"{d.get('kind') or 'draft'} drafted for sign-off",
            details={"item_id": d.get("item_id") or ""},
        )
        for d in result.drafts
    )
    for seq, reason in enumerate(result.audit + drafted):
        ev = audit_event(
            practice_id,
            actor=f"practiceflow.{workflow}",
            action=reason.action,
            entity_type=reason.entity_type,
            entity_id=reason.entity_id,
            reason=reason.reason,
            outcome=reason.outcome,
            details=dict(reason.details),
            at=at,
            source=cause,
            seq=seq,
        )
        await outbox.send(topics["audit.in"], practice_id, ev, partition)
        sent += 1
    return sent
