"""Staff decisions -> work items: the agents that keep every item's latest revision and apply decisions.

Two agents share one table, ``work-items`` (``practice/item_id`` -> the latest revision and
the decision ids applied to it, as JSON):

* ``work-items`` reads ``pf.handoff`` (every workflow's items) and keeps the highest
  revision per item;
* ``staff-decisions`` reads ``pf.decisions``, applies each decision to the item's latest
  revision with the pure :func:`~practiceflow.processors.workflows.decisions.decide`, and
  writes the next revision to ``pf.handoff``, the audit reason to ``pf.audit.in``, and the
  workflow's follow-up commands. It writes the new revision into the table itself before
  committing, so a second decision in the same batch sees it.

Both topics are keyed and partitioned by practice, so an item and the decisions on it are
on the same partition number and the table partition is the same for both. Commit rule
as everywhere (streams/offsets.py): outputs confirmed, then table writes confirmed, then
offsets. A replayed decision finds its id among the applied ones and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from practiceflow.processors.workflows.decisions import decide
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.metrics import DECISIONS, decision_option
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.workflows.emit import emit_step
from practiceflow.streams.workitem_reader import read_work_items

if TYPE_CHECKING:
    import faust

    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.workflows.decisions")
MAX_APPLIED = 50  # decision ids remembered per item (an item sees a handful in its life)


class WorkItems:
    """The ``work-items`` table and the two agents that use it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        cfg = pipeline.cfg
        options = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.table = pipeline.app.Table("work-items", default=str, partitions=pipeline.partitions, options=options)

    # ------------------------------------------------------------------ table
    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key) or ""
        return json.loads(raw) if raw else None

    def put(self, writes: Outbox, ev: Any, key: str, entry: dict[str, Any]) -> None:
        """Queue ``key``'s new entry (store + changelog) in ``writes``; confirmed with the rest."""
        writes.table_write(self.table, ev, key, json.dumps(entry, separators=(",", ":"), sort_keys=True))

    # ------------------------------------------------------------------ agents
    async def _batches(self, stream: faust.StreamT, committer: Committer, handle: Any, name: str) -> None:

        async def batch(events: list[Any]) -> None:
            admitted = await committer.admit(events)
            if admitted:
                await handle(admitted)
                await committer.commit(admitted)

        await run_batches(self.p, stream, batch, name)

    async def track_items(self, events: list[Any]) -> None:
        writes = self.p.outbox()
        for ev in events:
            item = ev.value
            key = f"{item['practice_id']}/{item['item_id']}"
            with in_event(ev):
                have = self.get(key)
                if have is not None and have["item"].get("revision", 1) > item.get("revision", 1):
                    continue  # an older revision arriving late (a replay): the table keeps the newer
                applied = have["applied"] if have else []
                self.put(writes, ev, key, {"item": item, "applied": applied})
            self.p.sensor.touch(ev.message.tp)
        await writes.confirm()

    async def _look_up(self, practice: str, item_id: str) -> dict[str, Any] | None:
        """An item the work-items agent has not reached yet (a staff tool read it straight from
        ``pf.handoff``): read the practice's handoff partition for it rather than refuse a valid
        decision. Rare (the agent is normally caught up), so the cost of a read is acceptable."""
        items = await asyncio.to_thread(
            read_work_items, self.p.bootstrap, self.p.serde, self.p.prefix, practice, timeout=60.0
        )
        item = items.get(item_id)
        return {"item": dict(item), "applied": []} if item is not None else None

    async def apply_decisions(self, events: list[Any]) -> None:
        outbox = Outbox()
        writes_after: list[tuple[Any, str, dict[str, Any]]] = []
        pending: dict[str, dict[str, Any]] = {}  # this batch's newest entries, before they are written
        counts: list[tuple[str, str, str]] = []  # (applied | refused, workflow, option) per decision
        for ev in events:
            decision = ev.value
            practice = decision["practice_id"]
            key = f"{practice}/{decision['item_id']}"
            with in_event(ev):
                entry = pending.get(key) or self.get(key)
            if entry is None:
                entry = await self._look_up(practice, decision["item_id"])
            item = entry["item"] if entry else None
            applied = entry["applied"] if entry else []
            result = decide(item, decision, applied)
            await emit_step(
                self.p,
                outbox,
                result,
                practice_id=practice,
                workflow="decisions",
                cause=f"decisions/{decision['decision_id']}",
                at=now_ms(),
            )
            pilot = getattr(self.p, "pilot", None)  # streams/workflows/pilot.py: compare with the proposal
            compared = pilot.comparison(item, decision, bool(result.work_items)) if pilot is not None else None
            if compared is not None:
                topic = self.p.topics["pilot.comparisons"]
                await outbox.send(
                    topic,
                    f"{practice}/{compared['item_id']}",
                    compared,
                    catalog.partition_for(practice, self.p.partitions),
                )
            if result.work_items and entry is not None:  # (the lookup may have found it: write it too)
                new_entry = {
                    "item": dict(result.work_items[0]),
                    "applied": [*applied, decision["decision_id"]][-MAX_APPLIED:],
                }
                pending[key] = new_entry
                writes_after.append((ev, key, new_entry))
            outcome = "applied" if result.work_items else "refused"
            counts.append((outcome, (item or {}).get("workflow") or "unknown", decision_option(decision["option"])))
            self.p.sensor.touch(ev.message.tp)
        await outbox.confirm()
        # counted once the revised items are in Kafka: a reader that waits on the count then finds them
        for outcome, workflow, option in counts:
            self.p._count(f"decisions.{outcome}")
            DECISIONS.labels(workflow, option, outcome).inc()
        writes = self.p.outbox()
        for ev, key, entry in writes_after:
            self.put(writes, ev, key, entry)
        await writes.confirm()


def register(pipeline: Pipeline) -> None:
    """Declare the ``work-items`` table and its two agents on the pipeline's app."""
    app = pipeline.app
    items = WorkItems(pipeline)
    pipeline.work_items = items  # type: ignore[attr-defined]  # read by tests and the health pages
    handoff, decisions = pipeline.topics["handoff"], pipeline.topics["decisions"]
    for topic, name, handle in (
        (handoff, "work-items", items.track_items),
        (decisions, "staff-decisions", items.apply_decisions),
    ):
        committer = Committer(app, pipeline.committed_offsets, name, topic.topics)

        async def agent(stream: Any, _c: Committer = committer, _h: Any = handle, _n: str = name) -> None:
            await items._batches(stream, _c, _h, _n)

        app.agent(topic, name=name)(agent)
        pipeline.source_topics.add(topic.get_topic_name())
