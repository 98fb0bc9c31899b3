"""The prior-auth agent and its context follower, without a broker (review s18 S7, S6, S8).

The prior-auth agent and the context follower share one table: a 278 answer is never parked
for ever; a faxed decision that names no request is evidence only; a failing check is a
triage item.

Review s18 S7: the response agent looked the authorization up (absent: its order still in
the context agent), then awaited its sends before parking the answer under ``r:<trace>``;
meanwhile the follower drafted the order and looked for ``r:`` (absent too). Neither side
applied the answer, and nothing noticed.

No broker: the race is one of the event loop's interleavings, so the test pins it. The sends
and the changelog confirmations are replaced by fakes that yield to the loop (the response
agent's sends take longer than the follower's, the interleaving that lost the answer), and
the table is an in-memory one. Everything else is the real ``PriorAuth`` code.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from practiceflow.processors.workflows.prior_auth.step import authorization_id
from practiceflow.streams.workflows import prior_auth as mod
from tests.processors.test_prior_auth import NOW, PT, RULES, P, mri_case


class _Table:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)


class _Writes:
    """The table writes' outbox (``pipeline.outbox()``): sets the store at once, as
    ``Outbox.table_write`` does; ``confirm`` yields to the loop once, as the changelog round trip."""

    def table_write(self, table: _Table, event: Any, key: str, value: str) -> None:
        table.data[key] = value

    async def confirm(self) -> list[Any]:
        await asyncio.sleep(0)
        return []


class _Outbox:
    """Queues nothing; ``confirm`` yields to the loop ``turns`` times, as a broker round trip does."""

    turns = 1

    def __init__(self) -> None:
        pass

    async def confirm(self) -> list[Any]:
        for _ in range(self.turns):
            await asyncio.sleep(0)
        return []


class _Committer:
    async def admit(self, events: list[Any]) -> list[Any]:
        return events

    async def commit(self, events: list[Any]) -> None:
        return None


class _Event:
    """A Faust event's shape as the agent reads it (weak-referenceable, as ``in_event`` needs)."""

    def __init__(self, topic: str, value: dict[str, Any]) -> None:
        self.message = SimpleNamespace(topic=topic, partition=0, timestamp=NOW / 1000 + 1, tp=("t", 0))
        self.value = value


def _event(topic: str, value: dict[str, Any]) -> Any:
    return _Event(topic, value)


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> mod.PriorAuth:
    emitted: list[Any] = []

    async def emit_step(pipeline: Any, outbox: Any, result: Any, **kw: Any) -> int:
        emitted.append(result)
        await asyncio.sleep(0)
        return 0

    # the response agent's sends are slow (5 turns), the follower's quick: the lost interleaving
    class SlowOutbox(_Outbox):
        def __init__(self) -> None:
            import inspect

            caller = inspect.stack()[1].function  # the response agent's batch (old or new name)
            self.turns = 5 if caller in ("_apply_responses", "process_batch") else 1

    monkeypatch.setattr(mod, "emit_step", emit_step)
    monkeypatch.setattr(mod, "Outbox", SlowOutbox)
    a = mod.PriorAuth.__new__(mod.PriorAuth)
    a.p = SimpleNamespace(  # type: ignore[assignment]
        _count=lambda name, n=1: None,
        sensor=SimpleNamespace(touch=lambda tp: None),
        work_items=None,
        outbox=_Writes,
    )
    a.table = _Table()  # type: ignore[assignment]
    a.rules = SimpleNamespace(get=lambda practice: RULES)  # type: ignore[assignment]
    a.profile = mod.PracticeProfile()
    a.committer = _Committer()  # type: ignore[assignment]
    a.counts = {}
    a.lock = asyncio.Lock()
    a._record_type = {"pf.norm.authorization_response": "AuthorizationResponse"}
    a.emitted = emitted  # type: ignore[attr-defined]
    return a


def test_a_278_answer_arriving_while_its_order_is_drafted_is_applied(agent: mod.PriorAuth) -> None:
    ctx, order = mri_case()
    aid = authorization_id(P, PT, order["order_id"])
    response = {
        "practice_id": P,
        "response_id": "resp-1",
        "trace_number": aid,
        "decision": "approved",
        "authorization_number": "AUTH9",
        "action_code": "A1",
        "source": {"feed": "x12", "message_id": "x-1"},
    }
    resp_ev = _event("pf.norm.authorization_response", response)
    order_ev = _event("pf.norm.order", order)

    async def both() -> None:
        # the answer's batch starts first (its lookup misses), the order's batch runs while the
        # answer's sends are in flight
        await asyncio.gather(agent.process_batch([resp_ev]), agent.on_context_batch([(order_ev, "Order", order, ctx)]))

    asyncio.run(both())
    state = agent.authorization(P, aid)
    assert state is not None and state["status"] == "approved" and state["authorization_number"] == "AUTH9"
    assert state["responses"] == ["resp-1"]
    # applied exactly once (a prior_auth_response audit in one step result)
    applied = [r for r in agent.emitted if any(a.action == "prior_auth_response" for a in r.audit)]  # type: ignore[attr-defined]
    assert len(applied) == 1


def _drafted(agent: mod.PriorAuth) -> tuple[Any, dict[str, Any], str]:
    ctx, order = mri_case()
    asyncio.run(agent.on_context_batch([(_event("pf.norm.order", order), "Order", order, ctx)]))
    aid = authorization_id(P, PT, order["order_id"])
    assert agent.authorization(P, aid)["status"] == "drafted"  # type: ignore[index]
    return ctx, order, aid


def test_a_trusted_fax_that_names_no_request_is_evidence_in_the_agent_too(agent: mod.PriorAuth) -> None:
    """Review s18 S6: the agent applied a faxed "approved" to the patient's only open authorization."""
    from tests.processors.test_prior_auth_sign_off import _fax

    _ctx, _order, aid = _drafted(agent)
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    fax = _fax("approved")  # rule-read, confident, ours, the patient matched; no reference
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", fax)]))
    state = agent.authorization(P, aid)
    assert state is not None and state["status"] == "drafted" and state["authorization_number"] is None
    (item,) = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert item["kind"] == "prior_auth.sign_off" and item["evidence"][0]["assessment"] == "unconfirmed"


def test_a_failing_check_puts_a_triage_item_in_front_of_a_person(
    agent: mod.PriorAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review s18 S8: the failure was an audit event only; nobody reads the audit trail as a queue."""
    ctx, order = mri_case()

    def broken(*a: Any, **kw: Any) -> Any:
        raise KeyError("birth_date")

    monkeypatch.setattr(mod, "draft", broken)
    asyncio.run(agent.on_context_batch([(_event("pf.norm.order", order), "Order", order, ctx)]))
    (result,) = agent.emitted  # type: ignore[attr-defined]
    (item,) = result.work_items
    assert item["queue"] == "triage" and item["subject_id"] == order["order_id"] and "KeyError" in item["what_happened"]
    assert [a.action for a in result.audit] == ["prior_auth_failed"]


def test_a_fax_naming_two_requests_is_evidence_in_the_agent(agent: mod.PriorAuth) -> None:
    """Review s19 S3 in the agent: two of the patient's requests carry the fax's CPT code (one approved, one
    pended); the agent's lookup fell back to "the only open one" and applied the re-faxed old approval to it."""
    from tests.processors.test_prior_auth_sign_off import _code_fax

    ctx, order = mri_case()
    renewal = {**order, "order_id": "ord-mri-2"}
    asyncio.run(
        agent.on_context_batch(
            [
                (_event("pf.norm.order", order), "Order", order, ctx),
                (_event("pf.norm.order", renewal), "Order", renewal, ctx),
            ]
        )
    )
    old, new = authorization_id(P, PT, order["order_id"]), authorization_id(P, PT, renewal["order_id"])
    answers = [
        {"practice_id": P, "response_id": rid, "trace_number": aid, "decision": dec, "source": {"feed": "x12"}}
        for rid, aid, dec in (("r-old", old, "approved"), ("r-new", new, "pended"))
    ]
    asyncio.run(agent.process_batch([_event("pf.norm.authorization_response", a) for a in answers]))
    assert agent.authorization(P, old)["status"] == "approved"  # type: ignore[index]
    assert agent.authorization(P, new)["status"] == "pended"  # type: ignore[index]
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", _code_fax("approved"))]))
    state = agent.authorization(P, new)
    assert state is not None and state["status"] == "pended" and state["responses"][-1] == "fax:fx-code"
    assert agent.authorization(P, old)["status"] == "approved"  # type: ignore[index]
    (item,) = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert item["kind"] == "prior_auth.pended" and item["evidence"][0]["assessment"] == "unconfirmed"
    assert [a.action for a in agent.emitted[-1].audit] == ["prior_auth_fax_unconfirmed"]  # type: ignore[attr-defined]


def test_a_cancelled_order_supersedes_the_billing_offices_submit_item_in_the_agent(agent: mod.PriorAuth) -> None:
    """Review s19 S2 in the agent: the submit item is looked up in the work-items table by its derived id."""
    from practiceflow.processors.workflows.decisions import decide
    from tests.processors.test_prior_auth_sign_off import _cancelled, _decision

    ctx, order, aid = _drafted(agent)
    sign_off = agent.authorization(P, aid)["item"]  # type: ignore[index]
    signed, submit = decide(sign_off, _decision(sign_off, "edit")).work_items
    table = {f"{P}/{i['item_id']}": {"item": i, "applied": []} for i in (signed, submit)}
    agent.p.work_items = SimpleNamespace(get=table.get)  # type: ignore[attr-defined]
    cancel = _cancelled(order)
    asyncio.run(agent.on_context_batch([(_event("pf.norm.order", cancel), "Order", cancel, ctx)]))
    assert agent.authorization(P, aid)["status"] == "cancelled"  # type: ignore[index]
    (item,) = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert item["item_id"] == submit["item_id"] and item["state"] == "superseded"


def test_a_person_confirming_a_faxed_decision_moves_the_authorization_in_the_agent(agent: mod.PriorAuth) -> None:
    """Review s19 S4 in the agent: the fax's billing item is offered the confirmation, and the confirming
    decision's command (cmd.prior_auth) is applied to the authorization; before, it stayed drafted."""
    from practiceflow.processors.workflows.decisions import decide
    from tests.processors.test_prior_auth_confirm import _billing, billing_fax

    _ctx, _order, aid = _drafted(agent)
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    agent._record_type["pf.cmd.prior_auth"] = "WorkflowCommand"
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", billing_fax(aid))]))
    assert agent.authorization(P, aid)["status"] == "drafted"  # type: ignore[index]
    sign_off, fax_item = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert sign_off["kind"] == "prior_auth.sign_off" and fax_item["kind"] == "fax.prior_auth_response"
    assert {o["option"]: o["target"] for o in fax_item["options"]}["approve"] == aid
    (cmd,) = decide(fax_item, _billing(fax_item, "approve")).commands
    asyncio.run(agent.process_batch([_event("pf.cmd.prior_auth", dict(cmd))]))
    state = agent.authorization(P, aid)
    assert state is not None and state["status"] == "approved" and state["responses"][-1] == "confirm:dec-fax"
    (item,) = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert item["item_id"] == sign_off["item_id"] and item["kind"] == "prior_auth.approved"
    # the command replayed (a crash before the commit) changes nothing
    asyncio.run(agent.process_batch([_event("pf.cmd.prior_auth", dict(cmd))]))
    assert agent.authorization(P, aid)["responses"].count("confirm:dec-fax") == 1  # type: ignore[index]


def test_an_intake_checks_271_saying_authorization_is_required_opens_one_item(agent: mod.PriorAuth) -> None:
    """Issue 11: the 271 an intake eligibility check brings back (cmd.results) with EB11 Y opens one
    prior_auth.payer_requires item for the checked patient; the same result replayed, once the item is
    in the work-items table, opens nothing; another workflow's result is not read."""
    from tests.processors.test_prior_auth_eligibility import _271_text

    result = {
        "practice_id": P,
        "command_id": "c-1",
        "workflow": "intake",
        "kind": "eligibility",
        "outcome": "ok",
        "payload": _271_text(),
        "params": {"patient_id": PT, "trace_number": "T1"},
        "completed_at": NOW + 5000,
    }
    seen: dict[str, Any] = {}
    agent.p.work_items = SimpleNamespace(get=seen.get)  # type: ignore[attr-defined]
    asyncio.run(
        agent.on_results([_event("pf.cmd.results", result), _event("pf.cmd.results", {**result, "workflow": "refill"})])
    )
    (step,) = agent.emitted  # type: ignore[attr-defined]
    (item,) = step.work_items
    assert item["kind"] == "prior_auth.payer_requires" and item["queue"] == "billing" and item["patient_id"] == PT
    assert item["created_at"] == NOW + 5000  # the result's completion time, never the wall clock
    seen[f"{P}/{item['item_id']}"] = {"item": item}
    asyncio.run(agent.on_results([_event("pf.cmd.results", result)]))
    assert len(agent.emitted) == 2 and agent.emitted[-1].empty  # type: ignore[attr-defined]


def test_an_applied_fax_seen_again_is_not_offered_for_confirmation(agent: mod.PriorAuth) -> None:
    """Review s20 S4: the language model's revision of an applied fax (same classification id) revised the
    fax's billing item to offer "Confirm: approved" for an authorization this very fax had approved."""
    from tests.processors.test_prior_auth_sign_off import _fax

    _ctx, _order, aid = _drafted(agent)
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    pended = {"practice_id": P, "response_id": "r1", "trace_number": aid, "decision": "pended", "source": {}}
    asyncio.run(agent.process_batch([_event("pf.norm.authorization_response", pended)]))
    fax = _fax("approved", reference=aid, queue="billing", confidence=0.97)
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", fax)]))
    assert agent.authorization(P, aid)["status"] == "approved"  # type: ignore[index]
    n = len(agent.emitted)  # type: ignore[attr-defined]
    for again in (dict(fax, extractor="rules+llm"), fax):  # the LLM's revision, then a replay
        asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", again)]))
    items = [i for r in agent.emitted[n:] for i in r.work_items]  # type: ignore[attr-defined]
    assert items == [] and agent.authorization(P, aid)["status"] == "approved"  # type: ignore[index]


def test_a_confirmation_for_a_cancelled_authorization_is_refused_in_the_agent(agent: mod.PriorAuth) -> None:
    """Review s20 S3 at apply time: a confirmation clicked after the order was cancelled made it approved
    and told the clinician "the order can proceed"."""
    from practiceflow.processors.workflows.decisions import decide
    from tests.processors.test_prior_auth_confirm import _billing, billing_fax
    from tests.processors.test_prior_auth_sign_off import _cancelled

    ctx, order, aid = _drafted(agent)
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    agent._record_type["pf.cmd.prior_auth"] = "WorkflowCommand"
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", billing_fax(aid))]))
    _sign_off, fax_item = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    (cmd,) = decide(fax_item, _billing(fax_item, "approve")).commands
    cancel = _cancelled(order)
    asyncio.run(agent.on_context_batch([(_event("pf.norm.order", cancel), "Order", cancel, ctx)]))
    assert agent.authorization(P, aid)["status"] == "cancelled"  # type: ignore[index]
    asyncio.run(agent.process_batch([_event("pf.cmd.prior_auth", dict(cmd))]))
    assert agent.authorization(P, aid)["status"] == "cancelled"  # type: ignore[index]
    last = agent.emitted[-1]  # type: ignore[attr-defined]
    assert last.work_items == () and [a.action for a in last.audit] == ["prior_auth_confirm_refused"]


def test_271s_on_norm_eligibility_from_before_the_agents_first_start_open_no_item(agent: mod.PriorAuth) -> None:
    """Review s20 S6: on its first start the agent reads norm.eligibility (never committed) from the
    log start. A 271 received before the partition's cut-off (the agent's start, kept in its table
    with the partition's first 271) is audit only; one received after opens the item; the cut-off
    stays once written (a restart with a later start does not move it)."""
    from tests.processors.test_prior_auth_eligibility import _271

    topic = "pf.norm.eligibility"
    agent._record_type = {topic: "EligibilityResponse"}
    agent.started = NOW + 10_000

    def at(ms: int) -> Any:
        ev = _event(topic, {**_271(), "patient_id": PT})
        ev.message.timestamp = ms / 1000
        return ev

    asyncio.run(agent.process_batch([at(NOW)]))  # retained from before the upgrade
    (backlog,) = agent.emitted  # type: ignore[attr-defined]
    assert not backlog.work_items and [a.action for a in backlog.audit] == ["prior_auth_payer_requires_backlog"]
    assert agent.table.get("since:eligibility:0") == str(NOW + 10_000)
    agent.started = NOW + 50_000  # the worker restarts later: the partition keeps its cut-off
    asyncio.run(agent.process_batch([at(NOW + 20_000)]))  # received after the first start
    (item,) = agent.emitted[-1].work_items  # type: ignore[attr-defined]
    assert item["kind"] == "prior_auth.payer_requires" and item["patient_id"] == PT
    assert agent.counts == {"eligibility_backlog": 1, "eligibility_items": 1}


def test_a_pas_response_pended_then_approved_in_one_batch_gives_two_revisions(agent: mod.PriorAuth) -> None:
    """Review s20 S5 in the agent: the payer's ClaimResponse, pended (version 1) and approved (version 2),
    handed over in one batch while the work-items table still holds the first revision: the approval is
    applied, as revision 3 (not a second revision 2 that the table would take for the same one)."""
    from practiceflow.sampleday import prior_auth as spa
    from tests.processors.test_prior_auth_pas import _normalized, _Person

    _ctx, _order, aid = _drafted(agent)
    (first,) = agent.emitted[0].work_items  # type: ignore[attr-defined]
    table = {f"{P}/{first['item_id']}": {"item": first}}
    agent.p.work_items = SimpleNamespace(get=table.get)  # type: ignore[attr-defined]
    answers = [
        _normalized(spa.pas_response(P, _Person(), 0, code, "PAS-9", request_id=aid, version=n), P)
        for n, code in ((1, "A4"), (2, "A1"))
    ]
    asyncio.run(agent.on_pas_responses([(_event("pf.norm.claim_adjudication", a), a) for a in answers]))
    state = agent.authorization(P, aid)
    assert state is not None and state["status"] == "approved" and len(state["responses"]) == 2
    revisions = [(i["kind"], i["revision"]) for r in agent.emitted[1:] for i in r.work_items]  # type: ignore[attr-defined]
    assert revisions == [("prior_auth.pended", 2), ("prior_auth.approved", 3)]


def _signed_with_submit_open(agent: mod.PriorAuth) -> tuple[str, dict[str, Any]]:
    """A drafted request, signed: the work-items table holds the signed sign-off item and the
    billing office's open submit item. Returns (authorization id, submit item)."""
    from practiceflow.processors.workflows.decisions import decide
    from tests.processors.test_prior_auth_sign_off import _decision

    _ctx, _order, aid = _drafted(agent)
    sign_off = agent.authorization(P, aid)["item"]  # type: ignore[index]
    signed, submit = decide(sign_off, _decision(sign_off, "edit")).work_items
    assert submit["kind"] == "prior_auth.submit" and submit["state"] == "open"
    table = {f"{P}/{i['item_id']}": {"item": i, "applied": []} for i in (signed, submit)}
    agent.p.work_items = SimpleNamespace(get=table.get)  # type: ignore[attr-defined]
    return aid, submit


def _submit_revisions(agent: mod.PriorAuth, n: int, submit: dict[str, Any]) -> list[tuple[str, str | None, int]]:
    items = [i for r in agent.emitted[n:] for i in r.work_items]  # type: ignore[attr-defined]
    return [(i["state"], i.get("outcome"), i["revision"]) for i in items if i["item_id"] == submit["item_id"]]


def test_a_278_answer_closes_the_billing_offices_open_submit_item(agent: mod.PriorAuth) -> None:
    """Review s20 S2 (second half): a 278 applied while the submit item was open left "submit" open beside
    the payer's decision, so billing would submit an answered request again. Two answers in one batch
    (pended, then approved) close it once, as its next revision."""
    aid, submit = _signed_with_submit_open(agent)
    n = len(agent.emitted)  # type: ignore[attr-defined]
    answers = [
        {"practice_id": P, "response_id": rid, "trace_number": aid, "decision": dec, "source": {"feed": "x12"}}
        for rid, dec in (("r1", "pended"), ("r2", "approved"))
    ]
    asyncio.run(agent.process_batch([_event("pf.norm.authorization_response", a) for a in answers]))
    assert agent.authorization(P, aid)["status"] == "approved"  # type: ignore[index]
    assert _submit_revisions(agent, n, submit) == [("done", "the payer answered", submit["revision"] + 1)]


def test_a_pas_answer_and_a_confirmation_close_the_open_submit_item(agent: mod.PriorAuth) -> None:
    """Review s20 S2 (second half), the other answers: a PAS ClaimResponse, and a person's confirmation of a
    faxed decision (cmd.prior_auth), each applied while the submit item is open, close it."""
    from practiceflow.processors.workflows.decisions import decide
    from practiceflow.sampleday import prior_auth as spa
    from tests.processors.test_prior_auth_confirm import _billing, billing_fax
    from tests.processors.test_prior_auth_pas import _normalized, _Person

    aid, submit = _signed_with_submit_open(agent)
    n = len(agent.emitted)  # type: ignore[attr-defined]
    pas = _normalized(spa.pas_response(P, _Person(), 0, "A1", "PAS-9", request_id=aid, version=1), P)
    asyncio.run(agent.on_pas_responses([(_event("pf.norm.claim_adjudication", pas), pas)]))
    assert agent.authorization(P, aid)["status"] == "approved"  # type: ignore[index]
    assert _submit_revisions(agent, n, submit) == [("done", "the payer answered", submit["revision"] + 1)]

    # a fresh agent state: the confirmation path (a fax with our reference but not trusted, confirmed)
    agent.table = type(agent.table)()  # type: ignore[assignment]
    agent.emitted.clear()  # type: ignore[attr-defined]
    aid, submit = _signed_with_submit_open(agent)
    agent._record_type["pf.norm.fax_classification"] = "FaxClassification"
    agent._record_type["pf.cmd.prior_auth"] = "WorkflowCommand"
    asyncio.run(agent.process_batch([_event("pf.norm.fax_classification", billing_fax(aid))]))
    fax_items = [i for i in agent.emitted[-1].work_items if i["kind"] == "fax.prior_auth_response"]  # type: ignore[attr-defined]
    (cmd,) = decide(fax_items[0], _billing(fax_items[0], "approve")).commands
    n = len(agent.emitted)  # type: ignore[attr-defined]
    asyncio.run(agent.process_batch([_event("pf.cmd.prior_auth", dict(cmd))]))
    assert agent.authorization(P, aid)["status"] == "approved"  # type: ignore[index]
    assert _submit_revisions(agent, n, submit) == [("done", "the payer answered", submit["revision"] + 1)]
