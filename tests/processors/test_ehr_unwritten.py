"""Review s18 M6: a signed renewal the EHR write-back did not write must reach a person."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from practiceflow.processors.ehr.unwritten import unwritten_write_item


def _result(outcome: str, at: int = 5, **kw):
    return {
        "practice_id": "p1",
        "command_id": "cmd-1",
        "kind": "ehr_write",
        "workflow": "refill",
        "outcome": outcome,
        "reason": "MedicationRequest/pf-1: HTTP 400",
        "completed_at": at,
        "params": {"draft_id": "refill:draft:r1"},
        **kw,
    }


def test_a_failed_or_refused_signed_write_opens_a_clinician_item_once_per_command():
    assert unwritten_write_item(_result("ok")).work_items == ()
    assert unwritten_write_item(_result("failed", kind="eligibility")).work_items == ()
    for outcome in ("failed", "refused"):
        (item,) = unwritten_write_item(_result(outcome)).work_items
        assert (item["queue"], item["priority"], item["state"]) == ("clinician", "high", "open")
        assert "NOT written to the EHR" in item["title"]
        values = [e.get("value") for e in item["evidence"]]
        assert "cmd-1" in values and "refill:draft:r1" in values and "MedicationRequest/pf-1: HTTP 400" in values
    # answered failed again at the next sync: the same item id (one item, not one per sync)
    again = unwritten_write_item(_result("failed", at=99)).work_items[0]
    assert again["item_id"] == unwritten_write_item(_result("refused")).work_items[0]["item_id"]


def test_the_cmd_results_handler_opens_the_item_once(monkeypatch):
    from practiceflow.streams.workflows import ehr_results

    sent: list[dict] = []

    async def fake_emit(pipeline, outbox, step, **kw):
        sent.extend(step.work_items)
        return len(step.work_items)

    async def no_confirm(self):
        return None

    monkeypatch.setattr(ehr_results, "emit_step", fake_emit)
    monkeypatch.setattr(ehr_results.Outbox, "confirm", no_confirm)
    known: dict[str, dict] = {}
    pipeline = SimpleNamespace(
        work_items=SimpleNamespace(get=known.get),
        sensor=SimpleNamespace(touch=lambda tp: None),
        _count=lambda *a: None,
    )
    handler = ehr_results.EhrWriteResults(pipeline)  # type: ignore[arg-type]

    class Event:  # faust's events are weak-referenced by in_event
        def __init__(self, value):
            self.value, self.message = value, SimpleNamespace(tp=None, partition=0)

    ev = Event

    batch = [ev(_result("ok")), ev(_result("failed")), ev(_result("failed", at=7)), ev(_result("refused", at=8))]
    asyncio.run(handler.handle(batch))
    assert len(sent) == 1
    known[f"p1/{sent[0]['item_id']}"] = {"item": sent[0]}  # the work-items table has it now
    asyncio.run(handler.handle([ev(_result("failed", at=50))]))
    assert len(sent) == 1


def test_the_upgrade_backlog_is_answered_no_ehr_but_opens_no_item():
    """Review s19 S5: on its first start the ``ehr-no-target`` agent read 30 days of signed writes
    and answered each ``no_ehr``, each opening an urgent "enter it by hand" item for renewals
    clinicians had already prescribed by hand. A command issued before the agent's cut-off is
    answered (terminal for ``ehr sync``) but opens no item; a later one still does."""
    from practiceflow.processors.ehr.no_target import BACKLOG_REASON, answer_without_target

    def command(cid: str, issued_at: int) -> dict:
        return {
            "practice_id": "p-s5",
            "command_id": cid,
            "kind": "ehr_write",
            "workflow": "refill",
            "issued_at": issued_at,
            "params": {"draft_id": "d-1"},
            "payload": "{}",
        }

    old = answer_without_target(command("c-old", 1_000), set(), 9_000, since=5_000)
    new = answer_without_target(command("c-new", 6_000), set(), 9_000, since=5_000)
    assert old is not None and new is not None
    assert old["outcome"] == new["outcome"] == "no_ehr"
    assert old["reason"] == BACKLOG_REASON and old["params"]["draft_id"] == "d-1"
    assert unwritten_write_item(old).work_items == ()
    (item,) = unwritten_write_item(new).work_items
    assert item["priority"] == "high" and "no EHR is configured" in item["title"]
