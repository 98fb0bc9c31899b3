"""``cmd.results`` of kind ``ehr_write`` -> an item (clinician: renewal; front desk: registration)
when a signed write did not happen (failed, refused, or ``no_ehr``: the practice has no EHR target).

A handler of the one agent on ``cmd.results`` (``streams/workflows/results.py``). The pure
step is :func:`~practiceflow.processors.ehr.unwritten.unwritten_write_item` (WHY there). Its item
id derives from the command id; the ``work-items`` table (``streams/workflows/decisions.py``)
tells whether that item already exists, so a write that fails again at every sync opens one
item and never reopens one a person already closed. Commit rule as everywhere: the outputs are
confirmed before the results agent commits the batch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from practiceflow.processors.ehr.unwritten import KIND, unwritten_write_item
from practiceflow.streams.offsets import Outbox, in_event
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.workflows.ehr_results")


class EhrWriteResults:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def _known(self, practice: str, item_id: str) -> bool:
        items = getattr(self.p, "work_items", None)
        return items is not None and items.get(f"{practice}/{item_id}") is not None

    async def handle(self, events: list[Any]) -> None:
        outbox = Outbox()
        opened: set[str] = set()
        for ev in events:
            res = ev.value
            if res.get("kind") != KIND:
                continue  # another command kind's answer
            step = unwritten_write_item(res)
            if not step.work_items:
                continue  # written: nothing to do
            practice, item_id = res["practice_id"], step.work_items[0]["item_id"]
            with in_event(ev):
                known = self._known(practice, item_id)
            if known or f"{practice}/{item_id}" in opened:
                continue  # answered again by a later sync: the item exists already
            opened.add(f"{practice}/{item_id}")
            await emit_step(
                self.p,
                outbox,
                step,
                practice_id=practice,
                workflow=step.work_items[0]["workflow"],
                cause=f"cmd.results/{res['command_id']}",
                at=int(res["completed_at"]),
            )
            self.p.sensor.touch(ev.message.tp)
            outbox.after(self.p._count, "ehr_write.not_done")
            outbox.after(self.p._count, "handoff", 1)
        await outbox.confirm()


def register(pipeline: Pipeline) -> None:
    """Adds the handler (the ``results`` module, last in MODULES, starts the one agent) and the
    agent that answers the signed writes of practices without an EHR (``streams/commands/ehr_none.py``)."""
    from practiceflow.streams.commands.ehr_none import register as register_no_target
    from practiceflow.streams.workflows.results import add_handler

    register_no_target(pipeline)

    add_handler(pipeline, "ehr_write", EhrWriteResults(pipeline).handle)
