"""What every X12 transaction-set reader shares: code tables, value helpers, per-call context.

Split out of :mod:`practiceflow.processors.x12.normalize` (the entry point and dispatch); the
readers (``remittance_835``, ``claim_status_277``, ``eligibility_271``, ``acks_999``,
``claims_837``, ``auth_response_278``) import from here. Pure, like the rest of the normalizer:
value helpers turn raw elements into the records' values (``None`` rather than an exception on a
malformed value), and :class:`_Set` carries one transaction set's segments, delimiters, source
reference and warnings to its reader.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import Normalized, ascii_digits
from practiceflow.processors.x12.tokenizer import Delimiters, Interchange, TransactionSet, _Warn

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import ClaimAdjudicationDict, ClaimDict, CodingDict, SourceRefDict


FEED = "x12"

# --------------------------------------------------------------------------- code tables
_PROC_SYSTEMS = {
    "AD": "http://ada.org/cdt",
    "N4": "http://hl7.org/fhir/sid/ndc",
    "NU": "https://www.nubc.org/CodeSystem/RevenueCodes",
    "HP": "urn:x12:hipps",
    "ER": "urn:x12:jurisdiction-specific",
    "IV": "urn:x12:hiec",
    "WK": "urn:x12:abc",
}
_CPT = "http://www.ama-assn.org/go/cpt"
_HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
_NUBC_REV = "https://www.nubc.org/CodeSystem/RevenueCodes"
_MEMBER_ID_QUALIFIERS = frozenset(("MI", "HN", "II", "MR", "ZZ", "C", "N"))


# --------------------------------------------------------------------------- value helpers
def _num(v: str) -> float | None:
    """X12 R/N value -> finite float, or None (empty or malformed)."""
    if not v:
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    if f - f != 0.0 or "_" in v:  # NaN/inf, or Python-only digit grouping
        return None
    return f


def _d8(v: str) -> str | None:
    """CCYYMMDD (or the start of CCYYMMDD-CCYYMMDD) -> YYYY-MM-DD."""
    if len(v) != 8:
        v = v.strip()
        if len(v) > 8 and v[8] == "-":
            v = v[:8]
        elif len(v) > 8 and ascii_digits(v[:12]):  # DT: CCYYMMDDHHMM
            v = v[:8]
    if len(v) == 8 and ascii_digits(v):
        m = v[4:6]
        d = v[6:]
        if "01" <= m <= "12" and "01" <= d <= "31":
            return f"{v[:4]}-{m}-{d}"
    return None


def _hhmm(v: str) -> str | None:
    v = v.strip()
    if len(v) >= 4 and ascii_digits(v[:4]) and v.isascii():
        hh, mm = v[:2], v[2:4]
        if hh <= "24" and mm <= "59":
            if len(v) >= 6 and ascii_digits(v[4:6]) and v[4:6] <= "60":
                return f"{hh}:{mm}:{v[4:6]}"
            return f"{hh}:{mm}"
    return None


def _el(seg: list[str], i: int) -> str:
    return seg[i].strip() if len(seg) > i else ""


def _opt(seg: list[str], i: int) -> str | None:
    if len(seg) > i:
        v = seg[i].strip()
        if v:
            return v
    return None


def _name(seg: list[str]) -> str | None:
    """NM1 -> 'LAST, FIRST MIDDLE SUFFIX' (a person) or the organization name."""
    n = len(seg)
    last = seg[3].strip() if n > 3 else ""
    first = seg[4].strip() if n > 4 else ""
    if not first:
        return last or None
    name = f"{last}, {first}" if last else first
    middle = seg[5].strip() if n > 5 else ""
    if middle:
        name = f"{name} {middle}"
    suffix = seg[7].strip() if n > 7 else ""
    if suffix:
        name = f"{name} {suffix}"
    return name


def _hash(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:32]


def _claim_id(claim: ClaimAdjudicationDict | ClaimDict | None) -> str:
    """For warnings: a line or an adjustment is only ever read inside a claim."""
    return "?" if claim is None else str(claim["claim_id"])


def _procedure(parts: list[str]) -> CodingDict:
    qual = parts[0].strip()
    code = parts[1].strip() if len(parts) > 1 else ""
    desc = parts[6].strip() if len(parts) > 6 else ""
    system: str | None
    if qual == "HC" and code:
        system = _HCPCS if (code[0].isalpha()) else _CPT
    else:
        system = _PROC_SYSTEMS.get(qual, qual or None)
    return {"system": system, "code": code or None, "display": desc or None}


def _modifiers(parts: list[str]) -> list[str]:
    return [m.strip() for m in parts[2:6] if m.strip()]


# --------------------------------------------------------------------------- context
class _Run:
    """Per-call state: warnings, occurrence counters, records."""

    __slots__ = ("practice_id", "warn", "records", "occ", "types", "message_id")

    def __init__(self, practice_id: str, warn: _Warn) -> None:
        self.practice_id = practice_id
        self.warn = warn
        self.records: list[Normalized] = []
        self.occ: dict[tuple[Any, ...], int] = {}
        self.types: list[str] = []
        self.message_id = ""

    def occurrence(self, key: tuple[Any, ...]) -> int:
        n = self.occ.get(key, 0)
        self.occ[key] = n + 1
        return n


class _Set:
    """What a transaction-set handler needs: segments, delimiters, source, warn."""

    __slots__ = ("ts", "ic", "d", "run", "source", "label", "message_type")

    def __init__(self, run: _Run, ic: Interchange, ts: TransactionSet, message_type: str) -> None:
        self.run = run
        self.ic = ic
        self.ts = ts
        self.message_type = message_type
        self.d: Delimiters = ic.delimiters
        gs06 = ts.group_control_number or "-"
        self.source: SourceRefDict = {
            "feed": FEED,
            "message_id": f"{run.message_id}/{ic.control_number or '-'}/{gs06}/{ts.control_number or '-'}",
            "raw_topic": None,
            "message_type": message_type,
            "sent_at": _sent_at(ic, ts.gs),
        }
        self.label = f"{message_type} ST {ts.control_number or '?'}"
        self.d = _check_component(self, ic.delimiters)

    def warn(self, code: str, message: str) -> None:
        self.run.warn(code, f"{self.label}: {message}")


_COMPOSITE_AT = {"SVC": 1, "SV1": 1, "SV2": 2, "SV3": 1, "HI": 1, "STC": 1}
_COMPOSITE_LEAD = re.compile(r"[A-Z0-9]{1,3}([^A-Za-z0-9\s])")


def _check_component(s: _Set, d: Delimiters) -> Delimiters:
    """Some published files declare ISA16 ':' but write composites with '>' (or the reverse).

    The first composite element (SVC01, SV101, SV202, SV301, HI01, STC01) decides: when
    it does not contain the declared separator but starts with a qualifier followed by
    another punctuation character, that character is used for this transaction set.
    """
    declared = d.component
    for seg in s.ts.segments:
        i = _COMPOSITE_AT.get(seg[0])
        if i is None or len(seg) <= i:
            continue
        value = seg[i].strip()
        if declared in value:
            return d
        m = _COMPOSITE_LEAD.match(value)
        if m is None:
            continue
        ch = m.group(1)
        if ch in (d.element, d.segment, d.repetition):
            return d
        s.warn("component_separator", f"ISA16 declares {declared!r} but composites use {ch!r}; using {ch!r}")
        return Delimiters(d.element, ch, d.repetition if d.repetition != ch else None, d.segment)
    return d


def _sent_at(ic: Interchange, gs: list[str] | None) -> str | None:
    if gs and len(gs) > 4:
        day = _d8(gs[4])
        if day:
            t = _hhmm(gs[5]) if len(gs) > 5 else None
            return f"{day}T{t}" if t else day
    if ic.isa is not None:
        v = ic.isa_field(9)
        if len(v) == 6 and ascii_digits(v):
            day = _d8(("19" if v[:2] >= "70" else "20") + v)
            if day:
                t = _hhmm(ic.isa_field(10))
                return f"{day}T{t}" if t else day
    return None
