"""Review s20 M2: on an EHR that drops MedicationRequest ``note``, adds its own fields and has no
``_history`` (405), a signed renewal that WAS written but whose answer was lost was answered
``refused`` ("NOT written: prescribe it by hand") while the active order is in the EHR: a double
prescription. Pure: a fake FhirClient shaped like such a vendor EHR, no server."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from practiceflow.processors.ehr.tasks import draft_target
from practiceflow.processors.ehr.unwritten import unwritten_write_item
from practiceflow.sinks.ehr_fhir import FhirError
from practiceflow.streams.commands.ehr_write import write_back

PRACTICE = "p-s20m2"


class VendorEhr:
    """Drops ``note`` on write, adds ``authoredOn`` to an active order, answers ``_history`` 405."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.puts = 0

    def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        found = self.store.get((rtype, rid))
        return copy.deepcopy(found) if found else None

    def put(self, resource: dict[str, Any], if_match: str | None = None) -> str:
        key = (resource["resourceType"], resource["id"])
        current = self.store.get(key)
        version = int(current["meta"]["versionId"]) + 1 if current else 1
        stored = {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("note", "meta")}
        stored["meta"] = {"versionId": str(version)}
        if stored.get("status") == "active":
            stored.setdefault("authoredOn", "2026-12-02")
        self.store[key] = stored
        self.puts += 1
        return str(version)

    def staff_sets(self, rtype: str, rid: str, **fields: Any) -> None:
        """A change made in the EHR's own screens (not counted as our PUT)."""
        current = self.store[(rtype, rid)]
        current.update(fields)
        current["meta"] = {"versionId": str(int(current["meta"]["versionId"]) + 1)}

    def search(self, rtype: str, params: Any) -> Iterator[dict[str, Any]]:
        return iter(())

    def history(self, rtype: str, rid: str) -> Iterator[dict[str, Any]]:
        raise FhirError(405, f"history {rtype}", "not supported")


def _draft(draft_id: str) -> dict[str, Any]:
    body = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "atorvastatin 20 mg tablet"},
        "subject": {"identifier": {"system": f"urn:practiceflow:{PRACTICE}:patient", "value": "MRN-1"}},
        "dispenseRequest": {"quantity": {"value": 90.0}},
    }
    return {
        "practice_id": PRACTICE,
        "draft_id": draft_id,
        "item_id": "",
        "workflow": "refill",
        "kind": "fhir.MedicationRequest",
        "content_type": "application/fhir+json",
        "body": json.dumps(body),
        "created_at": 1,
    }


def _cmd(command_id: str, draft_id: str) -> dict[str, Any]:
    payload = {"draft_id": draft_id, "signed_by": "dr.a", "signed_at": 5_000, "option": "approve"}
    return {"practice_id": PRACTICE, "command_id": command_id, "workflow": "refill", "payload": json.dumps(payload)}


def _target(draft_id: str) -> tuple[str, str]:
    target = draft_target(PRACTICE, draft_id, "fhir.MedicationRequest")
    assert target is not None
    return target


def test_a_written_renewal_whose_answer_was_lost_is_answered_ok_on_a_vendor_ehr() -> None:
    ehr, draft = VendorEhr(), _draft("d-lost")
    cmd = _cmd("cmd-lost", "d-lost")
    first = write_back(PRACTICE, {}, {"d-lost": draft}, [cmd], ehr)  # its answer is lost: the sync died
    assert first.signed_written == 1
    rtype, rid = _target("d-lost")
    assert ehr.read(rtype, rid)["status"] == "active"  # type: ignore[index]
    puts = ehr.puts
    again = write_back(PRACTICE, {}, {"d-lost": draft}, [cmd], ehr)
    assert [(a["command_id"], a["outcome"]) for a in again.answered] == [("cmd-lost", "ok")]
    assert (again.signed_unanswered, again.signed_refused, again.signed_unproven) == (1, 0, 0)
    assert ehr.puts == puts  # not written twice
    assert unwritten_write_item(again.answered[0]).work_items == ()  # no "prescribe it by hand"


@pytest.mark.parametrize("staff_status", ["cancelled", "entered-in-error"])
def test_a_draft_cancelled_in_the_ehr_before_signing_is_still_refused(staff_status: str) -> None:
    """Review s20 M1 stays fixed without a history: the draft was withdrawn, nothing was written."""
    ehr, draft = VendorEhr(), _draft("d-cancel")
    assert write_back(PRACTICE, {}, {"d-cancel": draft}, [], ehr).drafts_written == 1
    rtype, rid = _target("d-cancel")
    ehr.staff_sets(rtype, rid, status=staff_status)
    puts = ehr.puts
    report = write_back(PRACTICE, {}, {"d-cancel": draft}, [_cmd("cmd-cancel", "d-cancel")], ehr)
    assert [a["outcome"] for a in report.answered] == ["refused"] and report.signed_refused == 1
    assert ehr.puts == puts and ehr.read(rtype, rid)["status"] == staff_status  # type: ignore[index]
    (item,) = unwritten_write_item(report.answered[0]).work_items
    assert item["title"] == "Signed renewal NOT written to the EHR: prescribe it by hand"


def test_an_unproven_signed_write_is_answered_unknown_and_never_says_prescribe_it_by_hand() -> None:
    """Written, then stopped in the EHR (which dropped our note), and the answer lost: nothing on the
    server tells "ours, then stopped" from "staff acted on the draft". Neither ok nor refused."""
    ehr, draft = VendorEhr(), _draft("d-stop")
    cmd = _cmd("cmd-stop", "d-stop")
    assert write_back(PRACTICE, {}, {"d-stop": draft}, [cmd], ehr).signed_written == 1  # answer lost
    rtype, rid = _target("d-stop")
    ehr.staff_sets(rtype, rid, status="stopped")
    puts = ehr.puts
    report = write_back(PRACTICE, {}, {"d-stop": draft}, [cmd], ehr)
    assert [a["outcome"] for a in report.answered] == ["unknown"]
    assert (report.signed_unproven, report.signed_refused, report.signed_unanswered) == (1, 0, 0)
    assert "could not tell" in report.answered[0]["reason"] and "405" in report.answered[0]["reason"]
    assert ehr.puts == puts and ehr.read(rtype, rid)["status"] == "stopped"  # type: ignore[index]
    (item,) = unwritten_write_item(report.answered[0]).work_items
    assert item["queue"] == "clinician" and item["priority"] == "high"
    assert "prescribe it by hand" not in item["title"]
    assert item["title"] == (
        "Signed renewal: could not tell whether it reached the EHR - check for an active order before prescribing"
    )
    # review s20 N6: a stopped copy means staff discontinued it; the item never tells the clinician to
    # prescribe it again because no *active* order is there
    assert "Stopped, completed, on hold or cancelled there" in item["decision_needed"]
    assert "do not prescribe it again" in item["decision_needed"]
    # terminal like every answer: never written or answered again
    later = write_back(PRACTICE, {}, {"d-stop": draft}, [cmd], ehr, answered={"cmd-stop": "unknown"})
    assert later.answered == [] and later.signed_held == 1 and ehr.puts == puts
