"""The fax step asks the language model (cmd.llm) and takes its answer back as a new item revision (pure)."""

from __future__ import annotations

import json

from practiceflow.processors.base import NormalizeResult
from practiceflow.processors.llm.tasks import ClassificationOutput, ExtractionOutput, LLMRequest, Quote, QuotedField
from practiceflow.processors.llm.validate import checked_result
from practiceflow.processors.workflows.fax.assist import llm_commands, missing_fields, on_llm_result
from practiceflow.processors.workflows.fax.handoffs import fax_handoffs, item_for
from practiceflow.processors.workflows.fax.match import IdentifierOnPage
from practiceflow.processors.workflows.fax.route import classify_fax

CLASSES = (
    "lab_result",
    "referral",
    "prior_auth_response",
    "records_request",
    "refill_request",
    "marketing",
    "cover_sheet",
    "blank_form",
    "other_clinical",
)
RECEIVED = 1_764_000_000_000


class Fixed:
    """A classifier stub: every page gets the same probabilities (so abstaining is certain)."""

    classes = CLASSES
    threshold = 0.6
    model_id = "stub"

    def __init__(self, label: str, p: float) -> None:
        self.row = [(1 - p) / (len(CLASSES) - 1)] * len(CLASSES)
        self.row[CLASSES.index(label)] = p

    def probabilities(self, texts):
        return [list(self.row) for _ in texts]


REFERRAL = (
    "Summit Primary Care\nPlease see the attached note regarding our mutual patient.\n"
    "Patient Name: James Rivera\nDOB: 11/12/1958\nMRN: 771203\n"
    "Reason for Referral: exertional chest pain\n"
)
LAB = (
    "Valley Reference Laboratory\nLABORATORY REPORT\nPatient: Maria Lopez\nMRN: 884512\nGlucose  212  H  mg/dL  70-99\n"
)
LAB_DOB = "born on 04/05/1961"


def _doc(pages: list[str]) -> dict:
    return {
        "practice_id": "demo-clinic",
        "document_id": "cd" * 32,
        "storage_uri": "file:///docs/cd",
        "page_count": len(pages),
        "pages": [{"page": i + 1, "text": t, "confidence": 0.95, "ocr": True} for i, t in enumerate(pages)],
        "fax_from": "(555) 010-2000",
        "source": {"feed": "fax", "message_id": "fax-1", "message_type": "fax", "sent_at": None},
    }


def _classified(doc: dict, clf: Fixed) -> list[dict]:
    return [
        r.value for r in classify_fax(doc, clf, received_at=RECEIVED).records if r.record_type == "FaxClassification"
    ]


def _answer(cmd: dict, output, *, source: str = "model", outcome: str = "ok") -> dict:
    request = LLMRequest.model_validate_json(cmd["payload"])
    result = checked_result(request, output, source=source, model="m-1", prompt=f"{request.task}/v1")  # type: ignore[arg-type]
    if source != "model":
        result.needs_person = True
        result.reasons = ["fallback:llm_unreachable", *result.reasons]
    return {
        "practice_id": cmd["practice_id"],
        "command_id": cmd["command_id"],
        "kind": "llm",
        "workflow": "fax",
        "outcome": outcome,
        "reason": None,
        "payload_type": "llm.result",
        "payload": result.model_dump_json(),
        "completed_at": RECEIVED + 5_000,
        "params": cmd["params"],
    }


def test_an_abstained_page_asks_the_model_once_and_its_label_reroutes_the_item() -> None:
    doc = _doc([REFERRAL])
    (v,) = _classified(doc, Fixed("other_clinical", 0.3))
    assert v["abstained"] and v["queue"] == "triage"
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    assert cmd["kind"] == "llm" and json.loads(cmd["payload"])["task"] == "fax_classify"
    assert llm_commands(doc, [v], now=RECEIVED + 99)[0]["command_id"] == cmd["command_id"]  # a replay: same key
    assert "James Rivera" not in cmd["command_id"] and cmd["item_id"] == item_for(v, RECEIVED)["item_id"]
    # the item is routed at once (to triage) and says it asked
    records = classify_fax(doc, Fixed("other_clinical", 0.3), received_at=RECEIVED).records
    from practiceflow.processors.base import Normalized

    records.append(Normalized("WorkflowCommand", "k", cmd))
    (item,) = [i.value for i in fax_handoffs(NormalizeResult("f", "fax", records=records), "demo-clinic", 1)]
    assert item["queue"] == "triage" and any("language model" in a for a in item["actions_taken"])

    out = ClassificationOutput(label="referral", confidence=0.93, evidence=[Quote(text="Reason for Referral", page=1)])
    rev = on_llm_result(
        json.loads(cmd["params"]["classification"]),
        _answer(cmd, out),
        IdentifierOnPage(),
        revision=2,
        now=RECEIVED + 5_000,
    )
    assert rev.changed and rev.classification["doc_class"] == "referral" and not rev.classification["abstained"]
    assert rev.item is not None and rev.item["revision"] == 2 and rev.item["item_id"] != ""
    assert rev.item["queue"] == "referrals" and rev.item["patient_id"] == "771203"
    # a referral is its own kind of item: the triage item is closed and points at it
    assert rev.superseded is not None and rev.superseded["state"] == "superseded"
    assert rev.item["supersedes"] == rev.superseded["item_id"] == item["item_id"]
    ev = next(e for e in rev.item["evidence"] if e["label"] == "class_evidence")
    assert ev["page"] == 1 and REFERRAL[ev["span_start"] : ev["span_end"]] == "Reason for Referral"


def test_missing_fields_are_asked_for_and_the_models_values_point_at_page_and_span() -> None:
    doc = _doc([LAB + LAB_DOB + "\n"])
    (v,) = _classified(doc, Fixed("lab_result", 0.95))
    assert "dob" in missing_fields(v) and v["queue"] == "clinician"
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    req = json.loads(cmd["payload"])
    assert req["task"] == "fax_extract" and "dob" in req["fields"] and "mrn" not in req["fields"]
    out = ExtractionOutput(fields=[QuotedField(name="dob", text="04/05/1961", page=1)])
    rev = on_llm_result(v, _answer(cmd, out), IdentifierOnPage(), revision=2, now=RECEIVED + 5_000)
    dob = next(e for e in rev.classification["extracted"] if e["field"] == "dob")
    page = doc["pages"][0]["text"]
    assert dob["source"] == "llm" and page[dob["start"] : dob["end"]] == "04/05/1961" and dob["page"] == 1
    assert rev.item is not None and rev.item["queue"] == "clinician" and rev.item["revision"] == 2
    ev = next(e for e in rev.item["evidence"] if e["label"] == "dob")
    assert ev["page"] == 1 and ev["assessment"] == "read by llm"


def test_a_span_check_failure_goes_to_a_person_and_keeps_the_fax() -> None:
    doc = _doc([LAB + LAB_DOB + "\n"])
    (v,) = _classified(doc, Fixed("lab_result", 0.95))
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    out = ExtractionOutput(fields=[QuotedField(name="dob", text="1961-04-05", page=1)])  # "corrected": not on the page
    rev = on_llm_result(v, _answer(cmd, out), IdentifierOnPage(), revision=2, now=RECEIVED + 5_000)
    assert rev.item is not None and rev.item["queue"] == "triage"
    assert rev.classification["routing_reason"] == "llm_span_check_failed"
    assert not any(e["field"] == "dob" for e in rev.classification["extracted"])
    assert rev.classification["document_id"] == v["document_id"] and rev.classification["storage_uri"]


def test_an_outage_answered_by_the_fallback_goes_to_a_person() -> None:
    doc = _doc([LAB + LAB_DOB + "\n"])
    (v,) = _classified(doc, Fixed("lab_result", 0.95))
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    rev = on_llm_result(
        v, _answer(cmd, ExtractionOutput(fields=[]), source="fallback"), IdentifierOnPage(), revision=2, now=1
    )
    assert rev.item is not None and rev.item["queue"] == "triage" and rev.audit.outcome == "needs_person"
    assert rev.classification["routing_reason"] == "llm_unavailable"


def test_nothing_is_asked_when_the_rules_found_everything_or_the_fax_is_not_ours() -> None:
    full = "LABORATORY REPORT\nPatient: Maria Lopez\nDOB: 04/05/1961\nMRN: 884512\nGlucose  212  H  mg/dL  70-99\n"
    doc = _doc([full])
    (v,) = _classified(doc, Fixed("lab_result", 0.95))
    assert missing_fields(v) == [] and llm_commands(doc, [v], now=RECEIVED) == []
    v2 = dict(v, misdirected=True, queue="misdirected")
    doc2 = _doc([LAB])
    assert llm_commands(doc2, [v2], now=RECEIVED) == []


def test_a_label_below_llm_fax_min_confidence_leaves_the_page_abstained_in_triage() -> None:
    """Review s18 S18: the model's label replaced the abstained classification whatever its confidence;
    a prior_auth_response label then moved an authorization with no threshold and no person."""
    doc = _doc([REFERRAL])
    (v,) = _classified(doc, Fixed("other_clinical", 0.3))
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    out = ClassificationOutput(label="referral", confidence=0.55, evidence=[Quote(text="Reason for Referral", page=1)])
    base = json.loads(cmd["params"]["classification"])
    rev = on_llm_result(base, _answer(cmd, out), IdentifierOnPage(), revision=2, now=RECEIVED + 5_000)
    c = rev.classification
    assert c["abstained"] and c["doc_class"] == "other_clinical" and c["confidence"] == v["confidence"]
    assert c["queue"] == "triage" and c["routing_reason"] == "llm_low_confidence"
    assert rev.item is not None and rev.item["queue"] == "triage" and "below 0.8" in rev.item["what_happened"]
    assert rev.audit.outcome == "needs_person"
    # the practice's own threshold (llm.fax_min_confidence) lets it count
    rev = on_llm_result(
        base, _answer(cmd, out), IdentifierOnPage(), revision=2, now=RECEIVED + 5_000, min_confidence=0.5
    )
    assert rev.classification["doc_class"] == "referral" and not rev.classification["abstained"]


def test_the_revised_classification_keeps_the_first_records_key() -> None:
    """Review s18 N8: the revision was keyed with the patient the model's answer matched, so the
    compacted topic (and ClickHouse) kept two records for one document."""
    from practiceflow.processors.base import entity_key

    doc = _doc([REFERRAL])
    (v,) = _classified(doc, Fixed("marketing", 0.3))  # abstained on a class that needs no patient
    assert v["patient_id"] is None
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    out = ClassificationOutput(label="referral", confidence=0.93, evidence=[Quote(text="Reason for Referral", page=1)])
    rev = on_llm_result(
        json.loads(cmd["params"]["classification"]),
        _answer(cmd, out),
        IdentifierOnPage(),
        revision=2,
        now=RECEIVED + 5_000,
    )
    assert rev.classification["patient_id"] == "771203"  # the model's answer found the chart
    first = entity_key("demo-clinic", None, v["classification_id"])
    assert rev.key == first
    # a second answer building on the revision keeps it too
    again = on_llm_result(rev.classification, _answer(cmd, out), IdentifierOnPage(), revision=3, now=RECEIVED + 6_000)
    assert again.key == first


REFILL = (
    "CVS Pharmacy #4417\nREFILL AUTHORIZATION REQUEST\nTo: Dr. Ana Patel   Demo Family Clinic\n"
    "Patient: Maria Lopez\nDOB: 04/05/1961\nDrug: atorvastatin 40 mg tablet\nQty: 90\n"
)


def test_a_refill_request_sorted_by_the_model_is_handed_to_refill_triage_not_fax_triage() -> None:
    from practiceflow.processors.context.snapshot import empty
    from practiceflow.processors.workflows.fax.match import Directory, DirectoryEntry
    from practiceflow.processors.workflows.refill.rules import load_refill_rules
    from practiceflow.processors.workflows.refill.step import refill_step

    directory = Directory({"demo-clinic": [DirectoryEntry("MRN-1", "Maria Lopez", "1961-04-05")]})
    doc = _doc([REFILL])
    # the classifier leans refill but is unsure: the page abstains, its rules still read the drug
    (v,) = [
        r.value
        for r in classify_fax(doc, Fixed("refill_request", 0.5), matcher=directory, received_at=RECEIVED).records
        if r.record_type == "FaxClassification"
    ]
    assert v["abstained"] and v["queue"] == "triage" and v["patient_match"] == "matched"
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    out = ClassificationOutput(label="refill_request", confidence=0.9, evidence=[Quote(text="REFILL", page=1)])
    rev = on_llm_result(v, _answer(cmd, out), directory, revision=2, now=RECEIVED + 5_000)
    assert rev.classification["queue"] == "refill_triage" and rev.classification["doc_class"] == "refill_request"
    assert rev.item is None and rev.refill is not None  # the old code: queue triage, reason refill_after_llm
    req = rev.refill.value
    assert rev.refill.record_type == "RefillRequest" and req["patient_id"] == "MRN-1"
    assert req["medication"] == "atorvastatin 40 mg tablet" and req["pharmacy"] == "CVS Pharmacy #4417"
    assert req["submitted_at"] == RECEIVED and req["source"]["feed"] == "fax"  # dated by the fax, not the answer
    # the fax's triage item is closed and points at the item refill triage makes for the request
    assert rev.superseded is not None and rev.superseded["state"] == "superseded" and rev.superseded["revision"] == 2
    ctx = empty("demo-clinic", "MRN-1")
    (item,) = refill_step(ctx, req, load_refill_rules(None), RECEIVED).work_items
    assert rev.superseded["outcome"] == f"superseded by {item['item_id']}"
    assert item["queue"] == "clinician" and item["what_happened"].startswith("Faxed refill request")


def test_a_model_sorted_refill_with_no_chart_match_stays_with_a_person() -> None:
    doc = _doc([REFILL])
    (v,) = _classified(doc, Fixed("refill_request", 0.5))  # IdentifierOnPage: no MRN on the page -> none
    (cmd,) = llm_commands(doc, [v], now=RECEIVED)
    out = ClassificationOutput(label="refill_request", confidence=0.9, evidence=[Quote(text="REFILL", page=1)])
    rev = on_llm_result(v, _answer(cmd, out), IdentifierOnPage(), revision=2, now=RECEIVED + 5_000)
    assert rev.refill is None and rev.item is not None
    assert rev.item["queue"] == "triage" and rev.classification["routing_reason"] == "patient_no_match"


def test_a_strength_read_apart_from_the_drug_reaches_refill_triage() -> None:
    from practiceflow.processors.workflows.fax.extract import Extracted
    from practiceflow.processors.workflows.fax.route import refill_request_record

    v = {"practice_id": "p", "classification_id": "c-0", "patient_id": "MRN-1", "pages": [1]}
    found = [Extracted("drug", "lisinopril", 1, 0, 10, "llm"), Extracted("strength", "20 mg", 1, 11, 16, "llm")]
    req = refill_request_record(v, found, {"feed": "fax"}, RECEIVED).value
    assert req["medication"] == "lisinopril 20 mg"  # the old code: "lisinopril" (triage saw no strength)
    found = [Extracted("drug", "lisinopril 20mg tab", 1, 0, 19), Extracted("strength", "20 mg", 1, 11, 15)]
    assert refill_request_record(v, found, {"feed": "fax"}, RECEIVED).value["medication"] == "lisinopril 20mg tab"
