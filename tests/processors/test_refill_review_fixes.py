"""Review s17 MUST-FIX 1, 3, 4: sign-off writes back, stale context is never routine, the
controlled list is added to, never replaced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from practiceflow.processors.workflows.decisions import FOLLOW_UPS, decide
from practiceflow.processors.workflows.refill.rules import load_refill_rules
from practiceflow.processors.workflows.refill.step import refill_step
from practiceflow.processors.workflows.refill.triage import triage

from .test_refill_triage import NOW, Chart, ace, request


@pytest.fixture(scope="module")
def rules():
    return load_refill_rules()


def _decision(item: Any, option: str, did: str = "cli:1", edits: dict | None = None) -> Any:
    return {
        "practice_id": item["practice_id"],
        "decision_id": did,
        "item_id": item["item_id"],
        "item_revision": item.get("revision", 1),
        "option": option,
        "actor": "dr-okafor",
        "actor_role": "clinician",
        "edits": edits or {},
        "comment": None,
        "channel": "cli",
        "decided_at": NOW + 60_000,
    }


# ---------------------------------------------------------------- 1: sign-off -> cmd.ehr_write
def test_refill_follow_up_is_registered():
    assert "refill" in FOLLOW_UPS


@pytest.mark.parametrize("option,edits", [("approve", None), ("edit", {"quantity": "60"})])
def test_signing_a_routine_refill_emits_one_ehr_write_command(rules, option, edits):
    res = refill_step(ace(Chart()).ctx, request("lisinopril 10 mg tablet"), rules, NOW)
    item, (draft,) = res.work_items[0], res.drafts
    out = decide(item, _decision(item, option, edits=edits))
    assert out.work_items[0]["state"] == "done"
    (cmd,) = out.commands
    assert cmd["kind"] == "ehr_write" and cmd["workflow"] == "refill" and cmd["item_id"] == item["item_id"]
    body = json.loads(cmd["payload"])
    assert body["draft_id"] == draft["draft_id"] and body["decision_id"] == "cli:1"
    assert body["edits"] == (edits or {})
    # replayed decision -> same command id; another decision on the same draft -> another id
    assert decide(item, _decision(item, option, edits=edits)).commands[0]["command_id"] == cmd["command_id"]
    assert decide(item, _decision(item, option, "cli:2", edits)).commands[0]["command_id"] != cmd["command_id"]
    assert "MRN1" not in cmd["command_id"]


def test_rejecting_or_approving_without_a_draft_emits_nothing(rules):
    res = refill_step(ace(Chart()).ctx, request("lisinopril 10 mg tablet"), rules, NOW)
    assert decide(res.work_items[0], _decision(res.work_items[0], "reject")).commands == ()
    review = refill_step(Chart().ctx, request("lisinopril 10 mg tablet"), rules, NOW).work_items[0]
    assert review["kind"] != "refill.routine"
    assert decide(review, _decision(review, "approve")).commands == ()


# ---------------------------------------------------------------- 3: stale context fails closed
def test_context_not_caught_up_is_never_routine(rules):
    ctx = ace(Chart()).ctx
    assert triage(request("lisinopril 10 mg tablet"), ctx, rules, NOW).triage_class == "routine"
    t = triage(request("lisinopril 10 mg tablet"), ctx, rules, NOW, context_current=False)
    assert t.triage_class == "needs_review" and "context_not_current" in t.reasons
    res = refill_step(ctx, request("lisinopril 10 mg tablet"), rules, NOW, context_current=False)
    assert res.work_items[0]["kind"] == "refill.needs_review" and res.drafts == ()


# ---------------------------------------------------------------- 4: controlled list is additive
def _practice_controlled(tmp_path, entries: str):
    (tmp_path / "refill").mkdir()
    (tmp_path / "refill" / "controlled.yaml").write_text(
        "id: refill.controlled\nversion: state-1\nsource: our state's schedules\nentries:\n" + entries
    )
    return load_refill_rules(tmp_path)


def test_practice_controlled_file_adds_to_the_federal_list(tmp_path, rules):
    local = _practice_controlled(
        tmp_path, '  - {ingredient: gabapentin, rxcui: "25480", schedule: CV, citation: "state schedule V"}\n'
    )  # gabapentin is also in drugs.yaml: must not crash start-up
    oxy = local.drugs.identify("oxycodone 5 mg", None)
    assert [e.schedule for e in oxy.controlled] == ["CII"]
    for name in ("gabapentin 300 mg", "Neurontin 300mg"):
        gaba = local.drugs.identify(name, None)
        assert [e.schedule for e in gaba.controlled] == ["CV"], name
    assert local.drugs.identify(None, "25480").controlled
    assert local.controlled_table_version.endswith("+state-1")
    t = triage(request("gabapentin 300 mg"), Chart().visit(30).order("gabapentin 300 MG Oral Capsule").ctx, local, NOW)
    assert t.triage_class == "needs_review" and "controlled_substance" in t.reasons
    # the shipped bundle is unchanged: gabapentin is not controlled federally
    assert not rules.drugs.identify("gabapentin 300 mg", None).controlled


def test_practice_cannot_weaken_a_federal_entry(tmp_path):
    local = _practice_controlled(
        tmp_path, '  - {ingredient: oxycodone, rxcui: "7804", schedule: CV, citation: "wrong"}\n'
    )
    assert [e.schedule for e in local.drugs.identify("oxycodone", None).controlled] == ["CII"]


def test_a_practice_folder_adds_controlled_entries_for_that_practice_only(tmp_path):
    """Two practices of one installation in different states: clinic-ky schedules gabapentin
    (state schedule V) in its own folder; clinic-oh, served by the same worker, does not."""
    from practiceflow.processors.rules import PracticeRules

    own = tmp_path / "practices" / "clinic-ky" / "refill"
    own.mkdir(parents=True)
    (own / "controlled.yaml").write_text(
        "id: refill.controlled\nversion: ky-1\nsource: Kentucky schedule V (902 KAR 55:035)\nentries:\n"
        '  - {ingredient: gabapentin, rxcui: "25480", schedule: CV, citation: "KY schedule V"}\n'
    )
    per_practice = PracticeRules(load_refill_rules, tmp_path)
    ky, oh = per_practice.get("clinic-ky"), per_practice.get("clinic-oh")
    assert [e.schedule for e in ky.drugs.identify("gabapentin 300 mg", None).controlled] == ["CV"]
    assert not oh.drugs.identify("gabapentin 300 mg", None).controlled
    assert ky.controlled_table_version.endswith("+ky-1") and "+" not in oh.controlled_table_version
    chart = Chart().visit(30).order("gabapentin 300 MG Oral Capsule").ctx
    assert "controlled_substance" in triage(request("gabapentin 300 mg"), chart, ky, NOW).reasons
    assert "controlled_substance" not in triage(request("gabapentin 300 mg"), chart, oh, NOW).reasons
