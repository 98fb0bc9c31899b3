"""The prior-authorization workflow in the worker: orders -> drafts to sign; payer answers -> state.

Inputs, and why they come the way they do:

* **Orders and medication orders** (``norm.order``, ``norm.medication_order``) are read by
  the patient context agent alone (one consumer group has one committed offset per
  partition, so no second agent may consume them). The context agent hands each batch's
  folded records to its *followers* after the batch's context writes are confirmed and
  before its offsets are committed (``PatientContexts.followers``); this module follows
  it. So the step sees the context *with* the order folded in, and a crash before the
  commit replays the batch: the fold is idempotent and the step's ids are stable.
* **PAS ClaimResponses** (Da Vinci PAS answers on the FHIR feed, normalized to
  ``norm.claim_adjudication`` with ``use`` preauthorization) are read by the denial agent,
  which owns that topic and hands them here before it commits (``Denials.pas_handlers``):
  matched by the request id they name (our Claim id is the authorization id), applied as a
  278 response is; one naming no authorization of the practice -> a billing item.
* **271s saying authorization is required** (EB11 Y): those on the X12 feed
  (``norm.eligibility``, read by this module's agent; attributed by the patient id the payer
  echoes, REF*EA) and those the intake workflow's eligibility checks bring back (a handler
  of ``cmd.results``: the check's patient) -> one item per patient, payer and service type
  (processors/workflows/prior_auth/eligibility.py), none while an authorization for the
  patient and payer is drafted or pended, none twice (the work-items table).
* **278 responses** (``norm.authorization_response``), **faxed decisions**
  (``norm.fax_classification`` of class ``prior_auth_response``) and **a person's
  confirmation of a faxed decision** (``cmd.prior_auth``, from the fax item's follow-up:
  processors/workflows/prior_auth/confirm.py) are read by this module's own agent,
  ``prior-auth``, committed by it alone (streams/offsets.py). A fax it found the
  authorization for but did not apply gets its billing item revised to offer that
  confirmation.

Table ``prior-auth`` (Faust, changelog-backed): ``<practice>/<authorization id>`` -> the
authorization's state (status drafted / approved / pended / denied / ..., the payer's
number, the work item, the responses applied), ``pp:<digest of practice/patient>`` ->
the patient's authorization ids (for a fax, which names a patient, not a trace number), and
``r:<practice>/<trace>`` -> a 278 response whose authorization is not drafted yet (the
order still on its way through the context agent): applied when the order is drafted, and
``since:eligibility:<partition>`` -> the cut-off (epoch ms) before which a ``norm.eligibility``
271 is the upgrade's backlog: audit only, no item (review s20 S6).
No identifier is in a key.

Outputs go through :func:`.emit.emit_step` (work items to the clinician queue, drafts,
audit). Commit rule as everywhere: outputs confirmed, table writes confirmed, then offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import faust

from practiceflow.processors.base import Rejected
from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.rules import PracticeRules
from practiceflow.processors.workflows.fax.handoffs import item_for as fax_item_for
from practiceflow.processors.workflows.intake.eligibility import read_271
from practiceflow.processors.workflows.prior_auth.codes import load_code_set
from practiceflow.processors.workflows.prior_auth.confirm import (
    COMMAND_KIND,
    apply_confirmation,
    confirmed_response,
    is_confirmation,
    offer_confirmation,
)
from practiceflow.processors.workflows.prior_auth.detect import ORDER_TYPES
from practiceflow.processors.workflows.prior_auth.eligibility import on_eligibility
from practiceflow.processors.workflows.prior_auth.faxed import FAX_DECISIONS, fax_target, on_fax_decision
from practiceflow.processors.workflows.prior_auth.pas_response import as_response, request_ids, unmatched_item
from practiceflow.processors.workflows.prior_auth.rules import load_prior_auth_rules
from practiceflow.processors.workflows.prior_auth.step import (
    OPEN_STATES,
    WORKFLOW,
    PracticeProfile,
    PriorAuthContext,
    authorization_id,
    draft,
    failed_check_item,
    respond,
    submit_item_id,
)
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import item_id_for
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.offsets import Committer, Outbox, in_event
from practiceflow.streams.serde import AvroCodec
from practiceflow.streams.workflows.emit import emit_step

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker.prior_auth")

RESPONSE_RECORD_TYPES: Final = ("AuthorizationResponse", "FaxClassification", "EligibilityResponse")
__all__ = ["FAX_DECISIONS", "OPEN_STATES", "PriorAuth", "patient_index_key", "register"]


def now_of(ev: Any) -> int:
    """The event's Kafka timestamp in epoch ms (the steps' ``now``: never the wall clock)."""
    return int(ev.message.timestamp * 1000)


def patient_index_key(practice_id: str, patient_id: str) -> str:
    return "pp:" + hashlib.sha256(f"{practice_id}/{patient_id}".encode()).hexdigest()[:32]


class PriorAuth:
    """The authorization table, the context follower (orders) and the response agent."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        app = pipeline.app
        cfg = pipeline.cfg
        rules_dir = getattr(cfg, "rules_dir", None)
        # per practice: one practice's payer rules never change another's drafts (processors/rules.py)
        self.rules = PracticeRules(load_prior_auth_rules, Path(rules_dir) if rules_dir else None)
        billing = getattr(cfg, "billing", None)
        self.profile = PracticeProfile(name=billing.name) if billing is not None else PracticeProfile()
        opts = {"driver": "rocksdict"} if cfg.table_store.startswith("rocksdb") else None
        self.table = app.Table("prior-auth", default=str, partitions=pipeline.partitions, options=opts)
        names = [f"{pipeline.prefix}.{catalog.NORMALIZED[rt]}" for rt in RESPONSE_RECORD_TYPES]
        self._record_type = dict(zip(names, RESPONSE_RECORD_TYPES, strict=True))
        confirmations = catalog.BY_SUFFIX[f"cmd.{COMMAND_KIND}"].name(pipeline.prefix)
        self._record_type[confirmations] = "WorkflowCommand"
        names.append(confirmations)
        self.topic = app.topic(
            *names,
            value_serializer=AvroCodec(pipeline.serde, f"{pipeline.prefix}.prior-auth-in", None),
            key_serializer="raw",
            acks=False,  # committed by this agent (streams/offsets.py), never by Faust
        )
        self.committer = Committer(app, pipeline.committed_offsets, "prior-auth", self.topic.topics)
        self.started = now_ms()  # the cut-off of a norm.eligibility partition never read (_eligibility_cutoff)
        self.counts: dict[str, int] = {}
        # the context follower (orders) and the response agent read and write the same table
        # keys across awaits: a 278 answer looked up before its order's write and parked after
        # the follower looked for it would stay parked for ever (review s18 S7). One at a time:
        # each sees the other's table writes (table.data is set before the lock is released).
        self.lock = asyncio.Lock()

        async def prior_auth(stream: faust.StreamT) -> None:
            await self.run(stream)

        app.agent(self.topic, name="prior-auth")(prior_auth)
        pipeline.source_topics.update(names)
        contexts = getattr(pipeline, "contexts", None)
        if contexts is None:
            raise RuntimeError("prior_auth follows the patient context agent: register 'context' first (MODULES)")
        contexts.follow(ORDER_TYPES, self.on_context_batch)
        denials = getattr(pipeline, "denials", None)
        if denials is not None:  # registered before this module (MODULES): it owns norm.claim_adjudication
            denials.pas_handlers.append(self.on_pas_responses)
        from practiceflow.streams.workflows.results import add_handler

        add_handler(pipeline, "prior_auth", self.on_results)  # the intake checks' 271s (cmd.results)

    # ------------------------------------------------------------------ table
    def _get(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key) or ""
        return json.loads(raw) if raw else None

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n
        self.p._count(f"prior_auth.{name}", n)

    async def _write(self, pending: dict[str, tuple[Any, Any]]) -> None:
        writes = self.p.outbox()
        for key, (ev, value) in pending.items():
            writes.table_write(self.table, ev, key, json.dumps(value, separators=(",", ":"), sort_keys=True))
        await writes.confirm()

    def _item(self, ev: Any, practice: str, item_id: str) -> Any:
        """An item's latest revision from the work-items table (streams/workflows/decisions.py), or None."""
        items = getattr(self.p, "work_items", None)
        if items is None:
            return None
        with in_event(ev):
            entry = items.get(f"{practice}/{item_id}")
        return entry["item"] if entry else None

    def _latest_item(self, ev: Any, practice: str, state: dict[str, Any]) -> Any:
        """The authorization item's latest revision: the work-items table's, unless the copy in
        ``state`` is newer. WHY: the table lags this agent's own sends; two answers in one batch
        (a PAS response pended, then the same one approved) would both revise the table's older
        revision, and the second would reuse the first's revision number (review s20 S5)."""
        latest = self._item(ev, practice, str(state["item_id"]))
        own = state.get("item")
        if latest is not None and own and int(own.get("revision", 1)) > int(latest.get("revision", 1)):
            return own
        return latest

    def _submit_item(
        self, ev: Any, practice: str, state: dict[str, Any], latest: Any, sent: dict[str, Any] | None = None
    ) -> Any:
        """The billing office's submit item of a signed request (step.submitted reads it), or None.

        ``sent``: the items this batch already emitted, by id. WHY: the work-items table does not
        have them yet, so a second answer in the batch would close the submit item again, with
        the same revision number (the table would take it for the same revision)."""
        sid = submit_item_id(state, latest)
        if not sid:
            return None
        return (sent or {}).get(sid) or self._item(ev, practice, sid)

    # ------------------------------------------------------------------ orders (context follower)
    async def on_context_batch(self, folded: list[tuple[Any, str, dict[str, Any], PatientContext]]) -> None:
        """Step every order of the context agent's batch (called before it commits; see module doc)."""
        if not any(rt in ORDER_TYPES for _ev, rt, _v, _ctx in folded):
            return
        async with self.lock:
            await self._on_context_batch(folded)

    async def _on_context_batch(self, folded: list[tuple[Any, str, dict[str, Any], PatientContext]]) -> None:
        outbox = Outbox()
        pending: dict[str, tuple[Any, Any]] = {}
        counts: dict[str, int] = {}
        for ev, rt, order, ctx in folded:
            if rt not in ORDER_TYPES or not order.get("order_id"):
                continue
            practice = ctx.practice_id
            aid = authorization_id(practice, ctx.patient_id, str(order["order_id"]))
            key = f"{practice}/{aid}"
            with in_event(ev):
                current = pending[key][1] if key in pending else self._get(key)
            now = int(ev.message.timestamp * 1000)
            latest = self._latest_item(ev, practice, current) if current else None
            submit = self._submit_item(ev, practice, current, latest) if current else None
            try:
                pctx = PriorAuthContext(ctx, current, self.profile, item=latest, submit_item=submit)
                decision = draft(pctx, rt, order, self.rules.get(practice), now)
            except Exception as exc:
                # a bug in this step must not stop the patient context every workflow reads: the
                # context batch commits, and a person is told in the triage queue (ids only) and
                # the audit trail; the type name only, no PHI in logs
                log.error("prior-auth step failed on an order (%s)", type(exc).__name__)
                failed = StepResult(
                    work_items=(failed_check_item(practice, ctx.patient_id, rt, order, type(exc).__name__, now),),
                    audit=(
                        AuditReason(
                            "prior_auth_failed",
                            rt,
                            str(order["order_id"]),
                            f"the prior-authorization check raised {type(exc).__name__}; check the order by hand",
                            outcome="error",
                        ),
                    ),
                )
                cause = f"{catalog.NORMALIZED[rt]}/{order['order_id']}"
                await emit_step(self.p, outbox, failed, practice_id=practice, workflow=WORKFLOW, cause=cause, at=now)
                counts["step_errors"] = counts.get("step_errors", 0) + 1
                continue
            if decision.state is None:
                continue
            await emit_step(
                self.p,
                outbox,
                decision.result,
                practice_id=practice,
                workflow=WORKFLOW,
                cause=f"{catalog.NORMALIZED[rt]}/{order['order_id']}",
                at=now,
            )
            state = decision.state
            if state.get("status") == "cancelled":
                pending[key] = (ev, state)
                counts["cancelled"] = counts.get("cancelled", 0) + 1
                continue
            pkey_resp = f"r:{practice}/{aid}"
            with in_event(ev):
                parked = pending[pkey_resp][1] if pkey_resp in pending else self._get(pkey_resp)
            if parked and parked.get("response_id") not in (state.get("responses") or ()):
                # the payer's answer arrived before the order was folded: apply it now
                result, state = respond(state, parked, decision.result.work_items[0], now, submit_item=submit)
                await emit_step(
                    self.p,
                    outbox,
                    result,
                    practice_id=practice,
                    workflow=WORKFLOW,
                    cause=f"{catalog.NORMALIZED['AuthorizationResponse']}/{parked['response_id']}",
                    at=now,
                )
                counts["responses_applied"] = counts.get("responses_applied", 0) + 1
            pending[key] = (ev, state)
            pkey = patient_index_key(practice, ctx.patient_id)
            with in_event(ev):
                ids = list(pending[pkey][1] if pkey in pending else (self._get(pkey) or []))
            if aid not in ids:
                pending[pkey] = (ev, [*ids, aid][-50:])
            counts["drafted"] = counts.get("drafted", 0) + 1
            counts["drafts"] = counts.get("drafts", 0) + len(decision.result.drafts)
        await outbox.confirm()
        if pending:
            await self._write(pending)
        for name, n in counts.items():  # after the writes: a reader that saw the count sees the state
            self._count(name, n)

    # ------------------------------------------------------------------ responses (own agent)
    async def run(self, stream: faust.StreamT) -> None:
        await run_batches(self.p, stream, self.process_batch, "prior-auth")

    def _find(
        self, ev: Any, rt: str, v: dict[str, Any], pending: dict[str, tuple[Any, Any]]
    ) -> tuple[str | None, bool]:
        """The table key of the authorization a response answers (or None), and whether a fax
        names more than one of the patient's authorizations (then it is evidence only)."""
        practice = v["practice_id"]

        def get(key: str) -> Any:
            if key in pending:
                return pending[key][1]
            with in_event(ev):
                return self._get(key)

        if rt == "WorkflowCommand":
            if not is_confirmation(v):
                return None, False
            wanted = f"{practice}/{v['params']['authorization_id']}"
            return (wanted if get(wanted) is not None else None), False
        if rt == "AuthorizationResponse":
            trace = v.get("trace_number")
            key = f"{practice}/{trace}" if trace else None
            return (key if key and get(key) is not None else None), False
        if v.get("doc_class") != "prior_auth_response" or v.get("kind") not in FAX_DECISIONS:
            return None, False
        if v.get("misdirected"):
            return None, False  # another practice's fax: nothing of ours to note it on
        if v.get("patient_match") != "matched" or not v.get("patient_id"):
            return None, False
        # which authorization: step.fax_target (the one the fax names, else the patient's only
        # open one; more than one named is ambiguous); on_fax_decision then applies it only when
        # trusted and named alone, else adds it as evidence for a person (review s18 S6, s19 S3)
        ids = get(patient_index_key(practice, v["patient_id"])) or []
        states = [get(f"{practice}/{a}") or {} for a in ids]
        target, ambiguous = fax_target(states, v)
        return (f"{practice}/{target['authorization_id']}" if target else None), ambiguous

    async def process_batch(self, events: list[Any]) -> None:
        admitted = await self.committer.admit(events)
        if not admitted:
            return
        async with self.lock:  # see __init__: never between the follower's lookup and its write
            counts = await self._apply_responses(admitted)
        await self.committer.commit(admitted)
        for name, n in counts.items():  # after the writes (see on_context_batch)
            self._count(name, n)

    async def _apply_responses(self, admitted: list[Any]) -> dict[str, int]:
        outbox = Outbox()
        pending: dict[str, tuple[Any, Any]] = {}
        counts: dict[str, int] = {}
        issued: set[str] = set()
        sent: dict[str, Any] = {}  # items emitted in this batch, by id (see _submit_item)
        for ev in admitted:
            rt = self._record_type.get(ev.message.topic)
            v: dict[str, Any] = ev.value
            practice = v.get("practice_id")
            if rt is None or not practice:
                continue
            if rt == "EligibilityResponse":
                since = self._eligibility_cutoff(ev, pending)
                name = await self._eligibility(
                    ev, v, v.get("patient_id"), outbox, pending, issued, now_of(ev), since=since
                )
                counts[name] = counts.get(name, 0) + 1
                continue
            key, ambiguous = self._find(ev, rt, v, pending)
            if key is None:
                if rt == "AuthorizationResponse" and v.get("trace_number"):
                    # no authorization (yet) with this trace: the order may still be on its way
                    # through the context agent; parked, applied when it is drafted
                    pending[f"r:{practice}/{v['trace_number']}"] = (ev, v)
                    counts["responses_parked"] = counts.get("responses_parked", 0) + 1
                else:
                    name = {
                        "AuthorizationResponse": "responses_unmatched",
                        "WorkflowCommand": "confirmations_unmatched",
                    }.get(rt, "faxes_not_for_us")
                    counts[name] = counts.get(name, 0) + 1
                continue
            state = pending[key][1] if key in pending else self._get_in(ev, key)
            now = int(ev.message.timestamp * 1000)
            latest = self._latest_item(ev, practice, state)
            submit = self._submit_item(ev, practice, state, latest, sent)
            if rt == "FaxClassification":
                result, new_state = on_fax_decision(state, v, latest, now, ambiguous=ambiguous, submit_item=submit)
                rid = f"fax:{v['classification_id']}"
                applied = any(a.action == "prior_auth_response" for a in result.audit)
                name = "responses_applied" if applied else "faxes_unconfirmed"
                result = result + self._offer_confirmation(ev, practice, v, new_state, result, ambiguous, now)
            elif rt == "WorkflowCommand":
                result, new_state, confirmed_ok = apply_confirmation(state, v, latest, now, submit_item=submit)
                rid = str(confirmed_response(v)["response_id"])
                name = "confirmations_applied" if confirmed_ok else "confirmations_refused"
            else:
                result, new_state = respond(state, v, latest, now, submit_item=submit)
                rid, name = str(v.get("response_id")), "responses_applied"
            await emit_step(
                self.p,
                outbox,
                result,
                practice_id=practice,
                workflow=WORKFLOW,
                cause=f"cmd.{COMMAND_KIND}/{v['command_id']}"
                if rt == "WorkflowCommand"
                else f"{catalog.NORMALIZED[rt]}/{rid}",
                at=now,
            )
            sent.update((i["item_id"], i) for i in result.work_items)
            pending[key] = (ev, new_state)
            counts[name] = counts.get(name, 0) + 1
            self.p.sensor.touch(ev.message.tp)
        await outbox.confirm()
        await self._write(pending)
        return counts

    # ------------------------------------------------------------------ PAS answers (denial agent's hand-off)
    async def on_pas_responses(self, batch: list[tuple[Any, dict[str, Any]]]) -> None:
        """Apply PAS ClaimResponses (called by the denial agent before it commits; see module doc)."""
        async with self.lock:
            counts = await self._apply_pas(batch)
        for name, n in counts.items():
            self._count(name, n)

    async def _apply_pas(self, batch: list[tuple[Any, dict[str, Any]]]) -> dict[str, int]:
        outbox = Outbox()
        pending: dict[str, tuple[Any, Any]] = {}
        counts: dict[str, int] = {}
        sent: dict[str, Any] = {}  # items emitted in this batch, by id (see _submit_item)
        for ev, v in batch:
            practice = str(v["practice_id"])
            now = int(ev.message.timestamp * 1000)
            cause = f"{catalog.NORMALIZED['ClaimAdjudication']}/{v['adjudication_id']}"
            keys = []
            for rid in request_ids(v):  # our ids, exactly: never the patient's "only open" request
                key = f"{practice}/{rid}"
                if key in pending or self._get_in_or_none(ev, key) is not None:
                    keys.append(key)
            if len(set(keys)) != 1:
                item = unmatched_item(v, now)
                audit = AuditReason(
                    "prior_auth_response_unmatched",
                    "ClaimAdjudication",
                    str(v["adjudication_id"]),
                    "a PAS ClaimResponse names no authorization of this practice",
                    details={"candidates": str(len(set(keys)))},
                )
                result = StepResult(work_items=(item,), audit=(audit,))
                await emit_step(self.p, outbox, result, practice_id=practice, workflow=WORKFLOW, cause=cause, at=now)
                counts["pas_unmatched"] = counts.get("pas_unmatched", 0) + 1
                continue
            key = keys[0]
            state = pending[key][1] if key in pending else self._get_in(ev, key)
            latest = self._latest_item(ev, practice, state)
            submit = self._submit_item(ev, practice, state, latest, sent)
            result, new_state = respond(state, as_response(v), latest, now, submit_item=submit)
            await emit_step(self.p, outbox, result, practice_id=practice, workflow=WORKFLOW, cause=cause, at=now)
            sent.update((i["item_id"], i) for i in result.work_items)
            pending[key] = (ev, new_state)
            counts["pas_applied"] = counts.get("pas_applied", 0) + 1
        await outbox.confirm()
        await self._write(pending)
        return counts

    # ------------------------------------------------------------------ 271s: "authorization required"
    async def on_results(self, admitted: list[Any]) -> None:
        """The intake workflow's eligibility checks (``cmd.results``, admitted and committed by
        streams/workflows/results.py): their 271 for the checked patient."""
        batch = []
        for ev in admitted:
            res = ev.value
            if res.get("workflow") != "intake" or res.get("kind") != "eligibility" or res.get("outcome") != "ok":
                continue
            params = res.get("params") or {}
            patient_id = params.get("patient_id")
            if not patient_id or not res.get("practice_id"):
                continue  # a new patient not registered yet: the intake item handles it
            try:
                response = read_271(res.get("payload") or "", res["practice_id"], params.get("trace_number") or None)
            except Rejected:
                continue  # the intake workflow tells a person (unreadable_271)
            if response is not None:
                batch.append((ev, dict(response), str(patient_id), int(res["completed_at"])))
        if not batch:
            return
        async with self.lock:
            outbox = Outbox()
            pending: dict[str, tuple[Any, Any]] = {}
            counts: dict[str, int] = {}
            issued: set[str] = set()
            for ev, response, patient_id, now in batch:
                name = await self._eligibility(ev, response, patient_id, outbox, pending, issued, now)
                counts[name] = counts.get(name, 0) + 1
            await outbox.confirm()
        for name, n in counts.items():
            self._count(name, n)

    async def _eligibility(
        self,
        ev: Any,
        response: dict[str, Any],
        patient_id: str | None,
        outbox: Outbox,
        pending: dict[str, tuple[Any, Any]],
        issued: set[str],
        now: int,
        since: int | None = None,
    ) -> str:
        """One 271: the items its "authorization required" benefits open (a count's name back).
        ``since``: the partition's cut-off (norm.eligibility only): a 271 received before it is backlog."""
        practice = str(response["practice_id"])
        if not any(b.get("authorization_required") is True for b in response.get("benefits") or ()):
            return "eligibility_no_auth"
        if not patient_id:
            return "eligibility_unattributed"  # no patient id echoed: whose orders, nobody can say

        def get(key: str) -> Any:
            if key in pending:
                return pending[key][1]
            return self._get_in_or_none(ev, key)

        ids = get(patient_index_key(practice, patient_id)) or []
        auths = [st for a in ids if (st := get(f"{practice}/{a}"))]
        contexts = getattr(self.p, "contexts", None)
        with in_event(ev):
            ctx = contexts.context_for(practice, patient_id) if contexts is not None else None
        items = getattr(self.p, "work_items", None)

        class _Issued:  # the item ids already out: this batch's, then the work-items table's
            def __contains__(self, iid: object) -> bool:
                if iid in issued:
                    return True
                if items is None:
                    return False
                with in_event(ev):
                    return items.get(f"{practice}/{iid}") is not None

        result = on_eligibility(
            response,
            patient_id=patient_id,
            ctx=ctx,
            authorizations=auths,
            existing_items=_Issued(),
            rules=self.rules.get(practice),
            now=now,
            since=since,
        )
        cause = f"{catalog.NORMALIZED['EligibilityResponse']}/{response.get('response_id')}"
        await emit_step(self.p, outbox, result, practice_id=practice, workflow=WORKFLOW, cause=cause, at=now)
        issued.update(i["item_id"] for i in result.work_items)
        self.p.sensor.touch(ev.message.tp)
        if result.work_items:
            return "eligibility_items"
        if any(a.action == "prior_auth_payer_requires_backlog" for a in result.audit):
            return "eligibility_backlog"
        return "eligibility_nothing_new"

    def _eligibility_cutoff(self, ev: Any, pending: dict[str, tuple[Any, Any]]) -> int:
        """The cut-off of the ``norm.eligibility`` partition ``ev`` came from (review s20 S6).

        WHY: nobody committed that topic before this agent read it, so its first start reads the
        retained 271s (30 days) from the log start. The cut-off is this worker's start, written
        to the table with the partition's first 271 (and confirmed before the commit, so a
        restart keeps it), as the ``ehr-no-target`` agent does (streams/commands/ehr_none.py).
        A 271 received before it is answered with an audit entry only."""
        key = f"since:eligibility:{ev.message.partition}"
        if key in pending:
            return int(pending[key][1])
        since: Any = self._get_in_or_none(ev, key)
        if since is None:  # this partition's first 271 ever: the cut-off is now
            since = self.started
            pending[key] = (ev, since)
        return int(since)

    def _get_in_or_none(self, ev: Any, key: str) -> dict[str, Any] | None:
        with in_event(ev):
            return self._get(key)

    def _offer_confirmation(
        self,
        ev: Any,
        practice: str,
        fax: dict[str, Any],
        state: dict[str, Any],
        result: StepResult,
        ambiguous: bool,
        now: int,
    ) -> StepResult:
        """The fax's billing item, revised to offer confirming the decision for this authorization
        (review s19 S4), when confirm.offer_confirmation allows it (not applied, not a repeat,
        named alone, still waiting: review s20 S3/S4). Its latest revision from the work-items
        table, else the one the fax step built (processors/workflows/fax/handoffs.py; the
        work-items agent may not have it yet)."""
        if not any(a.action == "prior_auth_fax_unconfirmed" for a in result.audit):
            return StepResult()  # applied, or seen before: nothing to look up
        fax_item = self._item(ev, practice, item_id_for("fax", str(fax["classification_id"])))
        if fax_item is None and fax.get("queue") == "billing":
            fax_item = fax_item_for(fax, now)
        revised = offer_confirmation(fax_item, state, fax, result, ambiguous=ambiguous, now=now)
        return StepResult(work_items=(revised,)) if revised is not None else StepResult()

    def _get_in(self, ev: Any, key: str) -> dict[str, Any]:
        with in_event(ev):
            state = self._get(key)
        if state is None:
            raise LookupError(f"authorization {key} vanished from the table between lookups")
        return state

    def authorization(self, practice_id: str, authorization_id: str) -> dict[str, Any] | None:
        """An authorization's state (tests, tools)."""
        return self._get(f"{practice_id}/{authorization_id}")

    def authorizations_of(self, practice_id: str, patient_id: str) -> list[dict[str, Any]]:
        """The patient's authorization states (newest last). Call it in the context of an event
        of the practice's partition (``in_event``): the table is partitioned like every
        practice-keyed topic, so the denial agent reads it for the 835 it handles."""
        ids: list[str] = self._get(patient_index_key(practice_id, patient_id)) or []  # type: ignore[assignment]  # the index entry is a list of ids
        return [st for a in ids if (st := self._get(f"{practice_id}/{a}"))]


def register(pipeline: Pipeline) -> None:
    """The prior-authorization table, agent and context follower (streams/workflows MODULES,
    after ``context``); reachable as ``pipeline.prior_auth`` (tests, the day job)."""
    # before the app starts, never inside an agent; from the snapshot in the state folder after
    # the first start (processors/workflows/prior_auth/codes.py)
    load_code_set(Path(pipeline.cfg.state_dir) / "cache")
    pipeline.prior_auth = PriorAuth(pipeline)  # type: ignore[attr-defined]  # set by the workflow registry
