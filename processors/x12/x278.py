"""X12 278 (005010X217) Health Care Services Review: the request we draft, the response we read.

Written in the style of the 837P writer (:mod:`practiceflow.processors.x12.write837`):
pure, the date and control numbers are arguments, a value an X12 element cannot carry
(a delimiter inside it, a diagnosis that is not ICD-10-CM, a drug with no HCPCS / NDC
code) is refused with :class:`WriteError` rather than changed. Both directions go through
the project's X12 tokenizer (:func:`practiceflow.processors.x12.tokenizer.tokenize`), so
the request a person signs is read back by the same code that reads the payer's answer
(``tests/processors/test_prior_auth.py`` round-trips it).

The request carries the authorization id in the patient event's TRN (2000E TRN*1), which
the payer echoes in its response: that is how a 278 response finds its authorization.

Response (HCR, 2000E/2000F): HCR01 action code A1 certified in total, A2 certified
partial, A3 not certified, A4 pended, A6 modified, C cancelled, CT contact payer, NA no
action required; HCR02 the payer's review (authorization) number; HCR03 the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from practiceflow.processors.x12.tokenizer import split_composite, tokenize

IMPLEMENTATION: Final = "005010X217"
ORIGINATOR: Final = "9PRCTFLOW0"  # TRN03 of our requests: a payer echoes it on the trace that answers them
ACTIONS: Final = {
    "A1": "approved",
    "A2": "partially_approved",
    "A3": "denied",
    "A4": "pended",
    "A6": "modified",
    "C": "cancelled",
    "CT": "contact_payer",
    "NA": "not_required",
}
_FORBIDDEN: Final = frozenset("*:~^\r\n")
_HCPCS_QUAL: Final = {"cpt": "HC", "hcpcs": "HC", "ndc": "N4"}


class WriteError(ValueError):
    """The request holds something a 278 cannot carry faithfully."""


@dataclass(frozen=True)
class Request278:
    """What a 278 request says: who asks whom, for which member, which service and why."""

    trace: str  # the authorization id's reference (TRN02), echoed by the payer
    payer_name: str
    payer_id: str
    requester_last: str
    requester_first: str
    requester_npi: str
    member_last: str
    member_first: str
    member_id: str
    birth_date: str | None  # YYYY-MM-DD
    sex: str | None  # M | F | U
    service_type: str  # UM03
    place_of_service: str  # UM04-1
    diagnoses: Sequence[str]  # ICD-10-CM, dotted or not
    procedure: str  # CPT/HCPCS (or NDC with qualifier N4)
    procedure_qualifier: str = "HC"
    quantity: float = 1.0
    service_date: str | None = None  # YYYY-MM-DD
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "UMO"


def _v(value: object, what: str) -> str:
    s = "" if value is None else str(value).strip()
    if any(c in _FORBIDDEN for c in s):
        raise WriteError(f"{what} {s!r} contains an X12 delimiter")
    return s


def _d8(iso: str | None) -> str:
    return (iso or "").replace("-", "")[:8]


def _qty(v: float) -> str:
    s = f"{v:.3f}".rstrip("0").rstrip(".")
    return s or "0"


def write_278(
    req: Request278, *, interchange_control: int, created: str, time_hhmm: str = "0000", usage: str = "P"
) -> str:
    """One interchange with one 278 request (segments end with ``~\\n``); same inputs, same bytes."""
    if not 0 < interchange_control < 1_000_000_000:
        raise WriteError("interchange control number must be 1..999999999")
    if not req.diagnoses:
        raise WriteError("a 278 request needs at least one diagnosis (HI)")
    if len(req.diagnoses) > 12:
        raise WriteError(f"{len(req.diagnoses)} diagnoses; HI carries 12")
    if not req.procedure:
        raise WriteError("a 278 request needs the service's procedure code (SV1)")
    ctl = f"{interchange_control:09d}"
    d8 = _d8(created)
    sender, receiver = _v(req.sender_id, "sender id"), _v(req.receiver_id, "receiver id")
    isa = f"ISA*00*{'':10}*00*{'':10}*ZZ*{sender:<15}*ZZ*{receiver:<15}*{d8[2:]}*{time_hhmm}*^*00501*{ctl}*0*{usage}*:"
    hi = "*".join(
        f"{'ABK' if i == 0 else 'ABF'}:{_v(dx, 'diagnosis').replace('.', '').upper()}"
        for i, dx in enumerate(req.diagnoses)
    )
    st = [
        f"ST*278*0001*{IMPLEMENTATION}",
        f"BHT*0007*13*{_v(req.trace, 'trace')}*{d8}*{time_hhmm}",
        "HL*1**20*1",
        f"NM1*X3*2*{_v(req.payer_name, 'payer name')}*****PI*{_v(req.payer_id, 'payer id')}",
        "HL*2*1*21*1",
        f"NM1*1P*1*{_v(req.requester_last, 'requester')}*{_v(req.requester_first, 'requester')}****XX*"
        f"{_v(req.requester_npi, 'requester NPI')}",
        "HL*3*2*22*1",
        f"NM1*IL*1*{_v(req.member_last, 'member name')}*{_v(req.member_first, 'member name')}****MI*"
        f"{_v(req.member_id, 'member id')}",
    ]
    if req.birth_date:
        st.append(f"DMG*D8*{_d8(req.birth_date)}*{_v(req.sex or 'U', 'sex')}")
    st += [
        "HL*4*3*EV*1",
        f"TRN*1*{_v(req.trace, 'trace')}*{ORIGINATOR}",
        f"UM*HS*I*{_v(req.service_type, 'service type')}*{_v(req.place_of_service, 'place of service')}:B",
    ]
    if req.service_date:
        st.append(f"DTP*472*D8*{_d8(req.service_date)}")
    st += [
        f"HI*{hi}",
        "HL*5*4*SS*0",
        f"SV1*{_v(req.procedure_qualifier, 'qualifier')}:{_v(req.procedure, 'procedure')}*0*UN*{_qty(req.quantity)}",
    ]
    st.append(f"SE*{len(st) + 1}*0001")
    segments = [isa, f"GS*HI*{sender}*{receiver}*{d8}*{time_hhmm}*1*X*{IMPLEMENTATION}", *st, "GE*1*1", f"IEA*1*{ctl}"]
    return "".join(s + "~\n" for s in segments)


@dataclass(frozen=True)
class Read278:
    """One 278 transaction as read back: enough to check a request and to act on a response."""

    purpose: str  # BHT02: 13 request, 11 response
    reference: str  # BHT03
    payer_name: str | None = None
    payer_id: str | None = None
    requester_npi: str | None = None
    member_id: str | None = None
    member_name: str | None = None
    birth_date: str | None = None
    traces: tuple[str, ...] = ()  # TRN02 of the patient event (ours, echoed)
    service_type: str | None = None
    place_of_service: str | None = None
    diagnoses: tuple[str, ...] = ()
    procedures: tuple[str, ...] = ()
    action_code: str | None = None  # HCR01 (the event level's, else the first service's)
    decision: str | None = None  # ACTIONS[action_code]
    authorization_number: str | None = None  # HCR02
    reason_code: str | None = None  # HCR03
    messages: tuple[str, ...] = ()
    rejections: tuple[str, ...] = field(default=())  # AAA03


def _el(seg: Sequence[str], i: int) -> str:
    return seg[i].strip() if len(seg) > i else ""


def _iso(d8: str) -> str | None:
    return f"{d8[:4]}-{d8[4:6]}-{d8[6:8]}" if len(d8) == 8 and d8.isdigit() else None


def read_278(data: str | bytes) -> list[Read278]:
    """Every 278 transaction in ``data`` (requests and responses), read with the project's tokenizer."""
    out: list[Read278] = []
    for ic in tokenize(data).interchanges:
        d = ic.delimiters
        for group in ic.groups:
            for ts in group.transactions:
                if ts.set_id != "278":
                    continue
                out.append(read_278_segments(ts.segments, d))
    return out


def read_278_segments(segments: Sequence[Sequence[str]], d: Any) -> Read278:
    """One 278 transaction's segments (ST..SE, as the tokenizer split them) read."""
    v: dict[str, Any] = {"purpose": "", "reference": ""}
    level = ""
    trns: list[tuple[str, str, str]] = []  # (TRN01, TRN02, TRN03) of the patient event and service levels
    dx: list[str] = []
    procs: list[str] = []
    msgs: list[str] = []
    rej: list[str] = []
    hcr: list[tuple[str, Sequence[str]]] = []
    for seg in segments:
        sid = seg[0]
        if sid == "BHT":
            v["purpose"], v["reference"] = _el(seg, 2), _el(seg, 3)
        elif sid == "HL":
            level = _el(seg, 3)
        elif sid == "NM1":
            who = _el(seg, 1)
            if who == "X3":
                v["payer_name"], v["payer_id"] = _el(seg, 3) or None, _el(seg, 9) or None
            elif who == "1P":
                v["requester_npi"] = _el(seg, 9) or None
            elif who == "IL":
                v["member_id"] = _el(seg, 9) or None
                v["member_name"] = ", ".join(p for p in (_el(seg, 3), _el(seg, 4)) if p) or None
        elif sid == "DMG":
            v["birth_date"] = _iso(_el(seg, 2))
        elif sid == "TRN" and level in ("EV", "SS"):
            trns.append((_el(seg, 1), _el(seg, 2), _el(seg, 3)))
        elif sid == "UM":
            v["service_type"] = _el(seg, 3) or None
            v["place_of_service"] = (split_composite(_el(seg, 4), d) or [""])[0] or None
        elif sid == "HI":
            for el in seg[1:]:
                parts = split_composite(el.strip(), d)
                if len(parts) > 1 and parts[1]:
                    dx.append(parts[1])
        elif sid in ("SV1", "SV2"):  # the procedure composite: SV101, SV202
            parts = split_composite(_el(seg, 1 if sid == "SV1" else 2), d)
            if len(parts) > 1:
                procs.append(parts[1])
        elif sid == "HCR":
            hcr.append((level, seg))
        elif sid == "MSG":
            msgs.append(_el(seg, 1))
        elif sid == "AAA":
            rej.append(_el(seg, 3))
    if hcr:
        ev = next((s for lvl, s in hcr if lvl == "EV"), hcr[0][1])
        code = _el(ev, 1)
        v["action_code"], v["decision"] = code, ACTIONS.get(code, "unknown")
        v["authorization_number"] = _el(ev, 2) or None
        v["reason_code"] = _el(ev, 3) or None
    return Read278(
        **v,
        traces=_ours_first(trns),
        diagnoses=tuple(dx),
        procedures=tuple(procs),
        messages=tuple(m for m in msgs if m),
        rejections=tuple(r for r in rej if r),
    )


def _ours_first(trns: list[tuple[str, str, str]]) -> tuple[str, ...]:
    """The trace numbers of a response, the one that answers our request first.

    A payer echoes our trace as ``TRN*2*<ours>*9PRCTFLOW0`` (TRN01 2: referenced transaction)
    and often adds its own ``TRN*1*<its trace>*<its id>``, sometimes before ours; taking the
    first TRN would look the authorization up by the payer's number and park the answer."""

    def rank(t: tuple[str, str, str]) -> int:
        return 0 if t[2] == ORIGINATOR else 1 if t[0] == "2" else 2

    return tuple(t[1] for t in sorted(trns, key=rank) if t[1])


def response_fields(r: Read278) -> Mapping[str, Any]:
    """The AuthorizationResponse fields of a read 278 response (see schemas/models.py)."""
    return {
        "trace_number": r.traces[0] if r.traces else None,
        "payer_id": r.payer_id,
        "payer_name": r.payer_name,
        "member_id": r.member_id,
        "patient_name": r.member_name,
        "action_code": r.action_code,
        "decision": r.decision or ("rejected" if r.rejections else "unknown"),
        "authorization_number": r.authorization_number,
        "reason_code": r.reason_code,
        "service_codes": list(r.procedures),
        "messages": list(r.messages),
        "rejections": list(r.rejections),
    }
