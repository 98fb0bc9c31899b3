"""The denial workflow's agent: 837 claims into the claim store, 835 claims into work items.

Reads ``norm.claim`` (the 837s the practice sent, normalized),
``norm.claim_adjudication`` (each 835 CLP loop) and ``norm.provider_adjustment`` (835 PLB),
and nothing else: those topics are committed by this agent alone (one consumer group has one committed offset per
partition, so no other agent of the worker may read them).

Tables (Faust, RocksDB by default, changelog-backed):

* ``denials-claims``: ``<practice>/<claim id>`` -> the claim store's state for the claim
  (the 837 as first sent, the latest 837, the 835s applied, the open denial money),
  folded by ``processors/workflows/denials/store.py``.

What the practice knows about the patient now (coverages) comes from the patient context
tables (``streams/workflows/context.py``) when the worker has them, after their barrier
(``caught_up``), so a coverage accepted before the 835 is seen by its step.

Per 835 claim the pure step (``processors/workflows/denials/step.py``) returns the work
item, the drafts and the audit reasons (sent by ``emit.emit_step``) and the ledger entries
(``denials.ledger``, to ClickHouse's ``denial_money``). Commit rule as everywhere
(``streams/offsets.py``): outputs confirmed, then table writes confirmed, then offsets. A
crash in between replays the batch; the step is deterministic and its ids stable, so a
replay rewrites the same item, drafts and entries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import faust

from practiceflow.processors.rules import PracticeRules, load_table
from practiceflow.processors.workflows.denials.drafts import WORKFLOW, BillingProfile
from practiceflow.processors.workflows.denials.plb import plb_step
from practiceflow.processors.workflows.denials.rules import load_denial_rules
from practiceflow.processors.workflows.denials.step import DenialContext, decide, descriptions_from_table
from practiceflow.processors.workflows.denials.store import PatientFacts, facts_of, fold_claim, fold_patient
from practiceflow.processors.workflows.prior_auth.on_file import authorization_on_file
from practiceflow.processors.workflows.prior_auth.pas_response import is_pas_response
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.serde import AvroCodec
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker.denials")

INPUT_RECORD_TYPES = ("Claim", "ClaimAdjudication", "ProviderAdjustment")
CONTEXT_WAIT_SECONDS = 30.0


class Denials:
    """The claim store table and the agent that feeds it and steps the 835s."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        app = pipeline.app
        cfg = pipeline.cfg
        rules_dir = getattr(cfg, "rules_dir", None)
        # per practice: one practice's rule edit never changes another's follow-up (processors/rules.py);
        # the code tables (CARC descriptions, PLB reasons) are the installation's
        self.rules = PracticeRules(load_denial_rules, rules_dir)
        table = load_table("denials", "denials.carc_table", rules_dir)
        self.descriptions = descriptions_from_table(table.entries)
        plb = load_table("denials", "denials.plb_reasons", rules_dir)
        self.plb_reasons = {str(e["code"]): e for e in plb.entries}
        self.plb_version = plb.version
        b = getattr(cfg, "billing", None)
        self.profile = (
            BillingProfile(
                name=b.name,
                tax_id=b.tax_id,
                npi=b.npi,
                address=(b.street, b.city, b.state, b.zip),
                sender_id=b.sender_id,
                receiver_id=b.receiver_id,
                receiver_name=b.receiver_name,
            )
            if b is not None
            else BillingProfile()
        )
        opts = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.claims = app.Table("denials-claims", default=None, partitions=pipeline.partitions, options=opts)
        names = [f"{pipeline.prefix}.{catalog.NORMALIZED[rt]}" for rt in INPUT_RECORD_TYPES]
        self._record_type = dict(zip(names, INPUT_RECORD_TYPES, strict=True))
        self.topic = app.topic(
            *names,
            value_serializer=AvroCodec(pipeline.serde, f"{pipeline.prefix}.denials-in", None),
            key_serializer="raw",
            acks=False,  # committed by this agent (streams/offsets.py), never by Faust
        )
        self.committer = Committer(app, pipeline.committed_offsets, "denials", self.topic.topics)
        self.counts: dict[str, int] = {}
        # who answers the Da Vinci PAS ClaimResponses (prior-authorization answers, ``use``
        # preauthorization) this agent reads on norm.claim_adjudication: the prior-auth module.
        # Called with the batch's PAS records after this batch's writes and before its commit,
        # so a crash replays them too. Without a handler they go to the denial step as before.
        self.pas_handlers: list[Callable[[list[tuple[Any, dict[str, Any]]]], Awaitable[None]]] = []

        async def denials(stream: faust.StreamT) -> None:
            await self.run(stream)

        app.agent(self.topic, name="denials")(denials)
        pipeline.source_topics.update(names)

    async def run(self, stream: faust.StreamT) -> None:
        await run_batches(self.p, stream, self.process_batch, "denials")

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n
        self.p._count(f"denials.{name}", n)

    async def _facts(self, ev: Any, practice: str, patient_id: str | None) -> PatientFacts:
        contexts = getattr(self.p, "contexts", None)
        if contexts is None or not patient_id:
            return PatientFacts()
        ok = await contexts.caught_up(
            ev.message.partition, touch=lambda: self.p.sensor.touch(ev.message.tp), timeout=CONTEXT_WAIT_SECONDS
        )
        if not ok:
            log.warning("denials: patient context not caught up on partition %s", ev.message.partition)
        with in_event(ev):
            ctx = contexts.context_for(practice, patient_id)
        if ctx is None:
            return PatientFacts(current=ok)
        state: dict[str, Any] | None = None
        for cov in ctx.coverages.values():
            state = fold_patient(state, "Coverage", cov)
        # the payer's numbers on file (the prior-auth agent, registered after this one: looked up
        # now); a claim denied for a missing authorization is then fixed by quoting one
        prior_auth = getattr(self.p, "prior_auth", None)
        if prior_auth is not None:
            with in_event(ev):
                authorizations = prior_auth.authorizations_of(practice, ctx.patient_id)
            for auth in authorizations:
                if (fact := authorization_on_file(auth)) is not None:
                    state = fold_patient(state, "Authorization", fact)
        facts = facts_of(state)
        return facts if ok else replace(facts, current=False)  # fail closed: step.decide sends it to review

    async def process_batch(self, events: list[Any]) -> None:
        admitted = await self.committer.admit(events)
        if not admitted:
            return
        outbox = Outbox()
        counts: list[tuple[str, int]] = []  # counted at the end, once items and claim states are written

        def tally(name: str, n: int = 1) -> None:
            counts.append((name, n))

        states: dict[str, tuple[Any, dict[str, Any]]] = {}  # table key -> (event, new state)
        pas: list[tuple[Any, dict[str, Any]]] = []
        partitions = self.p.partitions
        ledger_topic = self.p.topics["denials.ledger"]
        for ev in admitted:
            rt = self._record_type.get(ev.message.topic)
            v: dict[str, Any] = ev.value
            practice = v.get("practice_id")
            partition = catalog.partition_for(practice or "", partitions)
            if rt == "ProviderAdjustment" and practice:
                now = int(ev.message.timestamp * 1000)
                result, entry = plb_step(v, self.plb_reasons, self.plb_version, now)
                cause = f"norm.provider_adjustment/{v['adjustment_id']}"
                await emit_step(self.p, outbox, result, practice_id=practice, workflow=WORKFLOW, cause=cause, at=now)
                await outbox.send(ledger_topic, f"{practice}/{entry['entry_id']}", entry, partition)
                tally("provider_adjustments")
                tally("ledger_entries")
                continue
            if rt is None or not practice or not v.get("claim_id"):
                continue
            if rt == "ClaimAdjudication" and self.pas_handlers and is_pas_response(v):
                pas.append((ev, v))  # a prior-authorization answer, not a claim's: see pas_handlers
                continue
            key = f"{practice}/{v['claim_id']}"
            if key in states:
                current: Any = states[key][1]
            else:
                with in_event(ev):
                    current = self.claims.get(key)
            if rt == "Claim":
                states[key] = (ev, fold_claim(current, v))
                tally("claims_stored")
                continue
            now = int(ev.message.timestamp * 1000)
            # an 835 names the patient by member id only (NM1*QC): the claim on file names the chart
            stored_claim = (current or {}).get("claim") or {}
            facts = await self._facts(ev, practice, v.get("patient_id") or stored_claim.get("patient_id"))
            ctx = DenialContext(current, facts, self.profile, self.descriptions)
            decision = decide(ctx, v, self.rules.get(practice), now)
            await emit_step(
                self.p,
                outbox,
                decision.result,
                practice_id=practice,
                workflow=WORKFLOW,
                cause=f"norm.claim_adjudication/{v['adjudication_id']}",
                at=now,
            )
            for entry in decision.ledger:
                await outbox.send(ledger_topic, f"{practice}/{entry['entry_id']}", entry, partition)
            states[key] = (ev, decision.state)
            tally("adjudications")
            tally("work_items", len(decision.result.work_items))
            tally("drafts", len(decision.result.drafts))
            tally("ledger_entries", len(decision.ledger))
            if decision.action:
                tally(f"action.{decision.action}")
            self.p.sensor.touch(ev.message.tp)
        await outbox.confirm()
        writes = self.p.outbox()
        for key, (ev, state) in states.items():
            writes.table_write(self.claims, ev, key, state)
        await writes.confirm()
        for name, n in counts:
            self._count(name, n)
        if pas:
            for handle in self.pas_handlers:
                await handle(pas)
            self._count("pas_responses", len(pas))
        await self.committer.commit(admitted)

    def claim_state(self, practice_id: str, claim_id: str) -> dict[str, Any] | None:
        """The claim store's state for one claim (tests, tools)."""
        return self.claims.get(f"{practice_id}/{claim_id}")


def register(pipeline: Pipeline) -> None:
    """Create the claim store table and the denials agent on ``pipeline`` (``streams/workflows`` MODULES);
    the workflow is reachable as ``pipeline.denials`` (tests, the day job's counts)."""
    pipeline.denials = Denials(pipeline)  # type: ignore[attr-defined]  # set by the workflow registry
