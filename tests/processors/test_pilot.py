"""Pilot mode, pure: piloted commands are withheld (and audited), proposals compared with staff decisions."""

from __future__ import annotations

from practiceflow.processors.pilot.compare import agreement, compare, report_lines, summarize
from practiceflow.processors.pilot.mode import is_piloted, withhold
from practiceflow.processors.pilot.rules import load_task_rules, rule_for
from practiceflow.processors.workflows.decisions import decide
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_model, by_rule, new_item, option

RULES = load_task_rules()
PRACTICE = "clinic-p"


def _refill(kind: str = "refill.routine", rid: str = "req-1") -> dict:
    return new_item(
        practice_id=PRACTICE,
        workflow="refill",
        subject=[rid],
        kind=kind,
        queue="clinician",
        title="Refill",
        what_happened="Portal refill request.",
        produced_by=by_rule("refill.statin", "2026-12-01", "clinic protocol"),
        source={"feed": "portal", "message_id": rid},
        now=1_000,
        options=[option("approve", "Sign", target="draft-1"), option("edit", "Edit"), option("reject", "Decline")],
        draft_ids=["draft-1"],
    )


def _fax(doc_class: str = "lab_result", queue: str = "clinician") -> dict:
    return new_item(
        practice_id=PRACTICE,
        workflow="fax",
        subject=["cls-1"],
        kind=f"fax.{doc_class}",
        queue=queue,
        title="Fax",
        what_happened="A fax arrived.",
        produced_by=by_model("fax-classifier", "m-7", None, 0.91),
        source={"feed": "fax", "message_id": "fax-1"},
        now=1_000,
        options=[option("file", "File to chart"), option("acknowledge", "Seen")],
    )


def _decision(item: dict, opt: str, **edits: str) -> dict:
    return {
        "practice_id": PRACTICE,
        "decision_id": f"d-{item['item_id']}-{opt}",
        "item_id": item["item_id"],
        "option": opt,
        "actor": "dr.lee",
        "actor_role": "clinician",
        "edits": edits,
        "channel": "scripted",
        "decided_at": 2_000,
    }


def test_pilot_setting_per_practice_and_workflow():
    pilot = {PRACTICE: ["refill"], "*": ["fax"]}
    assert is_piloted(pilot, PRACTICE, "refill") and is_piloted(pilot, "other", "fax")
    assert not is_piloted(pilot, PRACTICE, "intake") and not is_piloted({}, PRACTICE, "refill")
    assert is_piloted({PRACTICE: ["*"]}, PRACTICE, "denials")


def test_a_piloted_approval_writes_nothing_back_and_says_so():
    item = _refill()
    result = decide(item, _decision(item, "approve"))
    assert [c["kind"] for c in result.commands] == ["ehr_write"]  # live: the renewal would be written
    kept, withheld = withhold(result, {PRACTICE: ["refill"]}, PRACTICE)
    assert [c["kind"] for c in withheld] == ["ehr_write"] and kept.commands == ()
    assert kept.work_items == result.work_items  # the item still closes: staff decided
    actions = [a.action for a in kept.audit]
    assert "ehr_write_requested" not in actions and "command_withheld" in actions
    # another practice, or another workflow piloted: sent as usual
    assert withhold(result, {"clinic-other": ["refill"]}, PRACTICE) == (result, ())
    assert withhold(result, {PRACTICE: ["fax"]}, PRACTICE) == (result, ())


def test_allowed_kinds_pass_in_pilot():
    cmd = {"command_id": "c1", "kind": "llm", "workflow": "fax", "practice_id": PRACTICE}
    result = StepResult(commands=(cmd,), audit=(AuditReason("llm_requested", "X", "1", "r", details={}),))  # type: ignore[arg-type]
    assert withhold(result, {PRACTICE: ["*"]}, PRACTICE, allowed=("llm",)) == (result, ())
    assert withhold(result, {PRACTICE: ["*"]}, PRACTICE, allowed=())[1] == (cmd,)


def test_rule_for_takes_the_longest_prefix():
    assert rule_for(RULES, "refill.routine").id == "pilot.refill.routine"
    assert rule_for(RULES, "fax.lab_result").id == "pilot.fax"
    assert rule_for(RULES, "something.new").id == "pilot.default"
    assert all(r.source for r in RULES)


def test_verdicts():
    item = _refill()
    c = compare(item, _decision(item, "approve"), RULES)
    assert (c["verdict"], c["minutes_saved"], c["rule_id"], c["rule_version"]) == (
        "agree",
        2.5,
        "refill.statin",
        "2026-12-01",
    )
    assert compare(item, _decision(item, "reject"), RULES)["verdict"] == "disagree"
    assert compare(item, _decision(item, "edit", quantity="30"), RULES)["verdict"] == "disagree"
    assert compare(item, _decision(item, "escalate"), RULES)["verdict"] == "no_verdict"
    visit = _refill("refill.needs_visit", "req-2")
    assert compare(visit, _decision(visit, "reject"), RULES)["verdict"] == "agree"
    fax = _fax()
    filed = compare(fax, _decision(fax, "file"), RULES)
    assert (filed["verdict"], filed["rule_id"], filed["rule_version"]) == ("agree", "fax-classifier", "m-7")
    moved = compare(fax, _decision(fax, "file", queue="billing"), RULES)
    assert (moved["verdict"], moved["staff_queue"]) == ("disagree", "billing")
    assert compare(fax, _decision(fax, "file", doc_class="referral"), RULES)["verdict"] == "disagree"
    assert compare(fax, _decision(fax, "file", queue="clinician"), RULES)["verdict"] == "agree"  # same queue


def test_summary_and_report():
    items = [_refill(rid=f"r{i}") for i in range(4)]
    comps = [compare(it, _decision(it, "approve" if i < 3 else "reject"), RULES) for i, it in enumerate(items)]
    comps.append(comps[0])  # a re-delivered comparison counts once
    groups = summarize(comps)
    key = ("refill", "refill.routine", "refill.statin", "2026-12-01")
    assert groups[key] == {"agree": 3, "disagree": 1, "minutes_saved": 7.5}
    assert agreement(groups[key]) == 0.75
    text = "\n".join(report_lines(groups))
    assert "refill.statin@2026-12-01" in text and "75%" in text and "7.5" in text
