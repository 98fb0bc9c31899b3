"""Pilot (shadow) mode in the worker: compare each staff decision with the agent's proposal, keep counts.

* The decisions agent (``streams/workflows/decisions.py``) asks :meth:`PilotBook.comparison`
  for every decision it applies to an item of a piloted practice + workflow (settings
  ``pilot``); the pure :func:`~practiceflow.processors.pilot.compare.compare` judges the item *as
  proposed* (the revision before the decision) against the decision, and the record goes to
  ``pf.pilot.comparisons`` (key ``practice/item_id``, compacted) in the same outbox as the
  decision's other outputs. Only the first decision that changes an item is compared (an item
  already compared is skipped), so a later close after an ``assign`` does not count twice.
* The ``pilot-agreement`` agent reads that topic and keeps running counts per practice,
  workflow, kind and rule version in the table of the same name (agree, disagree, no verdict,
  minutes saved); ids of compared items are kept there too, so a comparison re-delivered after
  a crash is not counted twice. The ClickHouse sink writes the same records to
  ``pilot_agreement`` (``practiceflow pilot report`` sums them).
* Withholding a piloted workflow's commands is not here but in ``emit_step`` (one place for
  every workflow; ``processors/pilot/mode.py``).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import faust

from practiceflow.processors.pilot.compare import add, compare, group_key
from practiceflow.processors.pilot.mode import is_piloted
from practiceflow.processors.pilot.rules import load_task_rules
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer, in_event
from practiceflow.streams.serde import AvroCodec

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.workflows.pilot")
SEEN = "seen:"
COUNT = "count:"


class PilotBook:
    """The comparison hook for the decisions agent, and the agent that counts the comparisons."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        cfg = pipeline.cfg
        self.rules = load_task_rules(cfg.rules_dir)
        options = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.table = pipeline.app.Table("pilot-agreement", default=str, partitions=pipeline.partitions, options=options)
        name = catalog.BY_SUFFIX["pilot.comparisons"].name(pipeline.prefix)
        self.topic = pipeline.app.topic(
            name,
            value_serializer=AvroCodec(pipeline.serde, f"{name}-value", "PilotComparison"),
            key_serializer="raw",
            acks=False,  # committed by this agent after its table writes are confirmed
        )
        self.committer = Committer(pipeline.app, pipeline.committed_offsets, "pilot-agreement", self.topic.topics)

    # -------------------------------------------------------------- the decisions agent's hook
    def comparison(
        self, item: HandoffItemDict | None, decision: StaffDecisionDict, applied: bool
    ) -> dict[str, Any] | None:
        """The PilotComparison for a decision just applied to a piloted item's proposal, else None."""
        if item is None or not applied or not is_piloted(self.p.cfg.pilot, item["practice_id"], item["workflow"]):
            return None
        if item.get("decision_id"):
            return None  # a person already acted on this item: it was compared then
        return compare(item, decision, self.rules)

    # -------------------------------------------------------------- the counting agent
    async def run(self, stream: faust.StreamT) -> None:
        async def batch(events: list[Any]) -> None:
            admitted = await self.committer.admit(events)
            if admitted:
                await self.count(admitted)
                await self.committer.commit(admitted)

        await run_batches(self.p, stream, batch, "pilot")

    def counts(self, practice_id: str) -> dict[tuple[str, str, str, str], dict[str, float]]:
        """This worker's running counts of one practice (the partitions it holds)."""
        out = {}
        for key, raw in self.table.items():
            if key.startswith(f"{COUNT}{practice_id}|") and raw:
                out[tuple(key.split("|")[1:5])] = json.loads(raw)
        return out

    async def count(self, events: list[Any]) -> None:
        writes = self.p.outbox()
        pending: dict[str, str] = {}
        counts: list[str] = []  # counted once the table's changelog has the batch (like every agent)
        for ev in events:
            c = ev.value
            seen_key = f"{SEEN}{c['practice_id']}/{c['item_id']}"
            count_key = COUNT + "|".join((c["practice_id"], *group_key(c)))
            with in_event(ev):
                if seen_key in pending or self.table.get(seen_key):
                    counts.append("pilot.already_counted")
                    continue
                before = pending.get(count_key) or self.table.get(count_key) or "{}"
                value = json.dumps(add(json.loads(before), c), sort_keys=True)
                pending[count_key], pending[seen_key] = value, c["verdict"]
                for key, val in ((count_key, value), (seen_key, c["verdict"])):
                    writes.table_write(self.table, ev, key, val)
            counts += [f"pilot.{c['workflow']}.{c['verdict']}", "pilot.compared"]
            self.p.sensor.touch(ev.message.tp)
        await writes.confirm()
        for name in counts:
            self.p._count(name)


def register(pipeline: Pipeline) -> None:
    """Declare the ``pilot-agreement`` table and agent; the decisions agent finds ``pipeline.pilot``."""
    book = PilotBook(pipeline)
    pipeline.pilot = book  # type: ignore[attr-defined]

    async def pilot_agreement(stream: faust.StreamT) -> None:
        await book.run(stream)

    pipeline.app.agent(book.topic, name="pilot-agreement")(pilot_agreement)
    pipeline.source_topics.add(book.topic.get_topic_name())
