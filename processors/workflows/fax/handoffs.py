"""Work items for faxed documents, built from their ``FaxClassification`` records (pure).

A rule of :func:`practiceflow.processors.dispatch.handoffs_for`: the fax step writes one
classification per document of a transmission, and this turns each into at most one work
item in its queue, with every extracted value as evidence pointing at its page and span.
No item for what needs no person: marketing (filed), a complete cover sheet (part of the
packet), a refill request (refill triage makes its own item from the ``RefillRequest``).

Titles carry no PHI (they reach the analytics store): class, page numbers, the sender's
fax number for a misdirected fax; names and dates of birth stay in the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, entity_key
from practiceflow.processors.workflows.referral import referral_item
from practiceflow.processors.workflows.workitem import by_model, evidence, new_item, option

__all__ = ["fax_handoffs", "item_for"]

WORKFLOW = "fax"
_NO_ITEM = frozenset({"refill_triage", "filed", "none"})
_LABELS = {
    "lab_result": "lab result",
    "referral": "referral",
    "prior_auth_response": "prior-auth response",
    "records_request": "records request",
    "refill_request": "refill request",
    "marketing": "marketing",
    "cover_sheet": "cover sheet",
    "blank_form": "blank form",
    "other_clinical": "clinical document",
}


def _pages(v: Mapping[str, Any]) -> str:
    pages = list(v.get("pages") or [])
    if not pages:
        return "no pages"
    return f"page {pages[0]}" if len(pages) == 1 else f"pages {pages[0]}-{pages[-1]}"


def _options(queue: str, v: Mapping[str, Any]) -> list[Any]:
    if queue == "triage":
        opts = [
            option("pick", f"it is a {_LABELS.get(g['label'], g['label'])}", target=g["label"]) for g in v["guesses"]
        ]
        return [*opts, option("escalate", "hand to someone else")]
    if queue == "misdirected":
        return [option("reply", "reply 'wrong recipient' to the sender"), option("file", "file without reply")]
    if queue == "clinician":
        return [option("acknowledge", "reviewed"), option("escalate", "needs another clinician")]
    if queue == "referrals":
        return [option("assign", "take the referral"), option("acknowledge", "scheduled")]
    if queue == "records":
        return [option("reply", "send the records"), option("file", "file to the chart")]
    return [option("file", "file"), option("acknowledge", "done")]


def item_for(v: Mapping[str, Any], created_at: int) -> Any | None:
    """The work item for one classification, or None when no person is needed."""
    queue = v["queue"]
    if queue in _NO_ITEM:
        return None
    label = _LABELS.get(v["doc_class"], v["doc_class"])
    where = _pages(v)
    reason = v.get("routing_reason") or ""
    if queue == "misdirected":
        sender = v.get("fax_from") or v.get("sender_fax") or "unknown number"
        title = f"Misdirected fax ({label}, {where}): reply to sender {sender}"
        decision: str | None = "Tell the sender the fax reached the wrong practice."
        kind = "fax.misdirected"
    elif queue == "triage":
        top: dict[str, Any] = v["guesses"][0] if v.get("guesses") else {"label": "?", "probability": 0.0}
        why = {
            "low_confidence": "the classifier is not sure",
            "ocr_needs_human_read": "the page could not be read reliably",
            "pages_missing": f"the cover sheet announced {v.get('pages_announced')} pages, {v.get('pages_received')} arrived",
            "patient_no_match": "no chart matches the patient on it",
            "patient_ambiguous": "several charts could match the patient",
            "patient_unverified": "the patient id on the page was not checked against a chart",
            "llm_unavailable": "the language model was unavailable (the embedded fallback read what it could)",
            "llm_no_answer": "the language model gave no answer",
            "llm_low_confidence": "the language model is not sure either (below llm.fax_min_confidence)",
            "llm_span_check_failed": "a value the language model quoted is not on the page",
            "llm_unsupported": "the language model's answer is not supported by the page",
            "refill_after_llm": "a refill request identified by the language model: hand it to refill triage",
            "llm_cover_sheet": "the language model says these pages are a cover sheet",
        }.get(reason, reason)
        title = (
            f"Sort fax {where}: {why} (best guess {_LABELS.get(top['label'], top['label'])} {top['probability']:.0%})"
        )
        decision = (
            "Say what this document is and whose chart it belongs to."
            if reason != "pages_missing"
            else ("Ask the sender to resend the missing pages.")
        )
        kind = "fax.triage"
    else:
        title = f"Faxed {label} ({where})"
        if v.get("kind") and v["kind"] != v["doc_class"]:
            title += f": {v['kind']}"
        decision = {
            "clinician": "Review the result.",
            "referrals": "Schedule the referred patient.",
            "billing": "Update the authorization or the account.",
            "records": "Send or file the records.",
            "front_desk": "File or hand out the form.",
        }.get(queue)
        kind = f"fax.{v['doc_class']}"
    if v.get("missing_pages") and queue != "triage":
        title += " (pages missing from the transmission)"
    ev: list[Any] = [
        evidence(
            e["field"],
            value=e["value"],
            document_uri=v.get("storage_uri"),
            page=e["page"],
            span=(e["start"], e["end"]),
            record_type="FaxClassification",
            record_key=v["classification_id"],
            assessment=None if e.get("source") in (None, "rules") else f"read by {e['source']}",
        )
        for e in v.get("extracted") or []
    ]
    ev += [
        evidence("guess", value=g["label"], assessment=f"{g['probability']:.3f}", record_type="FaxClassification")
        for g in v.get("guesses") or []
    ]
    what = (
        f"A fax from {v.get('fax_from') or 'an unknown number'} ({v.get('pages_received')} pages) held a {label} on "
        f"{where}; the classifier said {v['doc_class']} with probability {v['confidence']:.2f}"
        f"{' (below its threshold)' if v.get('abstained') else ''}; patient match: {v['patient_match']}."
    )
    produced_by = by_model("fax-classifier", v.get("model_id") or None, None, float(v["confidence"]))
    actions = [f"classified as {v['doc_class']}", f"routed to {queue} ({reason})"]
    if queue == "referrals":  # the same item an HL7 REF^I12 becomes
        return referral_item(
            practice_id=v["practice_id"],
            subject=("fax", v["classification_id"]),
            patient_id=v.get("patient_id"),
            title=title,
            what_happened=what,
            source=dict(v["source"]),
            evidence_=ev,
            now=created_at,
            priority=v.get("priority") or "routine",
            produced_by=produced_by,
            subject_type="FaxClassification",
            subject_id=v["classification_id"],
            actions_taken=actions,
        )
    return new_item(
        practice_id=v["practice_id"],
        workflow=WORKFLOW,
        subject=(v["classification_id"],),
        kind=kind,
        queue=queue,
        title=title,
        what_happened=what,
        produced_by=produced_by,
        source=dict(v["source"]),  # type: ignore[arg-type]
        now=created_at,
        priority=v.get("priority") or "routine",
        patient_id=v.get("patient_id"),
        subject_type="FaxClassification",
        subject_id=v["classification_id"],
        decision_needed=decision,
        actions_taken=actions,
        evidence=ev,
        options=_options(queue, v),
    )


def fax_handoffs(result: NormalizeResult, practice_id: str, created_at: int) -> list[Normalized]:
    """One item per FaxClassification record of ``result`` that needs a person."""
    out: list[Normalized] = []
    asked = {  # documents the fax step asked the language model about (processors/workflows/fax/assist.py)
        r.value["params"].get("classification_id"): r.value["params"].get("task", "")
        for r in result.records
        if r.record_type == "WorkflowCommand" and r.value.get("kind") == "llm"
    }
    for rec in result.records:
        if rec.record_type != "FaxClassification":
            continue
        item = item_for(rec.value, created_at)
        if item is not None:
            task = asked.get(rec.value["classification_id"])
            if task:
                what = "classify the pages" if task == "fax_classify" else "read the fields the rules missed"
                item["actions_taken"] = [*item["actions_taken"], f"asked the practice's language model to {what}"]
            out.append(Normalized("HandoffItem", entity_key(practice_id, item["item_id"]), dict(item)))
    return out
