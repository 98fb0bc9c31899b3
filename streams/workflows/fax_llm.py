"""The fax workflow's language-model answers: ``cmd.results`` (fax, llm) -> revised work items.

The fax step (``streams/workflows/fax.py``, in the normalize batch of the fax) routes each
document at once and, where the embedded classifier abstained or the rules left fields
empty, emits a ``cmd.llm`` command (``processors/workflows/fax/assist.py``). The executor
(``streams/commands/llm.py``, started here when ``llm.base_url`` is set) answers on
``cmd.results``; this handler (of the one agent on it, ``streams/workflows/results.py``) applies each answer with the pure
:func:`~practiceflow.processors.workflows.fax.assist.on_llm_result` and writes the next
revision of the document's ``FaxClassification`` and of its work item.

State: the ``fax-llm`` table (``practice/classification_id`` -> the classification as last
revised, its revision, and the command ids applied), so two answers for one document build
on each other and a replayed result writes nothing. The revision number also respects the
``work-items`` table (``streams/workflows/decisions.py``): an item a person has already
acted on (not ``open``) is not re-routed under them; the answer is audited only.

Commit rule as everywhere (``streams/offsets.py``): outputs confirmed, then the table's
changelog writes, then (by the results agent) the offsets. ``cmd.results`` is keyed and partitioned by practice,
like ``handoff``, so the table partition is the event's.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from practiceflow.processors.workflows.fax.assist import PARAM_CLASSIFICATION, on_llm_result
from practiceflow.processors.workflows.fax.match import IdentifierOnPage, Matcher
from practiceflow.processors.workflows.step import StepResult
from practiceflow.streams import catalog
from practiceflow.streams.offsets import Outbox, in_event
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.workflows.fax_llm")
WORKFLOW = "fax"
MAX_APPLIED = 20


class FaxLLMAnswers:
    """The ``fax-llm`` table and the ``cmd.results`` handler that uses it."""

    def __init__(self, pipeline: Pipeline, matcher: Matcher | None = None) -> None:
        self.p = pipeline
        cfg = pipeline.cfg
        options = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.table = pipeline.app.Table("fax-llm", default=str, partitions=pipeline.partitions, options=options)
        self._matcher = matcher

    @property
    def matcher(self) -> Matcher:
        """The fax step's own matcher (the same answer for the same identifiers), else the MRN on the page."""
        if self._matcher is not None:
            return self._matcher
        workflow = getattr(getattr(self.p, "fax_handler", None), "classify", None)
        return getattr(workflow, "matcher", None) or IdentifierOnPage()

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key) or ""
        return json.loads(raw) if raw else None

    def _latest_item(self, practice: str, item_id: str | None) -> dict[str, Any] | None:
        items = getattr(self.p, "work_items", None)
        if items is None or not item_id:
            return None
        entry = items.get(f"{practice}/{item_id}")
        return entry["item"] if entry else None

    async def handle(self, events: list[Any]) -> None:
        outbox = Outbox()
        counts: list[tuple[str, int]] = []  # counted at the end, once items and table are written

        def tally(name: str, n: int = 1) -> None:
            counts.append((name, n))

        pending: dict[str, dict[str, Any]] = {}
        writes_after: list[tuple[Any, str, dict[str, Any]]] = []
        for ev in events:
            res = ev.value
            if res.get("workflow") != WORKFLOW or res.get("kind") != "llm":
                continue  # another workflow's answer
            params = res.get("params") or {}
            practice, cid = res["practice_id"], params.get("classification_id")
            if not cid or not params.get(PARAM_CLASSIFICATION):
                log.warning("fax llm result %s carries no classification; nothing to revise", res["command_id"])
                tally("fax.llm.unlinked")
                continue
            key = f"{practice}/{cid}"
            with in_event(ev):
                entry = pending.get(key) or self.get(key)
            if entry is not None and res["command_id"] in entry["applied"]:
                continue  # a replayed result: already applied
            base = entry["value"] if entry else json.loads(params[PARAM_CLASSIFICATION])
            revision = (entry["revision"] if entry else 1) + 1
            with in_event(ev):  # the item as it stands now (a person may have acted on it)
                latest = self._latest_item(practice, (entry or {}).get("item_id") or params.get("item_id"))
            if latest is not None:
                revision = max(revision, int(latest.get("revision", 1)) + 1)
            at = int(res["completed_at"])
            rev = on_llm_result(
                base, res, self.matcher, revision=revision, now=at, min_confidence=self.p.cfg.llm.fax_min_confidence
            )
            acted = latest is not None and latest.get("state", "open") != "open"
            item = rev.item if rev.changed and not acted else None
            refill = rev.refill if rev.changed and not acted else None  # handed to refill triage
            revised = item is not None or refill is not None
            step = StepResult(work_items=rev.items if revised else (), audit=(rev.audit,))
            await emit_step(
                self.p,
                outbox,
                step,
                practice_id=practice,
                workflow=WORKFLOW,
                cause=f"cmd.results/{res['command_id']}",
                at=at,
            )
            if refill is not None:  # the refill agent reads it like the fax step's own (route.py)
                spec = catalog.normalized_topic("RefillRequest")
                part = catalog.partition_for(practice, self.p.partitions)
                await outbox.send(self.p.topics[spec.suffix], refill.key, refill.value, part)
                tally("record.RefillRequest")
            if revised:
                v = rev.classification
                spec = catalog.normalized_topic("FaxClassification")
                # the first record's key (review s18 N8): one document, one key on the compacted topic
                await outbox.send(
                    self.p.topics[spec.suffix], rev.key, v, catalog.partition_for(practice, self.p.partitions)
                )
                tally("record.FaxClassification")
                tally("handoff", len(step.work_items))
                tally(f"fax.llm.queue.{v['queue']}")
            result = json.loads(res.get("payload") or "{}") if res.get("payload") else {}
            tally("fax.llm.results")
            tally(f"fax.llm.source.{result.get('source', 'none')}")
            tally("fax.llm.dropped_fields", len(result.get("dropped") or []))
            tally(f"fax.llm.routed.{rev.audit.details.get('queue')}")
            new_entry = {
                "value": rev.classification if revised else base,
                "revision": revision if revised else revision - 1,
                "item_id": item["item_id"]
                if item is not None
                else (entry or {}).get("item_id") or params.get("item_id"),
                "applied": [*(entry["applied"] if entry else []), res["command_id"]][-MAX_APPLIED:],
            }
            pending[key] = new_entry
            writes_after.append((ev, key, new_entry))
            self.p.sensor.touch(ev.message.tp)
        await outbox.confirm()
        writes = self.p.outbox()
        for ev, key, entry in writes_after:
            writes.table_write(self.table, ev, key, json.dumps(entry, separators=(",", ":"), sort_keys=True))
        await writes.confirm()
        for name, n in counts:
            self.p._count(name, n)


def register(pipeline: Pipeline) -> None:
    """The answers agent, and the cmd.llm executor when a model server is configured (MODULES)."""
    if pipeline.cfg.llm.base_url is None:
        return  # the fax step asks no model (processors/workflows/fax/assist.py): nothing to answer
    from practiceflow.streams.commands.llm import register_llm_executor
    from practiceflow.streams.workflows.results import add_handler

    answers = FaxLLMAnswers(pipeline)
    add_handler(pipeline, "fax_llm", answers.handle)  # the one agent on cmd.results (results.py)
    pipeline.fax_llm = answers  # type: ignore[attr-defined]  # for tests and the day job
    pipeline.llm_executor = register_llm_executor(pipeline)  # type: ignore[attr-defined]
