"""X12 5010 normalizer: 835, 277/277CA, 271, 999/997, TA1 and 837P/I/D -> practiceflow records.

``normalize_x12(raw, practice_id, received_at_ms, strict=False)`` follows the contract
in :mod:`practiceflow.processors.base`: pure, no I/O, no clock; a
:class:`NormalizeResult` or :class:`Rejected`, never another exception.

What each transaction set becomes
---------------------------------
* 835 -> one ``ClaimAdjudication`` per CLP loop and one ``ProviderAdjustment`` per
  PLB reason/amount pair (a PLB carries up to six).
* 277 / 277CA -> one ``ClaimStatus`` per claim-level STC composite (STC01, and STC10 /
  STC11 when present); STCs at provider / receiver level only when no claim below
  that HL has a status of its own (e.g. 277 provider-level "E0:24:85").
  Service-line STCs (after SVC) are not emitted.
* 271 -> one ``EligibilityResponse`` per subscriber (2000C) / dependent (2000D);
  a subscriber whose only purpose is to carry a dependent is folded into it.
  AAA rejections at payer / receiver level are added to every response, or become
  one response of their own when there is no subscriber loop.
* 999 / 997 -> one ``InterchangeAck`` per acknowledgment set; TA1 -> one per TA1.
* 837 (P, I, D) -> one ``Claim`` per CLM.
* 278 response (BHT02 11 / HCR) -> one ``AuthorizationResponse`` (processors/x12/x278.py reads it).
* 270 / 276 / 278 request (and anything else) -> ``Rejected("unsupported_transaction")``
  when the file holds nothing else; skipped with a warning in a mixed file.

Leniency (default) vs ``strict=True``
------------------------------------
Default mode keeps what can be trusted and says what it skipped in
``NormalizeResult.warnings`` ("code: message"): envelope count / control-number
mismatches, missing trailers, unpadded ISA, no ISA/GS envelope at all (an input
that starts at GS or ST is parsed with the delimiters it shows), a claim loop
whose CLP lacks a claim id, status or parseable charge / paid amount (that claim is
skipped, the others kept), an unparseable CAS / PLB amount (that item skipped).
``strict=True`` turns the first such problem into ``Rejected(<code>, <message>)``.
An input that yields no record at all is ``Rejected("no_records")``.

Identifiers
-----------
* ``NormalizeResult.message_id``: a hash of each interchange's envelope identity
  (ISA05/06 sender, ISA07/08 receiver, ISA09/10 date/time, ISA13 control number)
  plus its segments with whitespace and line breaks removed. A resent file (same
  interchange, any line-ending or indentation) gets the same id; two different
  files that reuse a sender's control number do not collide.
* ``source.message_id``: ``<message_id>/<ISA13>/<GS06>/<ST02>`` (``TA1`` for TA1s).
* ``adjudication_id``: hash(TRN02 payment trace, CLP01, CLP07, occurrence index of
  that triple in the input) - stable across resends, distinct for a reversal and its
  correction in the same file. ``adjustment_id`` (PLB), ``status_id`` (277) are
  built the same way from their content; ``response_id`` (271) and ``ack_id``
  (999/TA1) from the source message id and position.
* Kafka keys: ``entity_key(practice_id, <patient id or "-">, <record id>)`` like the
  other normalized topics ("practice/patient/entity").

Field choices worth knowing
---------------------------
* 835: ``member_id`` = NM1*IL09, else NM1*QC09, else the corrected id on NM1*74 (never
  an SSN-qualified id); ``patient_id`` = REF*EA (medical record number) when sent;
  ``payer_id`` = N1*PR04, else REF*2U, else TRN03; ``payee_npi`` only when N1*PE03 is
  XX; ``service_date`` = DTM*232 (statement from), else the earliest line date; SVC
  ``units`` = SVC05, or 1 when absent (the TR3 default); an SVC with only a revenue
  code (SVC04) gets it as the procedure (NUBC system). RARC come from MIA05/20-23,
  MOA03-07 (claim) and LQ*HE (line); LQ*RX (NCPDP) is not a RARC and is not kept.
* 277: ``claim_id`` = REF*EJ (patient control number in 005010X212) when present,
  else TRN*2 (the patient control number in 277CA 005010X214). ``accepted``: True
  for A0/A1/A2/A5 and for P/F/R categories (the claim is in adjudication), False
  for A3/A4/A6/A7/A8, else from STC03 (WQ accepted / U rejected), else None.
* 271: ``trace_number`` = TRN*2 (the 270's own trace echoed back), else TRN*1, else
  BHT03; a dependent inherits the subscriber's member id; LS/LE (2120) loops are
  skipped so a PCP or other-payer NM1 never overwrites the patient or payer;
  ``plan_begin`` / ``plan_end`` from 2100C/D DTP*346/356 and 347/357 (a 291/307 date or
  RD8 range fills what they leave), EB11 as ``Benefit.authorization_required`` (Y/N), and
  AAA04 follow-up actions in ``follow_up_actions``, one per deduplicated AAA03 in
  ``rejections`` ("" where the payer sent none): the intake workflow's gap rules read them.
* 999/997: ``acknowledged_control_numbers`` = [AK102 group control number,
  "AK102/AK202" per set]; ``errors`` = one readable line per IK3/CTX/IK4/IK5/AK9 error
  (CTX carries the rejected claim's CLM01). ``kind`` is "999", "997" or "TA1".
* 837: ``status`` "submitted" (CLM05-3 = 1), "replacement" (7) or "void" (8), the code
  itself in ``frequency_code``, CLM05-1 in ``place_of_service``, 2300 REF*F8 (the payer's
  control number a replacement refers to) and REF*G1 (prior authorization); payer =
  the subscriber loop's NM1*PR (never a COB other-payer NM1*PR after CLM);
  ``member_id`` = the subscriber's NM1*IL09 (member-id qualifiers only, never an SSN),
  so the identity crosswalk links CLM01 (echoed as CLP01 in the 835) to the member.
* Some published files declare ISA16 ':' but write composites with '>'; the first
  composite of each transaction set decides (with a ``component_separator`` warning).

Values: amounts are floats (non-finite / malformed -> skipped or None with a
warning), dates CCYYMMDD -> ISO ``YYYY-MM-DD`` (a range RD8 keeps its start), names
"LAST, FIRST MIDDLE SUFFIX". Codes are kept as sent (ICD codes without a dot);
procedure systems are FHIR-style URIs (CPT vs HCPCS level II told apart by the code).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import (
    Normalized,
    NormalizeResult,
    Rejected,
    ascii_digits,
    entity_key,
    guarded,
    typed_record,
)
from practiceflow.processors.x12.tokenizer import (
    Delimiters,
    Interchange,
    TransactionSet,
    _Warn,
    tokenize,
)
from practiceflow.processors.x12.x278 import read_278_segments, response_fields

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AuthorizationResponseDict,
        BenefitDict,
        ClaimAdjudicationDict,
        ClaimDict,
        ClaimStatusDict,
        CodingDict,
        EligibilityResponseDict,
        InterchangeAckDict,
        ProviderAdjustmentDict,
        ServiceLineDict,
        SourceRefDict,
    )

__all__ = ["normalize_x12"]

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
_ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
_ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
_DIAG_QUALIFIERS = {
    "ABK": _ICD10,
    "ABF": _ICD10,
    "ABJ": _ICD10,
    "APR": _ICD10,
    "ABN": _ICD10,
    "BK": _ICD9,
    "BF": _ICD9,
    "BJ": _ICD9,
    "PR": _ICD9,
    "BN": _ICD9,
}
_MEMBER_ID_QUALIFIERS = frozenset(("MI", "HN", "II", "MR", "ZZ", "C", "N"))
_277_ACCEPTED = frozenset(("A0", "A1", "A2", "A5"))
_277_REJECTED = frozenset(("A3", "A4", "A6", "A7", "A8"))
_IK5_CODES = {
    "A": "accepted",
    "E": "accepted, errors noted",
    "M": "rejected, MAC failed",
    "P": "partially accepted",
    "R": "rejected",
    "W": "rejected, assurance failed",
    "X": "rejected, content could not be analyzed",
}
_IK304 = {
    "1": "unrecognized segment ID",
    "2": "unexpected segment",
    "3": "required segment missing",
    "4": "loop occurs over maximum times",
    "5": "segment exceeds maximum use",
    "6": "segment not in defined transaction set",
    "7": "segment not in proper sequence",
    "8": "segment has data element errors",
    "I4": "implementation 'not used' segment present",
    "I6": "implementation dependent segment missing",
    "I7": "implementation loop occurs under minimum times",
    "I8": "implementation segment below minimum use",
    "I9": "implementation dependent 'not used' segment present",
}
_IK403 = {
    "1": "required data element missing",
    "2": "conditional required data element missing",
    "3": "too many data elements",
    "4": "data element too short",
    "5": "data element too long",
    "6": "invalid character in data element",
    "7": "invalid code value",
    "8": "invalid date",
    "9": "invalid time",
    "10": "exclusion condition violated",
    "12": "too many repetitions",
    "13": "too many components",
    "I10": "implementation 'not used' data element present",
    "I11": "implementation too few repetitions",
    "I12": "implementation pattern match failure",
    "I13": "implementation dependent 'not used' data element present",
    "I6": "code value not used in implementation",
    "I9": "implementation dependent data element missing",
}
_IK502 = {
    "1": "transaction set not supported",
    "2": "transaction set trailer missing",
    "3": "transaction set control number in header and trailer do not match",
    "4": "number of included segments does not match actual count",
    "5": "one or more segments in error",
    "6": "missing or invalid transaction set identifier",
    "7": "missing or invalid transaction set control number",
    "23": "duplicate transaction set control number",
    "I5": "implementation one or more segments in error",
    "I6": "implementation convention not supported",
}
_AK9_CODES = {
    "1": "functional group not supported",
    "2": "functional group version not supported",
    "3": "functional group trailer missing",
    "4": "group control number in header and trailer do not agree",
    "5": "number of included transaction sets does not match actual count",
    "6": "group control number violates syntax",
    "10": "authentication key name unknown",
    "11": "encryption key name unknown",
    "12": "requested service not available",
    "13": "unknown security recipient",
    "14": "unknown security originator",
    "15": "syntax error in decrypted text",
    "16": "security not supported",
    "17": "incorrect message length",
    "18": "message authentication code failed",
    "19": "functional group control number not unique within interchange",
    "23": "S3E security end segment missing for S3S security start segment",
    "24": "S3S security start segment missing for S3E end segment",
    "25": "S4E security end segment missing for S4S security start segment",
    "26": "S4S security start segment missing for S4E security end segment",
}
_TA105 = {
    "000": "no error",
    "001": "interchange control numbers in header and trailer do not match",
    "002": "standard in header is not supported",
    "003": "version of the controls is not supported",
    "004": "segment terminator is invalid",
    "005": "invalid interchange ID qualifier for sender",
    "006": "invalid interchange sender ID",
    "007": "invalid interchange ID qualifier for receiver",
    "008": "invalid interchange receiver ID",
    "009": "unknown interchange receiver ID",
    "010": "invalid authorization information qualifier value",
    "011": "invalid authorization information value",
    "012": "invalid security information qualifier value",
    "013": "invalid security information value",
    "014": "invalid interchange date value",
    "015": "invalid interchange time value",
    "016": "invalid interchange standards identifier value",
    "017": "invalid interchange version ID value",
    "018": "invalid interchange control number value",
    "019": "invalid acknowledgment requested value",
    "020": "invalid test indicator value",
    "021": "invalid number of included groups value",
    "022": "invalid control structure",
    "023": "improper (premature) end-of-file (transmission)",
    "024": "invalid interchange content (e.g., invalid GS segment)",
    "025": "duplicate interchange control number",
    "026": "invalid data element separator",
    "027": "invalid component element separator",
    "028": "invalid delivery date in deferred delivery request",
    "029": "invalid delivery time in deferred delivery request",
    "030": "invalid delivery time code in deferred delivery request",
    "031": "invalid grade of service code",
}
_UNSUPPORTED_REASONS = {
    "270": "270 is an eligibility inquiry, which a practice sends; the payer's answer arrives as a 271",
    "276": "276 is a claim status inquiry, which a practice sends; the answer arrives as a 277",
    "278": "278 request (services review / prior authorization) is what a practice sends, not an inbound feed",
}
_FREQUENCY_STATUS = {"7": "replacement", "8": "void"}


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


# --------------------------------------------------------------------------- 835
def _do_835(s: _Set) -> None:
    run = s.run
    pid = run.practice_id
    comp = s.d.component
    warn = s.warn
    payer_name = payer_id_n1 = payer_id_ref = payer_id_trn = None
    payee_npi: str | None = None
    trace: str | None = None
    pay_date: str | None = None
    # each claim with [member_from_il, member_from_qc, member_from_74]
    claims: list[tuple[ClaimAdjudicationDict, list[str | None]]] = []
    plbs: list[tuple[str, str | None, str, str | None, float, str | None]] = []
    claim: ClaimAdjudicationDict | None = None
    line: ServiceLineDict | None = None
    claim_extra: list[str | None] | None = None
    proc: CodingDict
    skipping = False
    in_header = True
    for seg in s.ts.segments:
        sid = seg[0]
        n = len(seg)
        if sid == "SVC":
            if claim is None:
                if not skipping:
                    warn("orphan_segment", "SVC outside a claim ignored")
                continue
            parts = seg[1].split(comp) if n > 1 else [""]
            np_ = len(parts)
            code = parts[1].strip() if np_ > 1 else ""
            if code:
                qual = parts[0].strip()
                system: str | None
                if qual == "HC":
                    system = _HCPCS if code[0].isalpha() else _CPT
                else:
                    system = _PROC_SYSTEMS.get(qual, qual or None)
                desc = parts[6].strip() if np_ > 6 else ""
                proc = {"system": system, "code": code, "display": desc or None}
            else:
                rev = seg[4].strip() if n > 4 else ""
                if rev:
                    proc = {"system": _NUBC_REV, "code": rev, "display": None}
                else:
                    proc = _procedure(parts)
                    warn("malformed_segment", f"CLP {claim['claim_id']}: SVC without a procedure code")
            mods = [m.strip() for m in parts[2:6] if m.strip()] if np_ > 2 else []
            charge = _num(seg[2].strip()) if n > 2 else None
            paid = _num(seg[3].strip()) if n > 3 else None
            units = _num(seg[5].strip()) if n > 5 and seg[5] else 1.0
            if (n > 2 and seg[2] and charge is None) or (n > 3 and seg[3] and paid is None):
                warn("malformed_amount", f"CLP {claim['claim_id']}: SVC amount not a number")
            line = {
                "procedure": proc,
                "modifiers": mods,
                "charge": charge,
                "paid": paid,
                "units": units,
                "service_date": None,
                "adjustments": [],
                "remark_codes": [],
                "control_number": None,
                "allowed": None,
            }
            claim["lines"].append(line)
        elif sid == "CAS":
            target = line if line is not None else claim
            if target is None:
                if not skipping:
                    warn("orphan_segment", "CAS outside a claim ignored")
                continue
            group = seg[1].strip() if n > 1 else ""
            if not group:
                warn("malformed_segment", f"CLP {_claim_id(claim)}: CAS without a group code ignored")
                continue
            adjs = target["adjustments"]
            for i in range(2, 20 if n > 20 else n, 3):
                reason = seg[i].strip()
                if not reason:
                    continue
                amount = _num(seg[i + 1].strip()) if i + 1 < n else None
                if amount is None:
                    warn(
                        "malformed_amount",
                        f"CLP {_claim_id(claim)}: CAS {group}*{reason} amount "
                        f"{seg[i + 1] if i + 1 < n else '(missing)'!r} skipped",
                    )
                    continue
                qty = seg[i + 2].strip() if i + 2 < n else ""
                adjs.append(
                    {"group": group, "reason": reason, "amount": amount, "quantity": _num(qty) if qty else None}
                )
        elif sid == "DTM":
            if claim is None:
                continue
            q = seg[1] if n > 1 else ""
            if line is not None:
                if q == "472" or (q == "150" and line["service_date"] is None):
                    line["service_date"] = _d8(seg[2]) if n > 2 else None
            elif q == "232" or q == "472":
                claim["service_date"] = _d8(seg[2]) if n > 2 else None
        elif sid == "REF":
            if claim is None:
                if in_header and n > 2 and seg[1] == "2U":
                    payer_id_ref = seg[2].strip() or payer_id_ref
                continue
            q = seg[1] if n > 1 else ""
            if line is not None:
                if q == "6R" and n > 2:
                    line["control_number"] = seg[2].strip() or None
            elif q == "EA" and n > 2:
                claim["patient_id"] = seg[2].strip() or None
            elif q == "G1" and n > 2:
                claim["authorization_number"] = seg[2].strip() or None
        elif sid == "AMT":
            if line is not None and n > 2 and seg[1] == "B6":  # 2110 service line allowed amount
                allowed = _num(seg[2].strip())
                if allowed is None:
                    warn("malformed_amount", f"CLP {_claim_id(claim)}: AMT*B6 {seg[2][:20]!r} not a number")
                line["allowed"] = allowed
        elif sid == "QTY":
            continue
        elif sid == "LQ":
            if n > 2 and seg[1] == "HE":
                code = seg[2].strip()
                target = line if line is not None else claim
                if code and target is not None:
                    target["remark_codes"].append(code)
        elif sid == "CLP":
            in_header = False
            line = None
            claim = None
            clp01 = seg[1].strip() if n > 1 else ""
            status = seg[2].strip() if n > 2 else ""
            charge = _num(seg[3].strip()) if n > 3 else None
            paid = _num(seg[4].strip()) if n > 4 else None
            if not clp01 or not status or charge is None or paid is None:
                skipping = True
                warn(
                    "malformed_claim",
                    f"CLP {clp01 or '(no claim id)'} skipped: claim id, status, charge and "
                    f"paid amount are required ({'*'.join(seg)[:80]!r})",
                )
                continue
            skipping = False
            resp_raw = seg[5].strip() if n > 5 else ""
            resp = _num(resp_raw) if resp_raw else None
            if resp_raw and resp is None:
                warn("malformed_amount", f"CLP {clp01}: patient responsibility {resp_raw!r} not a number")
            claim_extra = [None, None, None]
            claim = {
                "practice_id": pid,
                "claim_id": clp01,
                "adjudication_id": "",
                "patient_id": None,
                "patient_name": None,
                "member_id": None,
                "payer_id": payer_id_n1 or payer_id_ref or payer_id_trn,
                "payer_name": payer_name,
                "payee_npi": payee_npi,
                "status_code": status,
                "total_charge": charge,
                "paid": paid,
                "patient_responsibility": resp,
                "payer_claim_control_number": (seg[7].strip() or None) if n > 7 else None,
                "reversal": status == "22",
                "adjustments": [],
                "remark_codes": [],
                "lines": [],
                "payment_trace": trace,
                "payment_date": pay_date,
                "service_date": None,
                "source": s.source,  # each record gets its own copy when it is emitted
                "outcome": None,
                "authorization_number": None,
            }
            claims.append((claim, claim_extra))
        elif sid == "NM1":
            if claim is None or claim_extra is None:  # both are set by the same CLP
                continue
            q = seg[1] if n > 1 else ""
            if q == "QC":
                claim["patient_name"] = _name(seg)
                if n > 9 and seg[8].strip() in _MEMBER_ID_QUALIFIERS:
                    claim_extra[1] = seg[9].strip() or None
            elif q == "IL":
                if n > 9 and seg[8].strip() in _MEMBER_ID_QUALIFIERS:
                    claim_extra[0] = seg[9].strip() or None
            elif q == "74":
                if n > 9 and seg[8].strip() == "C":
                    claim_extra[2] = seg[9].strip() or None
        elif sid == "MOA" or sid == "MIA":
            if claim is None:
                continue
            idx = (3, 4, 5, 6, 7) if sid == "MOA" else (5, 20, 21, 22, 23)
            rc = claim["remark_codes"]
            for i in idx:
                if i < n:
                    code = seg[i].strip()
                    if code:
                        rc.append(code)
        elif sid == "PLB":
            claim = line = None
            in_header = False
            provider = seg[1].strip() if n > 1 else ""
            if not provider:
                provider = payee_npi or ""
                warn("malformed_segment", f"PLB without provider id; using payee {provider or '(unknown)'}")
            fiscal = _d8(seg[2]) if n > 2 else None
            for i in range(3, 15 if n > 15 else n, 2):
                raw_reason = seg[i].strip()
                if not raw_reason:
                    continue
                parts = raw_reason.split(comp)
                reason = parts[0].strip()
                ref = parts[1].strip() if len(parts) > 1 and parts[1].strip() else None
                amount = _num(seg[i + 1].strip()) if i + 1 < n else None
                if not reason or amount is None or not provider:
                    warn(
                        "malformed_amount",
                        f"PLB {provider or '?'} {raw_reason!r}: amount "
                        f"{seg[i + 1] if i + 1 < n else '(missing)'!r} skipped",
                    )
                    continue
                plbs.append((provider, fiscal, reason, ref, amount, trace))
        elif sid == "LX":
            claim = line = None
            in_header = False
        elif sid == "N1":
            q = seg[1] if n > 1 else ""
            if q == "PR":
                payer_name = (seg[2].strip() or None) if n > 2 else None
                payer_id_n1 = (seg[4].strip() or None) if n > 4 else None
            elif q == "PE":
                payee_npi = (seg[4].strip() or None) if n > 4 and seg[3].strip() == "XX" else None
                if claim is not None:
                    claim = line = None  # a payee loop ends the claim loops before it
        elif sid == "BPR":
            if n > 16:
                pay_date = _d8(seg[16])
            else:  # some samples drop an empty element: take a trailing date, if there is one
                pay_date = _d8(seg[-1]) if n > 12 else None
                if pay_date:
                    warn("malformed_segment", f"BPR has {n - 1} elements; payment date taken from BPR{n - 1}")
        elif sid == "TRN":
            if n > 2:
                trace = seg[2].strip() or None
                payer_id_trn = (seg[3].strip() or None) if n > 3 else None

    src = s.source
    trace_key = None
    occ = run.occ
    append = run.records.append
    sha256 = hashlib.sha256
    for c, extra in claims:
        c["member_id"] = extra[0] or extra[1] or extra[2]
        if c["service_date"] is None:
            dates = [sd for ln in c["lines"] if (sd := ln["service_date"])]
            if dates:
                c["service_date"] = min(dates)
        t = c["payment_trace"]
        if t is None:
            if trace_key is None:
                trace_key = f"st:{src['message_id']}"
            t = trace_key
        ccn = c["payer_claim_control_number"]
        key = ("835", t, c["claim_id"], ccn)
        n_occ = occ.get(key, 0)
        occ[key] = n_occ + 1
        adj_id = sha256(f"{t}\x1f{c['claim_id']}\x1f{'' if ccn is None else ccn}\x1f{n_occ}".encode()).hexdigest()[:32]
        c["adjudication_id"] = adj_id
        c["source"] = src.copy()
        append(typed_record("ClaimAdjudication", entity_key(pid, c["patient_id"], adj_id), c))
    for provider, fiscal, reason, ref, amount, t in plbs:
        t_key = t or f"st:{src['message_id']}"
        plb_key = ("PLB", t_key, provider, fiscal, reason, ref)
        adj_id = _hash("PLB", t_key, provider, fiscal, reason, ref, run.occurrence(plb_key))
        plb: ProviderAdjustmentDict = {
            "practice_id": pid,
            "adjustment_id": adj_id,
            "provider_id": provider,
            "fiscal_period_end": fiscal,
            "reason": reason,
            "reference": ref,
            "amount": amount,
            "payment_trace": t,
            "source": src.copy(),
        }
        run.records.append(typed_record("ProviderAdjustment", entity_key(pid, None, adj_id), plb))


# --------------------------------------------------------------------------- 277 / 277CA
_277_CLAIM_LEVELS = frozenset(("22", "23", "PT"))


def _do_277(s: _Set) -> None:
    run = s.run
    pid = run.practice_id
    comp = s.d.component
    parents: dict[str, str] = {}
    payer_name: str | None = None
    level = ""
    hl_id = ""
    hl_name: str | None = None
    hl_npi: str | None = None
    claim: dict[str, Any] | None = None
    claims: list[dict[str, Any]] = []
    level_stcs: list[tuple[str, list[str], str | None]] = []
    in_svc = False
    for seg in s.ts.segments:
        sid = seg[0]
        if sid == "HL":
            claim = None
            in_svc = False
            hl_id = _el(seg, 1)
            parents[hl_id] = _el(seg, 2)
            level = _el(seg, 3)
            hl_name = hl_npi = None
        elif sid == "NM1":
            if level == "20":
                if payer_name is None or _el(seg, 1) == "PR":
                    payer_name = _opt(seg, 3)
            else:
                hl_name = _name(seg)
                hl_npi = _opt(seg, 9)
        elif sid == "TRN":
            if level in _277_CLAIM_LEVELS:
                in_svc = False
                claim = {
                    "trn": _opt(seg, 2),
                    "ej": None,
                    "ccn": None,
                    "stcs": [],
                    "hl": hl_id,
                    "name": hl_name,
                    "payer": payer_name,
                }
                claims.append(claim)
        elif sid == "STC":
            if in_svc:
                continue
            if claim is None and level in _277_CLAIM_LEVELS:
                claim = {
                    "trn": None,
                    "ej": None,
                    "ccn": None,
                    "stcs": [],
                    "hl": hl_id,
                    "name": hl_name,
                    "payer": payer_name,
                }
                claims.append(claim)
            if claim is not None:
                claim["stcs"].append(seg)
            else:
                level_stcs.append((hl_id, seg, hl_npi))
        elif sid == "REF":
            if claim is not None and not in_svc:
                q = _el(seg, 1)
                if q == "1K":
                    claim["ccn"] = _opt(seg, 2)
                elif q == "EJ":
                    claim["ej"] = _opt(seg, 2)
        elif sid == "SVC":
            in_svc = True

    covered: set[str] = set()
    for c in claims:
        if not c["stcs"]:
            continue
        h = c["hl"]
        seen = 0
        while h and h not in covered and seen < 1000:
            covered.add(h)
            h = parents.get(h, "")
            seen += 1
    src = s.source
    for c in claims:
        claim_id = c["ej"] or c["trn"]
        if not c["stcs"]:
            s.warn("malformed_claim", f"claim {claim_id or '?'} has no STC status; skipped")
            continue
        for stc in c["stcs"]:
            _emit_stc(s, stc, comp, claim_id, c["ccn"], c["name"], c["payer"], src, pid)
    for h, stc, npi in level_stcs:
        if h in covered:
            continue
        _emit_stc(s, stc, comp, None, None, None, payer_name, src, pid, provider=npi)


def _emit_stc(
    s: _Set,
    stc: list[str],
    comp: str,
    claim_id: str | None,
    ccn: str | None,
    name: str | None,
    payer: str | None,
    src: SourceRefDict,
    pid: str,
    provider: str | None = None,
) -> None:
    run = s.run
    date = _d8(stc[2]) if len(stc) > 2 else None
    action = _el(stc, 3)
    charge = _num(_el(stc, 4))
    paid = _num(_el(stc, 5))
    for idx in (1, 10, 11):
        raw = _el(stc, idx)
        if not raw:
            if idx == 1:
                s.warn("malformed_segment", f"claim {claim_id or '?'}: STC without STC01 status ignored")
            continue
        parts = raw.split(comp)
        cat = parts[0].strip() or None
        code = (parts[1].strip() or None) if len(parts) > 1 else None
        entity = (parts[2].strip() or None) if len(parts) > 2 else None
        if cat in _277_ACCEPTED or (cat is not None and cat[0] in "FPR"):
            accepted: bool | None = True
        elif cat in _277_REJECTED:
            accepted = False
        elif action == "WQ":
            accepted = True
        elif action == "U":
            accepted = False
        else:
            accepted = None
        subject = claim_id or provider
        key = ("STC", subject, ccn, ":".join(p.strip() for p in parts), date, _el(stc, 4), _el(stc, 5))
        status_id = _hash(*key, run.occurrence(key))
        status: ClaimStatusDict = {
            "practice_id": pid,
            "status_id": status_id,
            "claim_id": claim_id,
            "payer_claim_control_number": ccn,
            "patient_name": name,
            "category_code": cat,
            "status_code": code,
            "entity_code": entity,
            "status_date": date,
            "total_charge": charge,
            "paid": paid,
            "accepted": accepted,
            "payer_name": payer,
            "source": src.copy(),
        }
        run.records.append(typed_record("ClaimStatus", entity_key(pid, None, status_id), status))


# --------------------------------------------------------------------------- 271
def _do_271(s: _Set) -> None:
    run = s.run
    pid = run.practice_id
    rep = s.d.repetition
    payer_name = payer_id = None
    bht03: str | None = None
    upper_rejections: list[str] = []
    upper_actions: dict[str, str] = {}
    subs: list[dict[str, Any]] = []
    by_hl: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None  # a subscriber/dependent loop being read (not a record)
    benefit: BenefitDict | None = None
    level = ""
    in_ls = False
    for seg in s.ts.segments:
        sid = seg[0]
        if sid == "LS":
            in_ls = True
            continue
        if sid == "LE":
            in_ls = False
            continue
        if in_ls:
            continue
        if sid == "EB":
            if cur is None:
                s.warn("orphan_segment", "EB outside a subscriber/dependent loop ignored")
                continue
            info = _el(seg, 1)
            if not info:
                s.warn("malformed_segment", "EB without EB01 benefit code ignored")
                benefit = None
                continue
            st_raw = _el(seg, 3)
            if st_raw:
                types = [t.strip() for t in (st_raw.split(rep) if rep else [st_raw]) if t.strip()]
            else:
                types = []
            amount_raw = _el(seg, 7)
            pct_raw = _el(seg, 8)
            amount = _num(amount_raw)
            pct = _num(pct_raw)
            if (amount_raw and amount is None) or (pct_raw and pct is None):
                s.warn("malformed_amount", f"EB*{info}: amount/percent not a number")
            benefit = {
                "info_code": info,
                "coverage_level": _opt(seg, 2),
                "service_types": types,
                "insurance_type": _opt(seg, 4),
                "plan_description": _opt(seg, 5),
                "time_period": _opt(seg, 6),
                "amount": amount,
                "percent": pct,
                "in_network": _opt(seg, 12),
                "messages": [],
                "authorization_required": _yn(_el(seg, 11)),
            }
            cur["benefits"].append(benefit)
        elif sid == "MSG":
            text = _el(seg, 1)
            if benefit is not None and text:
                benefit["messages"].append(text)
        elif sid == "HL":
            benefit = None
            hl = _el(seg, 1)
            parent = _el(seg, 2)
            level = _el(seg, 3)
            if level in ("22", "23"):
                cur = {
                    "hl": hl,
                    "parent": parent,
                    "level": level,
                    "member_id": None,
                    "name": None,
                    "dob": None,
                    "traces": [],
                    "benefits": [],
                    "rejections": [],
                    "actions": {},
                    "children": 0,
                    "refs": {},
                    "dates": {},
                }
                subs.append(cur)
                by_hl[hl] = cur
                p = by_hl.get(parent)
                if p is not None:
                    p["children"] += 1
            else:
                cur = None
        elif sid == "NM1":
            if cur is None:
                if level == "20" and (payer_name is None or _el(seg, 1) == "PR"):
                    payer_name = _opt(seg, 3)
                    payer_id = _opt(seg, 9)
            elif not cur["benefits"]:
                cur["name"] = _name(seg)
                mid = _opt(seg, 9)
                if mid:
                    cur["member_id"] = mid
        elif sid == "TRN":
            if cur is not None:
                cur["traces"].append((_el(seg, 1), _opt(seg, 2)))
        elif sid == "DMG":
            if cur is not None and len(seg) > 2:
                cur["dob"] = _d8(seg[2])
        elif sid == "REF":
            # 2100C/D (before any EB): EA medical record number, EJ patient account number
            if cur is not None and not cur["benefits"] and _el(seg, 1) in ("EA", "EJ"):
                cur["refs"].setdefault(_el(seg, 1), _opt(seg, 2))
        elif sid == "AAA":
            code = _el(seg, 3)
            if code:
                action = _el(seg, 4)
                if cur is None:
                    upper_rejections.append(code)
                    if action:
                        upper_actions.setdefault(code, action)
                else:
                    cur["rejections"].append(code)
                    if action:
                        cur["actions"].setdefault(code, action)
        elif sid == "DTP":
            # 2100C/D dates (before any EB): 346/356 plan/eligibility begin, 347/357 end,
            # 291 plan, 307 eligibility (a single date or an RD8 range)
            if cur is not None and not cur["benefits"]:
                _dtp_271(seg, cur["dates"])
        elif sid == "BHT":
            bht03 = _opt(seg, 3)

    src = s.source
    emitted = 0
    for i, sub in enumerate(subs):
        if sub["level"] == "22" and sub["children"] and not sub["benefits"] and not sub["rejections"]:
            continue  # the subscriber only carries the dependent who is the patient
        member_id = sub["member_id"]
        if member_id is None and sub["level"] == "23":
            parent_sub = by_hl.get(sub["parent"])
            member_id = parent_sub["member_id"] if parent_sub else None
        trace = (
            next((t for q, t in sub["traces"] if q == "2" and t), None)
            or next((t for _, t in sub["traces"] if t), None)
            or bht03
        )
        rejections = list(dict.fromkeys(upper_rejections + sub["rejections"]))
        actions = {**upper_actions, **sub["actions"]}
        codes = {b["info_code"] for b in sub["benefits"]}
        # one plan active and another inactive/terminated in the same answer is not "active":
        # the payer's answer is mixed, so the status is unknown (None) for a person to resolve
        on, off = bool(codes & {"1", "2", "3", "4", "5"}), bool(codes & {"6", "7", "8"})
        active = None if on and off else (True if on else (False if off else None))
        refs = sub["refs"]
        _emit_271(
            s,
            pid,
            src,
            sub["hl"] + f"#{i}",
            trace,
            payer_id,
            payer_name,
            member_id,
            sub["name"],
            sub["dob"],
            active,
            sub["benefits"],
            rejections,
            refs.get("EA") or refs.get("EJ"),
            [actions.get(c, "") for c in rejections],
            sub["dates"],
        )
        emitted += 1
    if not emitted and upper_rejections:
        _emit_271(
            s,
            pid,
            src,
            "source",
            bht03,
            payer_id,
            payer_name,
            None,
            None,
            None,
            None,
            [],
            list(dict.fromkeys(upper_rejections)),
            None,
            [upper_actions.get(c, "") for c in dict.fromkeys(upper_rejections)],
        )


def _yn(v: str) -> bool | None:
    return True if v == "Y" else (False if v == "N" else None)


_DTP_BEGIN = ("346", "356")
_DTP_END = ("347", "357")
_DTP_RANGE = ("291", "307")


def _dtp_271(seg: list[str], dates: dict[str, str]) -> None:
    """Plan / eligibility dates of a 2100C/D loop: the begin and end a gap rule compares
    with the appointment (a plan that ends before the visit)."""
    qual, fmt, value = _el(seg, 1), _el(seg, 2), _el(seg, 3)
    if fmt == "RD8" and "-" in value:
        start, _, end = value.partition("-")
        b, e = _d8(start), _d8(end)
        if qual in _DTP_RANGE + _DTP_BEGIN + _DTP_END:
            if b:
                dates.setdefault("begin", b)
            if e:
                dates.setdefault("end", e)
        return
    d = _d8(value)
    if d is None:
        return
    if qual in _DTP_BEGIN:
        dates["begin"] = d
    elif qual in _DTP_END:
        dates["end"] = d
    elif qual in _DTP_RANGE:
        dates.setdefault("begin", d)


def _emit_271(
    s: _Set,
    pid: str,
    src: SourceRefDict,
    position: str,
    trace: str | None,
    payer_id: str | None,
    payer_name: str | None,
    member_id: str | None,
    name: str | None,
    dob: str | None,
    active: bool | None,
    benefits: list[BenefitDict],
    rejections: list[str],
    patient_id: str | None = None,
    actions: list[str] | None = None,
    dates: dict[str, str] | None = None,
) -> None:
    response_id = _hash("271", src["message_id"], position)
    response: EligibilityResponseDict = {
        "practice_id": pid,
        "response_id": response_id,
        "trace_number": trace,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "member_id": member_id,
        "patient_name": name,
        "birth_date": dob,
        "active": active,
        "benefits": benefits,
        "rejections": rejections,
        "source": src.copy(),
        "patient_id": patient_id,
        "follow_up_actions": actions or [],
        "plan_begin": (dates or {}).get("begin"),
        "plan_end": (dates or {}).get("end"),
    }
    s.run.records.append(typed_record("EligibilityResponse", entity_key(pid, patient_id, response_id), response))


# --------------------------------------------------------------------------- 999 / 997
def _do_999(s: _Set) -> None:
    run = s.run
    pid = run.practice_id
    kind = s.message_type
    ak1: list[str] | None = None
    ak9: list[str] | None = None
    sets: list[list[str]] = []  # [set id, control number, ack code]
    cur: list[str] | None = None
    errors: list[str] = []
    for seg in s.ts.segments:
        sid = seg[0]
        if sid == "AK2":
            cur = [_el(seg, 1), _el(seg, 2), ""]
            sets.append(cur)
        elif sid == "IK3" or sid == "AK3":
            code = _el(seg, 4)
            loop = _el(seg, 3)
            errors.append(
                f"{_where(cur)}: segment {_el(seg, 1)} at position {_el(seg, 2)}"
                f"{' in loop ' + loop if loop else ''}: {code} {_IK304.get(code, '')}".rstrip()
            )
        elif sid == "IK4" or sid == "AK4":
            code = _el(seg, 3)
            bad = _el(seg, 4)
            errors.append(
                f"{_where(cur)}: element {_el(seg, 1)} (ref {_el(seg, 2) or '?'}): {code} "
                f"{_IK403.get(code, '')}{' [' + bad + ']' if bad else ''}".rstrip()
            )
        elif sid == "CTX":
            errors.append(f"{_where(cur)}: context " + "*".join(v.strip() for v in seg[1:] if v.strip()))
        elif sid == "IK5" or sid == "AK5":
            code = _el(seg, 1)
            if cur is None:
                s.warn("malformed_segment", f"{sid}*{code} before any AK2 ignored")
                continue
            cur[2] = code
            if code != "A":
                why = [c for c in (_el(seg, i) for i in range(2, 7)) if c]
                detail = "; ".join(f"{c} {_IK502.get(c, '')}".rstrip() for c in why)
                errors.append(
                    f"{_where(cur)}: {code} {_IK5_CODES.get(code, 'unknown code')}"
                    f"{' (' + detail + ')' if detail else ''}"
                )
        elif sid == "AK1":
            ak1 = seg
        elif sid == "AK9":
            ak9 = seg
            for i in range(5, 10):
                c = _el(seg, i)
                if c:
                    errors.append(f"group: {c} {_AK9_CODES.get(c, '')}".rstrip())
    group_ctl = _el(ak1, 2) if ak1 else ""
    acked = ([group_ctl] if group_ctl else []) + [f"{group_ctl}/{c[1]}" if group_ctl else c[1] for c in sets if c[1]]
    accepted = _el(ak9, 1) if ak9 else ""
    if not accepted:
        codes = {c[2] for c in sets if c[2]}
        if codes:
            if codes <= {"A", "E"}:
                accepted = "E" if "E" in codes else "A"
            elif codes & {"A", "E"}:
                accepted = "P"
            else:
                accepted = "R"
    if ak1 is None:
        s.warn("malformed_segment", f"{kind} without AK1 group response")
    src = s.source
    ack_id = _hash(kind, src["message_id"], group_ctl)
    ack: InterchangeAckDict = {
        "practice_id": pid,
        "ack_id": ack_id,
        "kind": kind,
        "accepted": accepted or None,
        "acknowledged_control_numbers": acked,
        "errors": errors,
        "source": src.copy(),
    }
    run.records.append(typed_record("InterchangeAck", entity_key(pid, None, ack_id), ack))


def _where(cur: list[str] | None) -> str:
    return f"{cur[0] or 'ST'} {cur[1] or '?'}" if cur else "(no AK2)"


# --------------------------------------------------------------------------- TA1
def _do_ta1(run: _Run, ic: Interchange) -> None:
    pid = run.practice_id
    src_base: SourceRefDict = {
        "feed": FEED,
        "message_id": f"{run.message_id}/{ic.control_number or '-'}/TA1",
        "raw_topic": None,
        "message_type": "TA1",
        "sent_at": _sent_at(ic, None),
    }
    for i, seg in enumerate(ic.ta1):
        ctl = _el(seg, 1)
        code = _el(seg, 4)
        note = _el(seg, 5)
        errors = [f"TA1 {note}: {_TA105.get(note, 'unknown note code')}"] if note and note != "000" else []
        ack_id = _hash("TA1", src_base["message_id"], ctl, i)
        src = src_base.copy()
        src["message_id"] = f"{src_base['message_id']}/{ctl or i}"
        ack: InterchangeAckDict = {
            "practice_id": pid,
            "ack_id": ack_id,
            "kind": "TA1",
            "accepted": code or None,
            "acknowledged_control_numbers": [ctl] if ctl else [],
            "errors": errors,
            "source": src,
        }
        run.records.append(typed_record("InterchangeAck", entity_key(pid, None, ack_id), ack))


# --------------------------------------------------------------------------- 837
def _do_837(s: _Set) -> None:
    run = s.run
    pid = run.practice_id
    comp = s.d.component
    payer_name = payer_id = None
    member_id: str | None = None  # 2010BA NM1*IL09: links CLM01 to the patient (identity crosswalk)
    claim: ClaimDict | None = None
    line: ServiceLineDict | None = None
    claims: list[tuple[ClaimDict, list[str | None]]] = []  # each claim with [DTP*472, DTP*434]
    claim_date: list[str | None] | None = None
    proc: CodingDict
    for seg in s.ts.segments:
        sid = seg[0]
        n = len(seg)
        if sid == "SV1" or sid == "SV2" or sid == "SV3":
            if claim is None:
                s.warn("orphan_segment", f"{sid} outside a claim ignored")
                continue
            if sid == "SV2":
                rev = _el(seg, 1)
                parts = seg[2].split(comp) if n > 2 and seg[2].strip() else []
                charge_raw, units_raw = _el(seg, 3), _el(seg, 5)
                proc = _procedure(parts) if parts else {"system": _NUBC_REV, "code": rev or None, "display": None}
            else:
                parts = seg[1].split(comp) if n > 1 else [""]
                charge_raw = _el(seg, 2)
                units_raw = _el(seg, 4) if sid == "SV1" else _el(seg, 6)
                proc = _procedure(parts)
            if proc["code"] is None:
                s.warn("malformed_segment", f"CLM {claim['claim_id']}: {sid} without a procedure code")
            line = {
                "procedure": proc,
                "modifiers": _modifiers(parts) if parts else [],
                "charge": _num(charge_raw),
                "paid": None,
                "units": _num(units_raw),
                "service_date": None,
                "adjustments": [],
                "remark_codes": [],
                "control_number": None,
                "allowed": None,
            }
            claim["lines"].append(line)
        elif sid == "DTP":
            if claim is None or claim_date is None:  # both are set by the same CLM
                continue
            q = _el(seg, 1)
            if line is not None:
                if q == "472":
                    line["service_date"] = _d8(_el(seg, 3))
            elif q == "472" or q == "434":
                d = _d8(_el(seg, 3))
                if d:
                    claim_date[0 if q == "472" else 1] = d
        elif sid == "REF":
            if claim is None:
                continue
            q = _el(seg, 1)
            if line is not None:
                if q == "6R":
                    line["control_number"] = _opt(seg, 2)
            elif q == "EA":
                claim["patient_id"] = _opt(seg, 2)
            elif q == "F8":
                claim["payer_claim_control_number"] = _opt(seg, 2)
            elif q == "G1":
                claim["authorization_number"] = _opt(seg, 2)
        elif sid == "HI":
            if claim is None:
                continue
            for el in seg[1:]:
                if not el.strip():
                    continue
                parts = el.split(comp)
                system = _DIAG_QUALIFIERS.get(parts[0].strip())
                if system is None:
                    if len(parts) < 2:
                        s.warn("malformed_segment", f"CLM {claim['claim_id']}: HI element {el!r} is not a composite")
                    continue
                code = parts[1].strip() if len(parts) > 1 else ""
                if code:
                    claim["diagnoses"].append({"system": system, "code": code, "display": None})
                else:
                    s.warn("malformed_segment", f"CLM {claim['claim_id']}: HI {parts[0]} without a code")
        elif sid == "LX":
            line = None
        elif sid == "CLM":
            line = None
            clm01 = _el(seg, 1)
            if not clm01:
                claim = None
                s.warn("malformed_claim", "CLM without a claim id skipped")
                continue
            charge_raw = _el(seg, 2)
            charge = _num(charge_raw)
            if charge_raw and charge is None:
                s.warn("malformed_amount", f"CLM {clm01}: total charge {charge_raw!r} not a number")
            freq_parts = _el(seg, 5).split(comp)
            freq = freq_parts[2].strip() if len(freq_parts) > 2 else ""
            claim_date = [None, None]
            claim = {
                "practice_id": pid,
                "claim_id": clm01,
                "patient_id": None,
                "payer_id": payer_id,
                "payer_name": payer_name,
                "total_charge": charge,
                "service_date": None,
                "diagnoses": [],
                "lines": [],
                "status": _FREQUENCY_STATUS.get(freq, "submitted"),
                "source": s.source,  # each record gets its own copy when it is emitted
                "use": "claim",
                "member_id": member_id,
                "frequency_code": freq or None,
                "place_of_service": freq_parts[0].strip() or None,
                "payer_claim_control_number": None,
                "authorization_number": None,
            }
            claims.append((claim, claim_date))
        elif sid == "NM1":
            if claim is None and _el(seg, 1) == "PR":
                payer_name = _opt(seg, 3)
                payer_id = _opt(seg, 9)
            elif claim is None and _el(seg, 1) == "IL" and _el(seg, 8) in _MEMBER_ID_QUALIFIERS:
                member_id = _opt(seg, 9)
        elif sid == "HL":
            claim = line = None
            lvl = _el(seg, 3)
            if lvl == "22" or lvl == "20":
                payer_name = payer_id = member_id = None
    src = s.source
    for c, dates in claims:
        c["service_date"] = (
            dates[0] or dates[1] or min((sd for ln in c["lines"] if (sd := ln["service_date"])), default=None)
        )
        c["source"] = src.copy()
        run.records.append(typed_record("Claim", entity_key(pid, c["patient_id"], c["claim_id"]), c))


# --------------------------------------------------------------------------- dispatch
# --------------------------------------------------------------------------- 278 response
def _is_278_response(ts: TransactionSet) -> bool:
    """BHT02 11 (response) or an HCR segment: a payer's answer, not a request we would send."""
    for seg in ts.segments[:3]:
        if seg[0] == "BHT" and _el(seg, 2) == "11":
            return True
    return any(seg[0] == "HCR" for seg in ts.segments)


def _do_278(s: _Set) -> None:
    """A 278 response -> one AuthorizationResponse (read by processors/x12/x278.py)."""
    read = read_278_segments(s.ts.segments, s.d)
    fields = response_fields(read)
    if read.action_code is None and not read.rejections:
        s.warn("malformed_segment", "278 response without HCR or AAA: no decision to record")
        return
    pid = s.run.practice_id
    src = s.source
    response_id = _hash("278", src["message_id"], read.reference, fields["trace_number"] or "")
    rec: AuthorizationResponseDict = {
        "practice_id": pid,
        "response_id": response_id,
        "reference": read.reference or None,
        **fields,  # type: ignore[typeddict-item]  # the reader's field names are the record's
        "source": src.copy(),
    }
    s.run.records.append(typed_record("AuthorizationResponse", entity_key(pid, None, response_id), rec))


def _message_type(ts: TransactionSet) -> str:
    set_id = ts.set_id
    impl = ts.implementation.upper()
    if set_id == "837":
        if "X222" in impl:
            return "837P"
        if "X223" in impl:
            return "837I"
        if "X224" in impl:
            return "837D"
        for seg in ts.segments:
            if seg[0] == "SV1":
                return "837P"
            if seg[0] == "SV2":
                return "837I"
            if seg[0] == "SV3":
                return "837D"
        return "837"
    if set_id == "277" and ("X214" in impl or _is_277ca(ts)):
        return "277CA"
    return set_id


def _is_277ca(ts: TransactionSet) -> bool:
    for seg in ts.segments[:3]:
        if seg[0] == "BHT":
            return _el(seg, 2) == "08" and _el(seg, 6) == "TH"
    return False


_HANDLERS: dict[str, Callable[[_Set], None]] = {
    "835": _do_835,
    "277": _do_277,
    "277CA": _do_277,
    "271": _do_271,
    "999": _do_999,
    "997": _do_999,
    "837P": _do_837,
    "837I": _do_837,
    "837D": _do_837,
    "837": _do_837,
    "278": _do_278,  # responses only (see _normalize): a 278 request is what a practice sends
}


def _unsupported_reason(ts: TransactionSet, mtype: str) -> str:
    return _UNSUPPORTED_REASONS.get(
        mtype,
        f"transaction set {mtype or '(none)'} is not an inbound feed "
        "this processor handles (835, 277/277CA, 271, 999/997, TA1, 837)",
    )


def _interchange_id(ic: Interchange) -> str:
    if ic.isa is None:
        return _hash("noenvelope", hashlib.sha256(ic.canonical.encode()).hexdigest())
    f = ic.isa_field
    return _hash(f(5), f(6), f(7), f(8), f(9), f(10), f(13), hashlib.sha256(ic.canonical.encode()).hexdigest())


def _normalize(raw: bytes, practice_id: str, strict: bool) -> NormalizeResult:
    if not isinstance(practice_id, str) or not practice_id:
        raise Rejected("invalid_input", "practice_id is required")
    warnings: list[str] = []
    warn = _Warn(strict, warnings)
    parsed = tokenize(raw, strict=strict, warnings=warnings)
    ics = parsed.interchanges
    ids = [_interchange_id(ic) for ic in ics]
    run = _Run(practice_id, warn)
    run.message_id = ids[0] if len(ids) == 1 else _hash("multi", *ids)
    unsupported: list[str] = []
    supported_sets = 0
    for ic in ics:
        if ic.isa is not None and ic.version and ic.version != "00501":
            warn("version", f"ISA12 {ic.version}: not a 5010 interchange; parsed with 5010 rules")
        if ic.ta1:
            _add_type(run, "TA1")
            _do_ta1(run, ic)
        for group in ic.groups:
            for ts in group.transactions:
                mtype = _message_type(ts)
                handler = _HANDLERS.get(mtype) if mtype != "278" or _is_278_response(ts) else None
                if handler is None:
                    reason = _unsupported_reason(ts, mtype)
                    unsupported.append(f"ST {ts.control_number or '?'} ({mtype or '?'}): {reason}")
                    _add_type(run, mtype or "?")
                    continue
                supported_sets += 1
                _add_type(run, mtype)
                handler(_Set(run, ic, ts, mtype))
    message_type = "+".join(run.types) or "unknown"
    if not supported_sets and not any(ic.ta1 for ic in ics):
        if unsupported:
            raise Rejected("unsupported_transaction", "; ".join(unsupported[:3]))
        raise Rejected("no_transactions", "the interchange holds no transaction set or TA1")
    for u in unsupported:
        warn("unsupported_transaction", f"skipped {u}")
    if not run.records:
        detail = "; ".join(warnings[-3:])
        raise Rejected("no_records", f"{message_type}: no usable record" + (f" ({detail})" if detail else ""))
    return NormalizeResult(message_id=run.message_id, message_type=message_type, records=run.records, warnings=warnings)


def _add_type(run: _Run, mtype: str) -> None:
    if mtype not in run.types:
        run.types.append(mtype)


def normalize_x12(raw: bytes, practice_id: str, received_at_ms: int, *, strict: bool = False) -> NormalizeResult:
    """Normalize one X12 file (one or more interchanges). See the module docstring.

    ``received_at_ms`` is part of the normalizer contract; X12 records carry the
    sender's own dates, so it is not used.

    Runs through ``processors.base.guarded`` (collector paused; a bug dead-letters the
    input as ``internal_error`` instead of crashing the stream).
    """
    return guarded(_normalize, raw, practice_id, strict)
