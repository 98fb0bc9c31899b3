"""The fax workflow asks the practice's language model, and takes its answer back (pure).

Two questions, at most one per document of a fax, as ``cmd.llm`` commands
(``processors/llm/commands.py``):

* ``fax_classify`` for a document whose pages the embedded classifier abstained on;
* ``fax_extract`` for a document of a patient class (lab result, referral, ...) where the
  embedded rules left fields empty (no patient name, no birth date, no MRN or member id,
  or a field its class needs: a PA response's payer, decision and reference ...).

The idempotency key is the document id + its pages + the task + the prompt version (and
a hash of the pages' text): replaying the fax's batch re-emits the same command id and the
executor never calls the model for it again.

Decision: the document is **routed with what it has** at once (the item is in a queue, the
abstained one in triage with its top three guesses), not held as "awaiting extraction".
WHY: the model only improves an item; when the executor is down, slow or not configured,
nothing waits on it and no fax sits invisible. The answer (a ``CommandResult`` on
``cmd.results``) becomes a **new revision** of the same work item (and of the document's
``FaxClassification``): span-checked values are merged (rules first, the model fills what
rules left empty), the patient is matched again, and the document is routed again by the
same rules (:func:`~.route.decide_route`). When the answer cannot be trusted - a quoted
value not found in the page (span check), an outage answered by the embedded fallback, a
timeout, a refusal - the item goes to a person in ``triage`` and says why; the fax and its
Document are untouched either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from practiceflow.processors.base import Normalized, entity_key
from practiceflow.processors.llm.commands import llm_command, read_result
from practiceflow.processors.llm.config import DEFAULT_FAX_MIN_CONFIDENCE
from practiceflow.processors.llm.fax import classification_request, extraction_request, model_values
from practiceflow.processors.llm.validate import LLMResult
from practiceflow.processors.workflows.step import AuditReason
from practiceflow.processors.workflows.workitem import supersede
from practiceflow.schemas.typed import HandoffItemDict, WorkflowCommandDict

from .extract import Extracted
from .handoffs import item_for
from .match import Matcher, PatientMatch
from .route import PATIENT_CLASSES, decide_route, refill_item_id, refill_request_record

__all__ = [
    "FIELDS_BY_CLASS",
    "missing_fields",
    "llm_commands",
    "LLMRevision",
    "on_llm_result",
    "first_key",
    "PARAM_CLASSIFICATION",
]

WORKFLOW = "fax"
#: the command's params carry the document's classification as it was routed, echoed on the
#: result (CommandResult.params), so the answer is applied without looking the command up
PARAM_CLASSIFICATION = "classification"
#: the fax's receive time (epoch ms), echoed too: a refill request the answer hands to refill
#: triage is dated by it, as the fax step dates its own (``route.refill_request_record``)
PARAM_RECEIVED_AT = "received_at"
IDENTITY = ("patient_name", "dob")
IDS = ("mrn", "member_id")
FIELDS_BY_CLASS: dict[str, tuple[str, ...]] = {
    "lab_result": ("test",),
    "prior_auth_response": ("payer", "decision", "reference"),
    "records_request": ("records_requested", "date_range"),
    "refill_request": ("drug", "strength", "pharmacy"),
    "referral": ("referral_reason",),
    "other_clinical": (),
}
_NOT_ASKED = frozenset({"misdirected", "refill_triage", "filed", "none"})


def missing_fields(value: Mapping[str, Any]) -> list[str]:
    """The fields a patient document needs that the embedded rules did not find."""
    if value["doc_class"] not in PATIENT_CLASSES:
        return []
    have = {e["field"] for e in value.get("extracted") or []}
    wanted = [*IDENTITY, *FIELDS_BY_CLASS.get(value["doc_class"], ())]
    if not have & set(IDS):
        wanted[2:2] = IDS
    return [f for f in wanted if f not in have]


def llm_commands(
    document: Mapping[str, Any], classifications: Sequence[Mapping[str, Any]], *, now: int
) -> list[WorkflowCommandDict]:
    """The ``cmd.llm`` commands for one fax's documents (see the module doc for which).

    ``now`` is the fax's receive time (epoch ms), never the wall clock: a replay builds
    identical commands."""
    texts = {int(p.get("page") or i + 1): p.get("text") or "" for i, p in enumerate(document.get("pages") or [])}
    out: list[WorkflowCommandDict] = []
    for v in classifications:
        if v["queue"] in _NOT_ASKED or v.get("misdirected"):
            continue
        pages = [int(p) for p in v["pages"]]
        seg_texts = [texts.get(p, "") for p in pages]
        if not any(t.strip() for t in seg_texts):
            continue  # a blank page: nothing to read, a person looks at the image
        hints = {"class": str((v.get("guesses") or [{"label": v["doc_class"]}])[0]["label"])}
        if v.get("abstained"):
            request = classification_request(seg_texts, pages, hints)
        else:
            missing = missing_fields(v)
            if not missing:
                continue
            request = extraction_request(v["doc_class"], seg_texts, pages, missing)
        item = item_for(v, now)
        subject = f"{v['document_id']}/pages {','.join(map(str, pages))}"
        cmd = llm_command(
            v["practice_id"],
            WORKFLOW,
            subject,
            request.model_copy(update={"document_uri": v.get("storage_uri")}),
            now=now,
            item_id=item["item_id"] if item else None,
            patient_id=v.get("patient_id"),
            source=dict(v["source"]),  # type: ignore[arg-type]
        )
        cmd["params"] = {
            **cmd["params"],
            "classification_id": str(v["classification_id"]),
            "item_id": item["item_id"] if item else "",
            PARAM_RECEIVED_AT: str(now),
            PARAM_CLASSIFICATION: json.dumps(v, sort_keys=True, separators=(",", ":")),
        }
        out.append(cmd)
    return out


@dataclass(frozen=True)
class LLMRevision:
    """What one answer changed: the document's classification and its work item, next revision."""

    classification: dict[str, Any]
    item: HandoffItemDict | None
    audit: AuditReason
    changed: bool
    #: the item it replaces, closed (``superseded``), when the new routing names another item
    #: (a referral is a ``referral.incoming`` item, a sorted page a ``fax.triage`` one)
    superseded: HandoffItemDict | None = None
    #: the record key of the revised ``FaxClassification``: the first record's key, whatever
    #: patient the answer matched, so the compacted topic and ClickHouse keep one document
    key: str = ""
    #: the ``RefillRequest`` for refill triage, when the answer made the document a pharmacy
    #: refill request of a matched patient (the fax's item is then ``superseded`` by triage's)
    refill: Normalized | None = None

    @property
    def items(self) -> tuple[HandoffItemDict, ...]:
        return tuple(i for i in (self.superseded, self.item) if i is not None)


def _why_person(result: LLMResult, outcome: str) -> str | None:
    """The routing reason when the answer cannot be trusted as it is, else None."""
    if result.source == "fallback" or any(r.startswith("fallback:") for r in result.reasons):
        return "llm_unavailable"
    if result.source == "none" or outcome != "ok":
        return "llm_no_answer"
    if result.dropped or any(r.startswith("llm_span_not_found") for r in result.reasons):
        return "llm_span_check_failed"
    if result.needs_person:
        return "llm_unsupported"
    return None


def _match_again(v: Mapping[str, Any], found: Sequence[Mapping[str, Any]], matcher: Matcher) -> PatientMatch:
    if v["doc_class"] not in PATIENT_CLASSES:
        return PatientMatch("not_needed")
    if v.get("patient_match") == "matched":
        return PatientMatch("matched", v.get("patient_id"), tuple(v.get("match_candidates") or ()))

    def first(name: str) -> str | None:
        return next((e["value"] for e in found if e["field"] == name), None)

    return matcher.match(v["practice_id"], first("patient_name"), first("dob"), first("mrn"), first("member_id"))


def first_key(current: Mapping[str, Any], result_record: Mapping[str, Any]) -> str:
    """The key the fax step gave the document's first ``FaxClassification`` record.

    The command carries that classification as it was routed (``PARAM_CLASSIFICATION``,
    echoed on the result), so every revision reuses its key even when the model's answer
    matched a patient the first pass did not (the key's patient part would otherwise differ,
    and a compacted topic keeps both versions of one document)."""
    raw = (result_record.get("params") or {}).get(PARAM_CLASSIFICATION)
    first = json.loads(raw) if raw else current
    return entity_key(str(first["practice_id"]), first.get("patient_id"), str(first["classification_id"]))


def on_llm_result(
    current: Mapping[str, Any],
    result_record: Mapping[str, Any],
    matcher: Matcher,
    *,
    revision: int,
    now: int,
    min_confidence: float = DEFAULT_FAX_MIN_CONFIDENCE,
) -> LLMRevision:
    """Apply one ``cmd.results`` answer to the document's classification as it stands.

    ``current`` is the classification (the one the command carried, or the last revision
    this step made); ``revision`` is the work item's next revision number; ``now`` is the
    result's ``completed_at``; ``min_confidence`` is ``llm.fax_min_confidence``: a label the
    model states with less confidence (or none) leaves the document abstained, in triage.
    Pure: no clock, no I/O."""
    result = read_result(dict(result_record))
    outcome = str(result_record.get("outcome") or "failed")
    task = (result_record.get("params") or {}).get("task") or result.task
    v: dict[str, Any] = json.loads(json.dumps(current))  # a deep copy, JSON-shaped as the topic holds it
    found: list[dict[str, Any]] = list(v.get("extracted") or [])
    have = {e["field"] for e in found}
    added: list[Extracted] = []
    for mv in model_values(result):  # span-checked already (processors/llm/validate.py)
        if mv.field not in have:
            have.add(mv.field)
            added.append(Extracted(mv.field, mv.value, mv.page, mv.start, mv.end, mv.source))
    found += [
        {"field": e.field, "value": e.value, "page": e.page, "start": e.start, "end": e.end, "source": e.source}
        for e in added
    ]
    v["extracted"] = found
    person = _why_person(result, outcome)
    relabelled = False
    guess = ""
    if task == "fax_classify" and person is None and result.label and not _confident(result, min_confidence):
        # an uncalibrated guess must not replace a classification the embedded model would not
        # trust: the item stays abstained, in triage, with the guess shown (review s18 S18)
        person = "llm_low_confidence"
        guess = f"its label {result.label} at stated confidence {result.confidence} is below {min_confidence}"
    if task == "fax_classify" and person is None and result.label:
        relabelled = result.label != v["doc_class"] or bool(v.get("abstained"))
        v["doc_class"] = result.label
        v["kind"] = _kind(result.label, result.kind, found)
        v["confidence"] = float(result.confidence if result.confidence is not None else v["confidence"])
        v["abstained"] = False
        v["extracted"] = found = found + [  # the words that show the class, each on its page and span
            {
                "field": "class_evidence",
                "value": q.text,
                "page": q.page,
                "start": q.span_start,
                "end": q.span_end,
                "source": "llm",
            }
            for q in result.evidence
        ]
    match = _match_again(v, found, matcher)
    v["patient_match"] = match.status
    v["patient_id"] = match.patient_id if match.status in ("matched", "unverified") else None
    v["match_candidates"] = list(match.candidates)
    if person is not None:
        queue, reason, priority = "triage", person, "routine"
    else:
        queue, reason, priority = decide_route(
            doc_class=v["doc_class"],
            kind=v["kind"],
            misdirected=bool(v.get("misdirected")),
            low_confidence=bool(v.get("abstained")),
            unread=bool(v.get("needs_human_read")),
            confidence=float(v["confidence"]),
            missing_pages=bool(v.get("missing_pages")),
            match_status=match.status,
        )
    if queue == "none":
        queue, reason = "triage", reason if reason != "cover_sheet" else "llm_cover_sheet"
    v["queue"], v["routing_reason"], v["priority"] = queue, reason, priority
    who = f"{result.model or result.source}" + (f" ({result.prompt})" if result.prompt else "")
    v["extractor"] = f"{v.get('extractor') or 'rules'}+{'llm' if result.source == 'model' else result.source}"
    changed = bool(added) or relabelled or person is not None or queue != current["queue"]
    item = item_for(v, now) if changed else None
    if item is not None:
        item["revision"] = revision
        item["updated_at"] = now
        done = "classified the pages" if task == "fax_classify" else f"read {len(added)} more field(s)"
        item["actions_taken"] = [*item["actions_taken"], f"the practice's language model {who} {done}"]
        if person is not None:
            why = ", ".join([*result.reasons, *([guess] if guess else [])]) or person
            item["what_happened"] += f" The language model's answer needs a person: {why}."
    old = item_for(current, now)
    superseded = None
    refill = None
    if queue == "refill_triage" and changed:  # decide_route: a matched patient only
        # refill triage applies its own rules (controlled substances, protocols) to the request
        refill = _refill(v, found, result_record, now)
        if old is not None:
            superseded = supersede(old, refill_item_id(v), now)
            superseded["revision"] = revision
    if item is not None and old is not None and old["item_id"] != item["item_id"]:
        item["supersedes"] = old["item_id"]
        superseded = supersede(old, item["item_id"], now)
        superseded["revision"] = revision
    audit = AuditReason(
        action="fax_llm_applied",
        entity_type="FaxClassification",
        entity_id=str(v["classification_id"]),
        reason=f"{task} answered by {result.source}: {reason}",
        outcome="needs_person" if person else "ok",
        details={
            "task": str(task),
            "source": result.source,
            "added_fields": str(len(added)),
            "dropped_fields": str(len(result.dropped)),
            "queue": queue,
            "revision": str(revision),
        },
    )
    return LLMRevision(v, item, audit, changed, superseded, first_key(current, result_record), refill)


def _refill(
    v: Mapping[str, Any], found: Sequence[Mapping[str, Any]], result_record: Mapping[str, Any], now: int
) -> Normalized:
    """The RefillRequest of a document the answer routed to refill triage, dated by the fax."""
    received = str((result_record.get("params") or {}).get(PARAM_RECEIVED_AT) or "")
    values = [
        Extracted(e["field"], e["value"], e["page"], e["start"], e["end"], e.get("source") or "rules") for e in found
    ]
    source = dict(v.get("source") or {})
    return refill_request_record(v, values, source, int(received) if received.isdigit() else now)


def _confident(result: LLMResult, min_confidence: float) -> bool:
    return result.confidence is not None and float(result.confidence) >= min_confidence


def _kind(label: str, model_kind: str | None, found: Sequence[Mapping[str, Any]]) -> str:
    """The finer kind after a model's label: the step's own kinds where the fields say it."""
    if label == "lab_result":
        return "lab.abnormal" if any(e["field"] == "abnormal" for e in found) else "lab.result"
    if label == "prior_auth_response":
        d = next((e["value"] for e in found if e["field"] == "decision"), None)
        return f"pa.{d}" if d in ("approved", "denied", "more_info", "pending") else "pa.unknown"
    if label == "records_request":
        d = next((e["value"] for e in found if e["field"] == "direction"), None)
        return f"records.{d or 'requested_from_us'}"
    return label
