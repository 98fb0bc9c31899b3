"""835 (health care claim payment / remittance advice) -> ``ClaimAdjudication`` + ``ProviderAdjustment``.

One ``ClaimAdjudication`` per CLP loop and one ``ProviderAdjustment`` per PLB reason/amount pair.
The field choices are listed in :mod:`practiceflow.processors.x12.normalize` (the entry point).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import (
    _CPT,
    _HCPCS,
    _MEMBER_ID_QUALIFIERS,
    _NUBC_REV,
    _PROC_SYSTEMS,
    _claim_id,
    _d8,
    _hash,
    _name,
    _num,
    _procedure,
    _Set,
)

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import ClaimAdjudicationDict, CodingDict, ProviderAdjustmentDict, ServiceLineDict


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
                "use": None,
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
