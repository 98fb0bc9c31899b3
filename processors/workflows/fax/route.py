"""The fax step: a normalized fax Document -> per-document classifications, routing and hand-offs.

Pure: (document, classifier, extractor, matcher, roster) -> :class:`FaxOutcome`; no clock
(times come from the document's source), no I/O. The worker calls it right after OCR
(``streams/workflows/fax.py``), so the classifications and the refill requests travel in
the same batch as the Document and share its exactly-once commit; the work items are
built from the classifications by :func:`fax_handoffs`, a rule of
``processors/dispatch.handoffs_for`` like results review.

Routing (``ROUTING_RULE`` names the rule and its version in every item):

* not for us (the addressee is a provider or practice that is not on the roster) ->
  ``misdirected`` with the sender's fax number, for a "wrong recipient" reply;
* the model abstained (calibrated confidence below its threshold) or the page text is
  not trustworthy (OCR flagged ``needs_human_read``) -> ``triage`` with the top 3 guesses;
* marketing -> filed (a classification row, the Document kept; no work item);
* a cover sheet -> part of the packet; when it announces more pages than arrived, a
  ``triage`` item asks for a resend (every document of the packet says ``missing_pages``);
* a document that concerns a patient but matches no chart, or several -> ``triage``;
* otherwise by class: lab results -> ``clinician`` (high priority when a value is
  flagged), referrals -> ``referrals``, PA responses -> ``billing`` (the prior-auth
  workflow picks them up), records requests -> ``records``, insurance correspondence
  and blank forms -> ``billing`` / ``front_desk``, other clinical documents -> ``records``
  to file, refill requests -> a ``RefillRequest`` record for refill triage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from practiceflow.processors.base import Normalized, entity_key
from practiceflow.processors.workflows.workitem import item_id_for

from .extract import Extracted, Extractor, RuleExtractor, first, values
from .match import IdentifierOnPage, Matcher, PatientMatch
from .split import PageVerdict, Segment, announced_pages, split_pages

__all__ = [
    "Classifier",
    "Roster",
    "FaxOutcome",
    "classify_fax",
    "decide_route",
    "ROUTING_RULE",
    "QUEUE_BY_CLASS",
    "PATIENT_CLASSES",
    "refill_request_record",
    "refill_item_id",
]

ROUTING_RULE = ("fax.routing", "1")
QUEUE_BY_CLASS: dict[str, str] = {
    "lab_result": "clinician",
    "referral": "referrals",
    "prior_auth_response": "billing",
    "records_request": "records",
    "refill_request": "refill_triage",
    "marketing": "filed",
    "cover_sheet": "none",
    "blank_form": "front_desk",
    "other_clinical": "records",
}
#: classes whose document concerns one patient's chart (a match is needed to route)
PATIENT_CLASSES = frozenset(
    {"lab_result", "referral", "prior_auth_response", "records_request", "refill_request", "other_clinical"}
)
_INSURANCE = re.compile(r"(?i)\b(explanation of benefits|eligibility|coverage status|claim number|remark code)\b")


class Classifier(Protocol):
    classes: tuple[str, ...]
    threshold: float

    @property
    def model_id(self) -> str: ...

    def probabilities(self, texts: Sequence[str]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Roster:
    """Who this practice is: its names and its providers (settings ``fax_roster``)."""

    practice_names: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.practice_names or self.providers)

    def mentions_us(self, text: str) -> bool:
        low = text.lower()
        if any(n.lower() in low for n in self.practice_names if n):
            return True
        return any(_surname(p) and re.search(rf"\b{re.escape(_surname(p))}\b", low) for p in self.providers)


def _surname(name: str) -> str:
    parts = re.sub(r"(?i)\b(dr|md|do|np|pa|rn)\b\.?", " ", name).replace(",", " ").split()
    return parts[-1].lower() if parts else ""


@dataclass
class FaxOutcome:
    """What one fax became: a classification record per document, refill requests, counters."""

    records: list[Normalized] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    page_labels: list[str] = field(default_factory=list)
    page_confidences: list[float] = field(default_factory=list)
    abstained_pages: int = 0


def _classification_id(document_id: str, index: int) -> str:
    return f"{document_id[:32]}-{index}"


def _misdirected(addressee: Extracted | None, text: str, roster: Roster) -> bool:
    """Addressed to someone, and neither the addressee line nor the document names us."""
    if not roster.known or addressee is None:
        return False
    if roster.mentions_us(addressee.value) or roster.mentions_us(text):
        return False
    # only a named person or organisation counts ("To: Medical Records" names nobody)
    return bool(
        re.search(
            r"(?i)\bdr\.?\s+[A-Z]|\b(clinic|medical|health|hospital|practice|associates|group|center)\b",
            addressee.value,
        )
    )


def _fine_kind(doc_class: str, found: Sequence[Extracted], text: str) -> str:
    if doc_class == "prior_auth_response":
        d = first(found, "decision")
        return f"pa.{d.value if d else 'unknown'}"
    if doc_class == "records_request":
        d = first(found, "direction")
        return f"records.{d.value if d else 'requested_from_us'}"
    if doc_class == "lab_result":
        return "lab.abnormal" if values(found, "abnormal") else "lab.result"
    if doc_class == "other_clinical" and _INSURANCE.search(text):
        return "insurance.correspondence"
    return doc_class


def decide_route(
    *,
    doc_class: str,
    kind: str,
    misdirected: bool,
    low_confidence: bool,
    unread: bool,
    confidence: float,
    missing_pages: bool,
    match_status: str,
) -> tuple[str, str, str]:
    """(queue, routing reason, priority) of one document: the routing rules of the module doc.

    A function of its own because a document is routed again when the practice's language
    model answers for it (``processors/workflows/fax/assist.py``): same rules, new facts."""
    if misdirected:
        return "misdirected", "misdirected", "routine"
    if low_confidence or (unread and confidence < 0.9):
        return "triage", "low_confidence" if low_confidence else "ocr_needs_human_read", "routine"
    if doc_class == "cover_sheet":
        return ("triage", "pages_missing", "high") if missing_pages else ("none", "cover_sheet", "routine")
    if doc_class in PATIENT_CLASSES and match_status in ("none", "ambiguous"):
        return "triage", f"patient_{'no_match' if match_status == 'none' else 'ambiguous'}", "routine"
    if QUEUE_BY_CLASS[doc_class] == "refill_triage" and match_status != "matched":
        return "triage", "patient_unverified", "routine"
    queue = "billing" if kind == "insurance.correspondence" else QUEUE_BY_CLASS[doc_class]
    high = kind == "lab.abnormal" or kind in ("pa.denied", "pa.more_info")
    return queue, "by_class", "high" if high else "routine"


def classify_fax(
    document: Mapping[str, Any],
    classifier: Classifier,
    *,
    extractor: Extractor | None = None,
    matcher: Matcher | None = None,
    roster: Roster | None = None,
    received_at: int | None = None,
) -> FaxOutcome:
    """Classify every page of a fax Document, split it, extract, match and route each document.

    ``received_at`` (epoch ms, the gateway's receive time) dates a faxed refill request: the
    refill step judges visit and lab windows as of that day, so it must never be 0 (1970).
    A refill request is handed to refill triage only when the patient was ``matched`` to a
    chart; an ``unverified`` id (an MRN read off the page, never checked) goes to fax triage,
    because one misread digit would otherwise triage the request against another chart."""
    extractor = extractor or RuleExtractor()
    matcher = matcher or IdentifierOnPage()
    roster = roster or Roster()
    practice = document["practice_id"]
    pages = list(document.get("pages") or [])
    texts = [p.get("text") or "" for p in pages]
    numbers = [int(p.get("page") or i + 1) for i, p in enumerate(pages)]
    unreadable = {int(p.get("page") or i + 1) for i, p in enumerate(pages) if p.get("needs_human_read")}
    outcome = FaxOutcome()
    if not pages:
        return outcome
    classes = tuple(classifier.classes)
    probs = classifier.probabilities(texts)
    verdicts = []
    for no, text, row in zip(numbers, texts, probs, strict=True):
        row_t = tuple(float(x) for x in row)
        conf = max(row_t)
        abstained = not text.strip() or conf < classifier.threshold
        verdicts.append(PageVerdict(no, text, row_t, abstained))
        outcome.page_labels.append("?" if abstained else classes[row_t.index(conf)])
        outcome.page_confidences.append(0.0 if not text.strip() else conf)
        outcome.abstained_pages += abstained
    segments = split_pages(verdicts, classes)
    outcome.segments = segments
    announced = None
    for seg in segments:
        if seg.doc_class == "cover_sheet":
            announced = announced_pages(texts[numbers.index(seg.pages[0])])
            break
    received = int(document.get("page_count") or len(pages))
    missing = announced is not None and announced > received
    text_of = dict(zip(numbers, texts, strict=True))
    source = dict(document.get("source") or {})
    fax_from = document.get("fax_from")
    for seg in segments:
        seg_texts = [text_of[n] for n in seg.pages]
        found = extractor.extract(seg.doc_class, seg_texts, seg.pages)
        joined = "\n".join(seg_texts)
        kind = _fine_kind(seg.doc_class, found, joined)
        low_conf = seg.confidence < classifier.threshold
        unread = any(n in unreadable for n in seg.pages)
        name, dob = first(found, "patient_name"), first(found, "dob")
        mrn, member = first(found, "mrn"), first(found, "member_id")
        needs_patient = seg.doc_class in PATIENT_CLASSES
        match = (
            matcher.match(
                practice,
                name.value if name else None,
                dob.value if dob else None,
                mrn.value if mrn else None,
                member.value if member else None,
            )
            if needs_patient
            else PatientMatch("not_needed")
        )
        addressee = first(found, "addressee")
        sender_fax = first(found, "sender_fax")
        misdirected = seg.doc_class not in ("marketing", "blank_form") and _misdirected(addressee, joined, roster)
        queue, reason, priority = decide_route(
            doc_class=seg.doc_class,
            kind=kind,
            misdirected=misdirected,
            low_confidence=low_conf,
            unread=unread,
            confidence=seg.confidence,
            missing_pages=missing,
            match_status=match.status,
        )
        cid = _classification_id(str(document["document_id"]), seg.index)
        patient_id = match.patient_id if match.status in ("matched", "unverified") else None
        value = {
            "practice_id": practice,
            "classification_id": cid,
            "document_id": document["document_id"],
            "storage_uri": document.get("storage_uri"),
            "segment_index": seg.index,
            "pages": list(seg.pages),
            "page_labels": list(seg.page_labels),
            "doc_class": seg.doc_class,
            "kind": kind,
            "confidence": seg.confidence,
            "abstained": low_conf,
            "guesses": [{"label": lab, "probability": p} for lab, p in seg.guesses],
            "queue": queue,
            "priority": priority,
            "routing_reason": reason,
            "patient_match": match.status,
            "patient_id": patient_id,
            "match_candidates": list(match.candidates),
            "misdirected": misdirected,
            "pages_announced": announced,
            "pages_received": received,
            "missing_pages": missing,
            "fax_from": fax_from,
            "sender_fax": sender_fax.value if sender_fax else None,
            "extracted": [
                {"field": e.field, "value": e.value, "page": e.page, "start": e.start, "end": e.end, "source": e.source}
                for e in found
            ],
            "model_id": classifier.model_id,
            "extractor": extractor.name,
            "needs_human_read": unread,
            "source": source,
        }
        outcome.records.append(Normalized("FaxClassification", entity_key(practice, patient_id, cid), value))
        if queue == "refill_triage" and patient_id and match.status == "matched":
            outcome.records.append(refill_request_record(value, found, source, received_at))
    return outcome


def _medication(drug: Extracted | None, strength: Extracted | None) -> str:
    """The drug as refill triage reads it: its name with the strength the fax asks for.

    Triage parses the strength out of ``medication`` (``processors/workflows/refill/drugs.py``)
    and compares it with the active order's; a strength read as a field of its own (a
    language model's ``strength``) would otherwise be lost, and a request for another
    strength than the order's would pass as routine."""
    if drug is None:
        return "(not read from the fax)"
    name = drug.value.strip()
    if strength is not None and strength.value.strip():
        flat = re.sub(r"\s+", "", name.lower())
        if re.sub(r"\s+", "", strength.value.lower()) not in flat:
            return f"{name} {strength.value.strip()}"
    return name


def refill_request_id(classification_id: str) -> str:
    """The RefillRequest id of a faxed document (its classification id, hashed: no PHI)."""
    return "fax-" + hashlib.sha256(str(classification_id).encode()).hexdigest()[:24]


def refill_item_id(value: Mapping[str, Any]) -> str:
    """The id of the work item refill triage makes for this document's RefillRequest
    (``processors/workflows/refill/step.py``: workflow ``refill``, subject practice, patient,
    request): the fax's own item, closed when the document is handed over, points at it."""
    rid = refill_request_id(str(value["classification_id"]))
    return item_id_for("refill", str(value["practice_id"]), str(value["patient_id"]), rid)


def refill_request_record(
    value: Mapping[str, Any], found: Sequence[Extracted], source: Mapping[str, Any], received_at: int | None
) -> Normalized:
    """The ``RefillRequest`` a matched, faxed pharmacy request becomes, for refill triage.

    Used by the fax step and again when the practice's language model sorts an abstained
    page as a refill request (``assist.py``): either way refill triage applies its own rules."""
    drug, strength, pharmacy = first(found, "drug"), first(found, "strength"), first(found, "pharmacy")
    rid = refill_request_id(str(value["classification_id"]))
    if not received_at or received_at <= 0:
        raise ValueError("a faxed refill request needs the fax's received time (received_at)")
    submitted = int(received_at)
    rec = {
        "practice_id": value["practice_id"],
        "request_id": rid,
        "patient_id": value["patient_id"],
        "medication": _medication(drug, strength),
        "medication_code": None,
        "pharmacy": pharmacy.value if pharmacy else None,
        "last_filled": None,
        "note": f"faxed refill request, pages {value['pages']}; strength {strength.value if strength else '?'}",
        "submitted_at": submitted,
        "source": dict(source, message_type="fax.refill_request"),
    }
    return Normalized("RefillRequest", entity_key(str(value["practice_id"]), str(value["patient_id"]), rid), rec)
