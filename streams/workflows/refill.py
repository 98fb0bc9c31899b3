"""The refill triage agent: ``norm.refill_request`` -> work item (+ renewal draft) + audit.

For each normalized RefillRequest (portal today; the fax workflow hands pharmacy requests
over on the same topic later) the agent waits until the patient context has folded every
record accepted before the request (``PatientContexts.behind``: one evaluation per batch,
for all its partitions), reads the patient's snapshot (``context_for``), and runs the pure step
(``processors/workflows/refill/step.py``) with the request's own ``submitted_at`` as
"now", so a replay of the topic gives the same decision for the same context.

Outputs (through ``streams/workflows/emit.emit_step``, like every workflow): the work item
on ``handoff`` (key ``practice/item_id``, compacted), a routine request's Draft on ``drafts``
(key ``practice/draft_id``), and an audit event (``refill_triaged``, ids and codes only). Commit rule as in every agent here (``streams/offsets.py``): the
batch's outputs are confirmed by the broker before its offsets are committed; a crash in
between triages the batch again under the same item, draft and audit ids, so a restart
writes no second work item. A step that raises (a bug, a rule the table cannot read)
does not stop the worker or lose the request: it becomes a needs_review item that says
so (``refill.internal_error``), because a refill request must reach a person.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import faust

from practiceflow.processors.context.snapshot import empty
from practiceflow.processors.rules import PracticeRules
from practiceflow.processors.workflows.refill.rules import RefillRules, load_refill_rules
from practiceflow.processors.workflows.refill.step import WORKFLOW, failed_step, refill_step
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.serde import AvroCodec
from practiceflow.streams.workflows.context import raw_upto
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.workflows.context import PatientContexts

log = logging.getLogger("practiceflow.worker.refill")
CONTEXT_WAIT_SECONDS = 30.0  # longer than any normal fold lag; after it, triage with what is there


class RefillTriage:
    """Owns the refill agent of one Pipeline."""

    def __init__(self, pipeline: Pipeline, contexts: PatientContexts, rules: RefillRules | None = None) -> None:
        self.p = pipeline
        self.contexts = contexts
        # per practice: one practice's rule edit never changes another's triage (processors/rules.py)
        self.rules = PracticeRules(load_refill_rules, pipeline.cfg.rules_dir, fixed=rules)
        app = pipeline.app
        name = catalog.BY_SUFFIX[catalog.NORMALIZED["RefillRequest"]].name(pipeline.prefix)
        # acks=False: committed by this agent after its outputs are confirmed, never by Faust
        self.topic = app.topic(
            name,
            value_serializer=AvroCodec(pipeline.serde, f"{name}-value", None),
            key_serializer="raw",
            acks=False,
        )
        self.committer = Committer(app, pipeline.committed_offsets, "refill-triage", self.topic.topics)

        async def refill_triage(stream: faust.StreamT) -> None:
            await self.run(stream)

        app.agent(self.topic, name="refill-triage")(refill_triage)
        pipeline.source_topics.add(name)

    async def run(self, stream: faust.StreamT) -> None:
        # a person-facing request: the shorter batch window (settings.request_batch_seconds)
        await run_batches(self.p, stream, self.process_batch, "refill", batch_seconds=self.p.cfg.request_batch_seconds)

    async def process_batch(self, events: list[Any]) -> None:
        admitted = await self.committer.admit(events)
        if not admitted:
            return
        outbox = self.p.outbox()  # librdkafka: a fraction of Faust's producer CPU per record (streams/offsets.py)
        counts: dict[str, int] = {}
        tps = {ev.message.partition: ev.message.tp for ev in admitted}

        def touch() -> None:  # waiting on the context is progress, not a stall (streams/health.py)
            for tp in tps.values():
                self.p.sensor.touch(tp)

        # one barrier evaluation for the whole batch, every partition in it (not one per request)
        stale = await self.contexts.behind(tps, touch=touch, timeout=CONTEXT_WAIT_SECONDS, upto=raw_upto(admitted))
        for partition in sorted(stale):
            # fail closed: these requests are triaged, but never routine (context_not_current)
            log.warning(
                "refill: patient context not caught up on partition %s after %ss", partition, CONTEXT_WAIT_SECONDS
            )
        for ev in admitted:
            with in_event(ev):
                kind = await self.handle(ev, outbox, ev.message.partition not in stale)
            counts[kind] = counts.get(kind, 0) + 1
            self.p.sensor.touch(ev.message.tp)
        await outbox.confirm()
        for kind, n in counts.items():
            self.p._count(kind, n)
        await self.committer.commit(admitted)

    async def handle(self, ev: Any, outbox: Outbox, context_current: bool = True) -> str:
        request: dict[str, Any] = ev.value
        practice, patient = request["practice_id"], request["patient_id"]
        now = int(request.get("submitted_at") or 0)
        try:
            ctx = self.contexts.context_for(practice, patient) or empty(practice, patient)
            result = refill_step(ctx, request, self.rules.get(practice), now, context_current)
        except Exception as exc:  # a request must reach a person even when the step fails
            # the type only: an exception's text can quote the request (PHI stays out of plain logs)
            log.error("refill step failed for request %s (%s)", request.get("request_id"), type(exc).__name__)
            result = failed_step(request, now, type(exc).__name__)
        await emit_step(
            self.p,
            outbox,
            result,
            practice_id=practice,
            workflow=WORKFLOW,
            cause=f"norm.refill_request/{request.get('request_id')}",
            at=now_ms(),
        )
        kind = str(result.work_items[0].get("kind")) if result.work_items else "refill.none"
        return kind


def register(pipeline: Pipeline) -> None:
    """Wire the refill agent into ``pipeline`` (streams/workflows/__init__.py MODULES). Needs the
    patient context tables (``pipeline.contexts``), so it comes after the ``context`` module."""
    contexts = getattr(pipeline, "contexts", None)
    if contexts is None:
        raise RuntimeError("the refill workflow needs the patient context module registered before it")
    pipeline.refills = RefillTriage(pipeline, contexts)  # type: ignore[attr-defined]
