"""The embedded fallback: what answers an LLM command when the practice's model cannot (pure).

WHY: the LLM is a helper, not a dependency. When it is down, slow, refused by the PHI
guard or gives an unusable answer, the document must still reach the right person with
what can be read safely. This extractor reads ``Label: value`` lines (the way most fax
forms, lab reports and pharmacy requests print their header fields) with fixed patterns:
deterministic, CPU-only, no model file, and every value it returns is a span of the page
by construction. It finds less than a model and says so (``needs_person``).

Classification has no fallback here: the embedded fax classifier
(``processors/workflows/fax``) already abstained on the pages that are sent to the LLM,
so when the LLM cannot answer, the page goes to the triage queue.
"""

from __future__ import annotations

import re

from practiceflow.processors.llm.tasks import TASKS, ExtractionOutput, LLMRequest, QuotedField

# field -> label spellings seen on faxes (case-insensitive), longest first where they overlap
LABELS: dict[str, tuple[str, ...]] = {
    "patient_name": ("patient name", "patient", "pt name", "name of patient", "re"),
    "dob": ("date of birth", "birth date", "dob", "d.o.b."),
    "mrn": ("medical record number", "medical record #", "mrn", "chart #", "chart number"),
    "member_id": ("member id", "member #", "subscriber id", "insurance id", "policy #"),
    "sender": ("from", "sender", "ordering provider", "referring provider"),
    "sender_fax": ("from fax", "sender fax", "fax from", "return fax", "reply fax", "sender fax #"),
    "addressee": ("to", "attention", "attn"),
    "payer": ("payer", "health plan", "insurance", "insurer"),
    "decision": ("decision", "determination", "status"),
    "reference": ("reference #", "reference number", "authorization #", "auth #", "case #"),
    "records_requested": ("records requested", "records needed"),
    "date_range": ("date range", "dates of service"),
    "drug": ("medication", "drug", "drug name"),
    "strength": ("strength",),
    "pharmacy": ("pharmacy",),
    "referral_reason": ("reason for referral", "reason"),
    "test": ("test",),
}

MODEL_NAME = "embedded:labelled-fields"
VERSION = "1"


def _pattern(label: str) -> re.Pattern[str]:
    # a label at a line start (or after whitespace), a colon, then the rest of the line
    return re.compile(rf"(?im)(?:^|(?<=\s)){re.escape(label)}\s*:[ \t]*(?P<v>[^\n\r]*\S)")


_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {f: tuple(_pattern(lb) for lb in ls) for f, ls in LABELS.items()}


def extract_labelled(request: LLMRequest) -> ExtractionOutput:
    """Fields written as ``Label: value`` on the pages, the first occurrence of each field."""
    spec = TASKS["fax_extract"]
    wanted = [f for f in request.fields if f in spec.field_names] or list(spec.field_names)
    out: list[QuotedField] = []
    for name in wanted:
        hit = _first(request, name)
        if hit is not None:
            page, text = hit
            out.append(QuotedField(name=name, text=text, page=page))
    return ExtractionOutput(fields=out)


def _first(request: LLMRequest, name: str) -> tuple[int, str] | None:
    for page in request.pages:
        best: tuple[int, str] | None = None
        for pat in _PATTERNS.get(name, ()):
            m = pat.search(page.text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), m.group("v").strip()[:300])
        if best is not None and best[1]:
            return page.page, best[1]
    return None


def has_fallback(task: str) -> bool:
    return task == "fax_extract"
