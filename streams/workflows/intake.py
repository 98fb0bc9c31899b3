"""The intake workflow in the worker: intake forms -> eligibility commands; their results -> work items.

Two agents, each committed by itself under the data path's rule (outputs confirmed, then
offsets committed; ``streams/offsets.py``):

* ``intake-forms`` on ``norm.intake_form``: match the patient (patient-context's matcher
  when the worker has it: an ambiguous match becomes its candidates item), then
  :func:`~practiceflow.processors.workflows.intake.on_intake` -> the ``eligibility`` command;
* a handler of ``cmd.results`` (``streams/workflows/results.py``; intake commands only) ->
  :func:`~practiceflow.processors.workflows.intake.on_result` -> work items, drafts, audit.

``now`` given to the steps is the input record's Kafka timestamp (forms) or the result's
``completed_at``, never the wall clock, so a replayed batch rebuilds identical outputs
under identical keys; the executor's idempotency table keeps a replayed command from
being sent twice.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import TYPE_CHECKING, Any

from practiceflow.processors.rules import PracticeRules
from practiceflow.processors.workflows.intake import IntakeContext, load_intake_rules, on_intake, on_result
from practiceflow.processors.workflows.intake.rules import IntakeRules
from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.intake")
WORKFLOW = "intake"


class IntakeWorkflow:
    def __init__(self, pipeline: Pipeline, rules: IntakeRules | None = None) -> None:
        self.p = pipeline
        cfg = pipeline.cfg
        # per practice: one practice's rule edit never changes another's intake (processors/rules.py)
        self.rules = PracticeRules(load_intake_rules, cfg.rules_dir, fixed=rules)
        self.base = IntakeContext(
            provider_npi=cfg.eligibility_provider_npi,
            provider_name=cfg.eligibility_provider_name,
            sender_id=cfg.clearinghouse_sender_id,
            receiver_id=cfg.clearinghouse_receiver_id,
            deadline_ms=int(cfg.eligibility_deadline_s * 1000),
        )

    async def _match(self, outbox: Outbox, ev: Any, form: dict[str, Any], now: int) -> IntakeContext:
        """The patient the form belongs to. A form from a logged-in patient names its chart;
        otherwise patient-context's matcher decides (matched / new / ambiguous)."""
        from dataclasses import replace

        if form.get("patient_id"):
            return replace(self.base, match_status="matched", patient_id=form["patient_id"])
        resolve = _resolver()
        if resolve is None or getattr(self.p, "contexts", None) is None:
            return replace(self.base, match_status="unknown")
        matching = importlib.import_module("practiceflow.processors.context.matching")
        key = ev.key.decode() if isinstance(ev.key, bytes) else str(ev.key)
        extra = {"wait_for_context": True} if "wait_for_context" in inspect.signature(resolve).parameters else {}
        result = await resolve(
            self.p,
            outbox,
            **extra,
            practice_id=form["practice_id"],
            subject_type="IntakeForm",
            subject_id=form["submission_id"],
            record_key=key,
            probe=matching.from_intake(form),
            source=form["source"],
            now=now,
        )
        return replace(self.base, match_status=result.status, patient_id=result.patient_id)

    async def forms(self, events: list[Any], committer: Committer) -> None:
        admitted = await committer.admit(events)
        if not admitted:
            return
        outbox = Outbox()
        for ev in admitted:
            form = ev.value
            now = int(ev.message.timestamp * 1000)
            with in_event(ev):
                ctx = await self._match(outbox, ev, form, now)
            step = on_intake(ctx, form, self.rules.get(form["practice_id"]), now)
            await emit_step(
                self.p,
                outbox,
                step,
                practice_id=form["practice_id"],
                workflow=WORKFLOW,
                cause=f"norm.intake_form/{form['submission_id']}",
                at=now,
            )
            self.p.sensor.touch(ev.message.tp)
            outbox.after(self.p._count, "intake.forms")
            outbox.after(self.p._count, "intake.commands", len(step.commands))
            first = next((a for a in step.audit if a.action == "eligibility_determined"), None)
            if first is not None:  # no check possible (no insurance, unknown payer): the outcome is here
                outbox.after(self.p._count, f"intake.outcome.{first.details.get('outcome')}")
                outbox.after(self.p._count, f"intake.reason.{first.details.get('reason_code', '')}")
            outbox.after(self.p._count, "handoff", len(step.work_items))
        await outbox.confirm()
        await committer.commit(admitted)

    async def results(self, admitted: list[Any]) -> None:
        """A batch of ``cmd.results`` (admitted and committed by ``streams/workflows/results.py``)."""
        outbox = Outbox()
        for ev in admitted:
            res = ev.value
            if res.get("workflow") != WORKFLOW or res.get("kind") != "eligibility":
                continue  # another workflow's command
            step = on_result(self.base, res, self.rules.get(res["practice_id"]), res["completed_at"])
            await emit_step(
                self.p,
                outbox,
                step,
                practice_id=res["practice_id"],
                workflow=WORKFLOW,
                cause=f"cmd.results/{res['command_id']}",
                at=res["completed_at"],
            )
            self.p.sensor.touch(ev.message.tp)
            outbox.after(self.p._count, "intake.results")
            outbox.after(self.p._count, "handoff", len(step.work_items))
            # one outcome per check (a clean check writes two items, each audited)
            first = next((a for a in step.audit if a.action == "eligibility_determined"), None)
            if first is not None:
                outbox.after(self.p._count, f"intake.outcome.{first.details.get('outcome')}")
                outbox.after(self.p._count, f"intake.reason.{first.details.get('reason_code', '').split(':')[0]}")
        await outbox.confirm()

    async def run(self, stream: Any, committer: Committer, handler: Any) -> None:
        await run_batches(self.p, stream, lambda events: handler(events, committer), "intake")


def _resolver() -> Any:
    """patient-context's ``resolve_patient`` when that module is installed (it lands separately)."""
    try:
        module = importlib.import_module("practiceflow.streams.workflows.patient_match")
    except ImportError:
        return None
    return getattr(module, "resolve_patient", None)


def register_intake_agents(pipeline: Pipeline, rules: IntakeRules | None = None) -> IntakeWorkflow:
    wf = IntakeWorkflow(pipeline, rules)
    app = pipeline.app
    from practiceflow.streams.workflows.results import add_handler

    add_handler(pipeline, "intake", wf.results)  # cmd.results has one agent for every workflow
    for suffix, name, handler in (("norm.intake_form", "intake-forms", wf.forms),):
        topic = pipeline.topics[suffix]
        committer = Committer(app, pipeline.committed_offsets, name, topic.topics)

        async def agent(stream: Any, _c: Committer = committer, _h: Any = handler) -> None:
            await wf.run(stream, _c, _h)

        app.agent(topic, name=name)(agent)
        pipeline.source_topics.add(topic.get_topic_name())
    return wf


def register(pipeline: Pipeline) -> None:
    """The intake agents and the eligibility executor they depend on (streams/workflows MODULES)."""
    from practiceflow.streams.commands.eligibility import register_eligibility_executor

    pipeline.intake = register_intake_agents(pipeline)  # type: ignore[attr-defined]  # for tests and the day job
    pipeline.eligibility = register_eligibility_executor(pipeline)  # type: ignore[attr-defined]
