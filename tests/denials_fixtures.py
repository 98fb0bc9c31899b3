"""Synthetic 837P / 835 pairs for the denial workflow's tests and benchmark.

Built with the project's own 837P writer (so the original claim is exactly what the
reader gives back) and a small 835 builder with claim- and line-level CAS, LQ*HE and
CLP07, the fields the denial step reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.processors.x12.write837 import Parties, write_837p

PID = "demo-clinic"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
PARTIES = Parties(
    sender_id="DEMOCLINIC",
    receiver_id="CLEARINGHOUSE",
    submitter_name="DEMO CLINIC",
    receiver_name="CLEARINGHOUSE",
    billing_provider_name="DEMO CLINIC",
    billing_provider_npi="1234567893",
    billing_provider_tax_id="123456789",
    billing_address=("12 MAIN ST", "SPRINGFIELD", "IL", "62701"),
    subscriber_last="DOE",
    subscriber_first="JANE",
)


def claim_record(
    claim_id: str = "PCN1001",
    *,
    mrn: str = "MRN1001",
    member_id: str = "W111",
    payer_id: str = "60054",
    payer_name: str = "DEMO TEST PAYER",
    lines: Sequence[tuple[str, Sequence[str], float]] = (("99214", (), 150.0), ("82947", (), 40.0)),
    dos: str = "2026-11-02",
    diagnoses: Sequence[str] = ("E119",),
    authorization: str | None = None,
) -> dict:
    """A Claim record as the 837 reader gives it (status submitted, frequency 1)."""
    claim = {
        "practice_id": PID,
        "claim_id": claim_id,
        "patient_id": mrn,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "total_charge": round(sum(c for _, _, c in lines), 2),
        "service_date": dos,
        "diagnoses": [{"system": ICD10, "code": d, "display": None} for d in diagnoses],
        "lines": [
            {
                "procedure": {"system": CPT, "code": code, "display": None},
                "modifiers": list(mods),
                "charge": charge,
                "paid": None,
                "units": 1.0,
                "service_date": dos,
                "adjustments": [],
                "remark_codes": [],
                "control_number": None,
                "allowed": None,
            }
            for code, mods, charge in lines
        ],
        "status": "submitted",
        "source": {"feed": "x12", "message_id": "-", "raw_topic": None, "message_type": "837P", "sent_at": None},
        "use": "claim",
        "member_id": member_id,
        "frequency_code": "1",
        "place_of_service": "11",
        "payer_claim_control_number": None,
        "authorization_number": authorization,
    }
    return claim


def claim_837(claim: dict, control: int = 1, created: str = "2026-11-03") -> bytes:
    return write_837p(claim, PARTIES, interchange_control=control, created=created).encode()


def read_claim(raw: bytes) -> dict:
    (rec,) = [r for r in normalize_x12(raw, PID, 0).records if r.record_type == "Claim"]
    return rec.value


@dataclass
class RemitClaim:
    claim_id: str
    charge: float
    paid: float
    status: str = "4"  # 1 paid, 4 denied, 22 reversal
    pccn: str | None = "PAYER-CCN-1"
    patient_resp: float = 0.0
    member_id: str = "W111"
    claim_cas: Sequence[tuple[str, str, float]] = ()
    claim_rarcs: Sequence[str] = ()
    lines: Sequence[tuple[str, float, float, Sequence[tuple[str, str, float]], Sequence[str]]] = field(
        default_factory=tuple
    )  # (code, charge, paid, CAS (group, carc, amount)..., RARC...)
    dos: str = "20261102"


def remit_835(
    claims: Sequence[RemitClaim],
    *,
    control: int = 1,
    date: str = "20261201",
    trace: str = "EFT1",
    plb: Sequence[str] = (),
) -> bytes:
    total = sum(c.paid for c in claims)
    body = [
        f"BPR*I*{total:.2f}*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*{date}",
        f"TRN*1*{trace}*1512345678",
        "N1*PR*DEMO TEST PAYER*XV*60054",
        "N1*PE*DEMO CLINIC*XX*1234567893",
        "LX*1",
    ]
    for c in claims:
        body += [
            f"CLP*{c.claim_id}*{c.status}*{c.charge:.2f}*{c.paid:.2f}*{c.patient_resp:.2f}*12*{c.pccn or ''}*11*1",
            f"NM1*QC*1*DOE*JANE****MI*{c.member_id}",
        ]
        if c.claim_rarcs:
            body.append("MOA***" + "*".join(c.claim_rarcs))
        body.append(f"DTM*232*{c.dos}")
        for g, carc, amt in c.claim_cas:
            body.append(f"CAS*{g}*{carc}*{amt:.2f}")
        for code, charge, paid, cas, rarcs in c.lines:
            body += [f"SVC*HC:{code}*{charge:.2f}*{paid:.2f}**1", f"DTM*472*{c.dos}"]
            body += [f"CAS*{g}*{carc}*{amt:.2f}" for g, carc, amt in cas]
            body += [f"LQ*HE*{r}" for r in rarcs]
    body += list(plb)  # whole PLB segments, without terminator
    st = ["ST*835*0001*005010X221A1", *body]
    st.append(f"SE*{len(st) + 1}*0001")
    segs = [
        f"ISA*00*{'':10}*00*{'':10}*ZZ*{'CLEARINGHOUSE':<15}*ZZ*{'DEMOCLINIC':<15}*{date[2:]}*0930*^*00501*"
        f"{control:09d}*0*P*:",
        f"GS*HP*CLEARINGHOUSE*DEMOCLINIC*{date}*0930*{control}*X*005010X221A1",
        *st,
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return ("~\n".join(segs) + "~\n").encode()


def read_adjudications(raw: bytes) -> list[dict]:
    return [r.value for r in normalize_x12(raw, PID, 0).records if r.record_type == "ClaimAdjudication"]
