"""837P writer (005010X222A1): a ``Claim`` record -> an X12 professional claim.

Why it exists: the denial workflow drafts corrected claims (claim frequency code 7 with
the payer's claim control number from the 835's CLP07 in 2300 REF*F8). The draft must be
something a clearinghouse accepts *and* something this project reads back to the same
``Claim`` — ``tests/processors/test_write837.py`` writes every 837P of the public corpus
back out and reads it with :func:`practiceflow.processors.x12.normalize.normalize_x12`,
requiring the same record. So every field the reader takes is written where the reader
takes it from, and a value the writer cannot carry faithfully (a delimiter inside a value,
a diagnosis that is neither ICD-10-CM nor ICD-9-CM, a non-HCPCS procedure) is refused
with :class:`WriteError` rather than silently changed.

A claim without CLM05 (some malformed samples) is written as place of service 11 and
frequency 1, the common case; everything else comes back as it went in.

What a ``Claim`` record does not hold (the billing provider, the submitter and receiver,
the subscriber's name, birth date and address) comes in :class:`Parties`; the denial
workflow takes them from the 835 (payee NPI, patient name) and the practice's settings,
and the person who approves the draft sees them.

Pure: the date, time and control numbers are arguments; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from practiceflow.schemas.typed import ClaimDict, CodingDict, ServiceLineDict

__all__ = ["Parties", "WriteError", "write_837p"]

IMPLEMENTATION = "005010X222A1"
_CPT = "http://www.ama-assn.org/go/cpt"
_HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
_PROC_QUALIFIERS = {
    _CPT: "HC",
    _HCPCS: "HC",
    "http://ada.org/cdt": "AD",
    "http://hl7.org/fhir/sid/ndc": "N4",
    "urn:x12:hipps": "HP",
    "urn:x12:jurisdiction-specific": "ER",
    "urn:x12:hiec": "IV",
    "urn:x12:abc": "WK",
}
_DX_QUALIFIERS = {
    "http://hl7.org/fhir/sid/icd-10-cm": ("ABK", "ABF"),
    "http://hl7.org/fhir/sid/icd-9-cm": ("BK", "BF"),
}
_FREQUENCY = {"submitted": "1", "replacement": "7", "void": "8"}
_FORBIDDEN = frozenset("*:~^\r\n")


class WriteError(ValueError):
    """The claim holds something an 837P cannot carry faithfully."""


@dataclass(frozen=True)
class Parties:
    """Who sends, receives and bills, and who the subscriber is: what a Claim record lacks."""

    sender_id: str
    receiver_id: str
    submitter_name: str
    receiver_name: str
    billing_provider_name: str
    billing_provider_npi: str
    billing_provider_tax_id: str
    billing_address: tuple[str, str, str, str]  # street, city, state, zip
    subscriber_last: str
    subscriber_first: str = ""
    subscriber_birth_date: str | None = None  # YYYY-MM-DD
    subscriber_gender: str | None = None  # M | F | U
    submitter_contact: str = "BILLING"
    submitter_phone: str = "0000000000"


def _v(value: object, what: str) -> str:
    s = "" if value is None else str(value).strip()
    if any(c in _FORBIDDEN for c in s):
        raise WriteError(f"{what} {s!r} contains an X12 delimiter")
    return s


def _amt(v: float | None) -> str:
    if v is None:
        return ""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def _d8(iso: str | None) -> str:
    return (iso or "").replace("-", "")[:8]


def _procedure(proc: CodingDict, mods: Sequence[str]) -> str:
    system = proc.get("system")
    code = _v(proc.get("code"), "procedure code")
    qual = _PROC_QUALIFIERS.get(system or "")
    if qual is None or not code:
        raise WriteError(f"procedure {system}|{code} cannot be written to SV101 of an 837P")
    if len(mods) > 4:
        raise WriteError(f"procedure {code}: {len(mods)} modifiers, SV101 carries 4")
    parts = [qual, code, *(_v(m, "modifier") for m in mods)]
    display = proc.get("display")
    if display:
        parts += [""] * (6 - len(parts)) + [_v(display, "procedure description")]
    return ":".join(parts)


def _diagnoses(claim: ClaimDict) -> str | None:
    out: list[str] = []
    for i, dx in enumerate(claim.get("diagnoses") or []):
        quals = _DX_QUALIFIERS.get(dx.get("system") or "")
        code = _v(dx.get("code"), "diagnosis code").replace(".", "")
        if quals is None or not code:
            raise WriteError(f"diagnosis {dx.get('system')}|{code} is not ICD-10-CM or ICD-9-CM")
        out.append(f"{quals[0] if i == 0 else quals[1]}:{code}")
    if len(out) > 12:
        raise WriteError(f"{len(out)} diagnoses; HI carries 12")
    return "*".join(out) if out else None


def _line(n: int, ln: ServiceLineDict, pointers: str) -> list[str]:
    units = ln.get("units")
    segs = [
        f"LX*{n}",
        f"SV1*{_procedure(ln['procedure'], ln.get('modifiers') or [])}*{_amt(ln.get('charge'))}*UN*"
        f"{_amt(units if units is not None else 1.0)}***{pointers}",
    ]
    if ln.get("service_date"):
        segs.append(f"DTP*472*D8*{_d8(ln['service_date'])}")
    if ln.get("control_number"):
        segs.append(f"REF*6R*{_v(ln['control_number'], 'line control number')}")
    return segs


def write_837p(
    claim: ClaimDict,
    parties: Parties,
    *,
    interchange_control: int,
    created: str,
    time_hhmm: str = "0000",
    usage: str = "P",
) -> str:
    """One interchange with one 837P transaction holding ``claim`` (segments end with ``~\\n``).

    ``created`` is the interchange date (YYYY-MM-DD) and ``interchange_control`` the ISA13
    number (1-999999999): the caller owns both, so the same inputs give the same bytes."""
    if not 0 < interchange_control < 1_000_000_000:
        raise WriteError("interchange control number must be 1..999999999")
    status = claim.get("status") or "submitted"
    freq = claim.get("frequency_code") or _FREQUENCY.get(status)
    if freq is None:
        raise WriteError(f"claim status {status!r} has no claim frequency code")
    if freq in ("7", "8") and not claim.get("payer_claim_control_number"):
        raise WriteError("a replacement or void claim needs the payer's claim control number (REF*F8)")
    p = parties
    ctl = f"{interchange_control:09d}"
    d8 = _d8(created)
    sender, receiver = _v(p.sender_id, "sender id"), _v(p.receiver_id, "receiver id")
    isa = f"ISA*00*{'':10}*00*{'':10}*ZZ*{sender:<15}*ZZ*{receiver:<15}*{d8[2:]}*{time_hhmm}*^*00501*{ctl}*0*{usage}*:"
    st: list[str] = [
        f"ST*837*0001*{IMPLEMENTATION}",
        f"BHT*0019*00*{ctl}*{d8}*{time_hhmm}*CH",
        f"NM1*41*2*{_v(p.submitter_name, 'submitter')}*****46*{sender}",
        f"PER*IC*{_v(p.submitter_contact, 'contact')}*TE*{_v(p.submitter_phone, 'phone')}",
        f"NM1*40*2*{_v(p.receiver_name, 'receiver')}*****46*{receiver}",
        "HL*1**20*1",
        f"NM1*85*2*{_v(p.billing_provider_name, 'billing provider')}*****XX*{_v(p.billing_provider_npi, 'NPI')}",
        f"N3*{_v(p.billing_address[0], 'address')}",
        f"N4*{_v(p.billing_address[1], 'city')}*{_v(p.billing_address[2], 'state')}*{_v(p.billing_address[3], 'zip')}",
        f"REF*EI*{_v(p.billing_provider_tax_id, 'tax id')}",
        "HL*2*1*22*0",
        "SBR*P*18*******CI",
    ]
    member = _v(claim.get("member_id"), "member id")
    nm1_il = f"NM1*IL*1*{_v(p.subscriber_last, 'subscriber name')}*{_v(p.subscriber_first, 'subscriber name')}"
    st.append(nm1_il + (f"****MI*{member}" if member else ""))
    if p.subscriber_birth_date:
        st.append(f"DMG*D8*{_d8(p.subscriber_birth_date)}*{_v(p.subscriber_gender or 'U', 'gender')}")
    payer_id = _v(claim.get("payer_id"), "payer id")
    st.append(f"NM1*PR*2*{_v(claim.get('payer_name'), 'payer name')}" + (f"*****PI*{payer_id}" if payer_id else ""))
    pos = _v(claim.get("place_of_service") or "11", "place of service")
    st.append(f"CLM*{_v(claim['claim_id'], 'claim id')}*{_amt(claim.get('total_charge'))}***{pos}:B:{freq}*Y*A*Y*Y")
    lines = claim.get("lines") or []
    line_dates = [ln.get("service_date") for ln in lines]
    if claim.get("service_date") and (
        any(d is None for d in line_dates) or min(d for d in line_dates if d) != claim["service_date"]
    ):
        st.append(f"DTP*472*D8*{_d8(claim['service_date'])}")
    if claim.get("payer_claim_control_number"):
        st.append(f"REF*F8*{_v(claim['payer_claim_control_number'], 'payer claim control number')}")
    if claim.get("authorization_number"):
        st.append(f"REF*G1*{_v(claim['authorization_number'], 'authorization number')}")
    if claim.get("patient_id"):
        st.append(f"REF*EA*{_v(claim['patient_id'], 'medical record number')}")
    hi = _diagnoses(claim)
    if hi:
        st.append(f"HI*{hi}")
    n_dx = len(claim.get("diagnoses") or [])
    pointers = ":".join(str(i + 1) for i in range(min(n_dx, 4)))
    for n, ln in enumerate(lines, 1):
        st += _line(n, ln, pointers)
    st.append(f"SE*{len(st) + 1}*0001")
    segments = [isa, f"GS*HC*{sender}*{receiver}*{d8}*{time_hhmm}*1*X*{IMPLEMENTATION}", *st, "GE*1*1", f"IEA*1*{ctl}"]
    return "".join(s + "~\n" for s in segments)
