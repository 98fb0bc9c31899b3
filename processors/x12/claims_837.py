"""837 P / I / D (health care claim) -> ``Claim``.

One ``Claim`` per CLM; the field choices (status from the frequency code, payer from the
subscriber loop, member id never an SSN) are listed in :mod:`practiceflow.processors.x12.normalize`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import (
    _MEMBER_ID_QUALIFIERS,
    _NUBC_REV,
    _d8,
    _el,
    _modifiers,
    _num,
    _opt,
    _procedure,
    _Set,
)

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import ClaimDict, CodingDict, ServiceLineDict


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
_FREQUENCY_STATUS = {"7": "replacement", "8": "void"}


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
