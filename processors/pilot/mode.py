"""Which practice + workflow pairs run in pilot (shadow) mode, and what a piloted step may not send.

In pilot mode a workflow runs as usual — it triages, routes, drafts and proposes work items —
but nothing leaves the system on its behalf: every command (``cmd.ehr_write``, an outbound
270, any future send) of a piloted practice + workflow is withheld and replaced by an audit
event saying so. The check is made in one place, :func:`withhold`, which ``emit_step`` (the one
function every workflow sends its outputs through) applies to every step result; command
executors therefore never see a piloted command. Kinds listed in ``allowed`` (default: ``llm``,
the model call the proposal itself needs, which writes nothing anywhere) pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.schemas.typed import WorkflowCommandDict


def is_piloted(pilot: Mapping[str, Collection[str]], practice_id: str, workflow: str) -> bool:
    """``pilot`` maps a practice (or ``*``) to its piloted workflows (or ``["*"]``)."""
    for key in (practice_id, "*"):
        workflows = pilot.get(key)
        if workflows is not None and ("*" in workflows or workflow in workflows):
            return True
    return False


def withhold(
    result: StepResult,
    pilot: Mapping[str, Collection[str]],
    practice_id: str,
    allowed: Collection[str] = ("llm",),
) -> tuple[StepResult, tuple[WorkflowCommandDict, ...]]:
    """(the result with the piloted commands removed, the commands withheld).

    A withheld command's own audit reasons (those whose details name its ``command_id``, e.g.
    ``ehr_write_requested``) are replaced by one ``command_withheld`` reason: the trail says
    what would have been sent, and that it was not."""
    if not pilot or not result.commands:
        return result, ()
    kept: list[WorkflowCommandDict] = []
    dropped: list[WorkflowCommandDict] = []
    for cmd in result.commands:
        piloted = is_piloted(pilot, practice_id, cmd["workflow"]) and cmd["kind"] not in allowed
        (dropped if piloted else kept).append(cmd)
    if not dropped:
        return result, ()
    dropped_ids = {c["command_id"] for c in dropped}
    audit = [a for a in result.audit if a.details.get("command_id") not in dropped_ids]
    audit += [
        AuditReason(
            "command_withheld",
            "WorkflowCommand",
            c["command_id"],
            f"pilot mode: {c['workflow']} runs beside staff; cmd.{c['kind']} not sent",
            outcome="withheld",
            details={"kind": c["kind"], "workflow": c["workflow"], "item_id": c.get("item_id") or ""},
        )
        for c in dropped
    ]
    return StepResult(result.work_items, result.drafts, tuple(kept), tuple(audit)), tuple(dropped)
