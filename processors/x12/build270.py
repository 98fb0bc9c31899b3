"""X12 5010 270 eligibility inquiry (005010X279A1): build one, and read one back.

Why our own builder: a 270 for one patient is 14-20 short segments whose content the
intake step already holds, so building it is string joining; the libraries were
measured (December 2026) and neither fits the hot path:

* ``x12sdk`` 2.2.0 (typed pydantic models, derived from LinuxForHealth x12): serializing
  one parsed TR3 270 with ``model.x12()`` runs at ~360/s on this machine (this module:
  tens of thousands/s, ``bench/bench_eligibility.py``), its import reads a ``.env`` file
  from the working directory into ``os.environ`` (``load_dotenv()`` in its ``__init__``),
  and building a 270 means filling its whole loop tree of models;
* ``pyx12`` 4.0.0 validates and converts but ships no 5010 270/271 map (only 4010 X092:
  "Map not found ... vriic=005010X279A1").

Correctness is pinned instead by reading every built 270 back with the project's own
tokenizer (:func:`read_270`, round-trip tests with generated inquiries) and by reading
the TR3's own 270 examples in the public corpus and rebuilding them segment for segment.

Layout written (TR3 names): ISA/GS(HS)/ST, BHT*0022*13, 2000A HL*20 + 2100A NM1*PR
(payer, PI), 2000B HL*21 + 2100B NM1*1P (provider, XX = NPI), 2000C HL*22 + TRN*1 +
NM1*IL (MI member id) + REF*6P group + DMG + DTP*291 + EQ, and when the patient is not
the subscriber a 2000D HL*23 with the TRN, NM1*03, DMG, INS*N*<relationship>, DTP and EQ
(the TR3 puts the inquiry on the patient's loop). Data is upper-cased and any delimiter
character in it is replaced by a space, so a name can never break the envelope.
Pure: the caller passes the time and the control numbers (``now`` never read here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from practiceflow.processors.base import Rejected
from practiceflow.processors.x12.tokenizer import tokenize

__all__ = ["Inquiry270", "Person270", "build_270", "read_270", "RELATIONSHIP_CODES"]

IMPLEMENTATION = "005010X279A1"
ELEMENT, REPETITION, COMPONENT, TERMINATOR = "*", "^", ":", "~"
# INS02 individual relationship codes the 270 allows for a dependent (X279A1 2100D INS02)
RELATIONSHIP_CODES: dict[str, str] = {"spouse": "01", "child": "19", "other": "34"}
_RELATIONSHIP_NAMES = {v: k for k, v in RELATIONSHIP_CODES.items()}
_UNSAFE = re.compile(r"[*^:~\r\n\x00-\x1f]")


@dataclass(frozen=True, slots=True)
class Person270:
    """A subscriber or dependent as a 270 names them (member id only for the subscriber)."""

    family_name: str
    given_name: str
    birth_date: str | None = None  # ISO YYYY-MM-DD
    sex: str | None = None  # F | M | U
    member_id: str | None = None
    group_number: str | None = None


@dataclass(frozen=True, slots=True)
class Inquiry270:
    """Everything one 270 carries. ``trace_number`` comes back in the 271's TRN*2."""

    trace_number: str
    payer_id: str
    payer_name: str
    provider_npi: str
    provider_name: str
    subscriber: Person270
    dependent: Person270 | None = None
    relationship: str | None = None  # spouse | child | other (when dependent is set)
    service_date: str | None = None  # ISO date of the visit (DTP*291)
    service_types: tuple[str, ...] = ("30",)
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "CLEARINGHOUSE"
    originator_id: str = "9PRACTFLOW"  # TRN03: 1 + 9 digits (EIN) or a 10-character id
    interchange_control: int = 1
    group_control: int = 1
    usage: str = "P"  # ISA15: P production, T test
    created_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)  # nothing is written from here; kept for callers' notes


def _clean(v: str | None, limit: int) -> str:
    if not v:
        return ""
    return _UNSAFE.sub(" ", v).strip().upper()[:limit]


def _d8(iso: str | None) -> str:
    return iso.replace("-", "")[:8] if iso else ""


def _seg(*elements: str) -> str:
    els = list(elements)
    while len(els) > 1 and els[-1] == "":
        els.pop()  # trailing empty elements are not written (X12 syntax rule)
    return ELEMENT.join(els)


def _person_segments(p: Person270, entity: str, service: list[str], trace: list[str], ins: str | None) -> list[str]:
    out = list(trace)
    out.append(
        _seg(
            "NM1",
            entity,
            "1",
            _clean(p.family_name, 60),
            _clean(p.given_name, 35),
            "",
            "",
            "",
            "MI" if p.member_id else "",
            _clean(p.member_id, 80),
        )
    )
    if p.group_number:
        out.append(_seg("REF", "6P", _clean(p.group_number, 50)))
    if p.birth_date or p.sex:
        out.append(_seg("DMG", "D8" if p.birth_date else "", _d8(p.birth_date), _clean(p.sex, 1)))
    if ins:
        out.append(_seg("INS", "N", ins))
    out.extend(service)
    return out


def build_270(q: Inquiry270) -> bytes:
    """The 270 interchange for ``q`` (ISA..IEA, ``~`` terminated, one segment per line)."""
    if q.dependent is not None and q.relationship is not None and q.relationship not in RELATIONSHIP_CODES:
        raise ValueError(f"a dependent's relationship is one of {sorted(RELATIONSHIP_CODES)} (or None: no INS)")
    if not q.subscriber.member_id:
        raise ValueError("the subscriber's member id is required (2100C NM109)")
    when = q.created_at or datetime(2000, 1, 1)  # noqa: DTZ001 - a naive stamp is only formatted
    d8, hhmm = when.strftime("%Y%m%d"), when.strftime("%H%M")
    ic, gc = q.interchange_control % 1_000_000_000, q.group_control % 1_000_000_000
    trace_id = _clean(q.trace_number, 50)
    trn = [_seg("TRN", "1", trace_id, _clean(q.originator_id, 10))]
    service = []
    if q.service_date:
        service.append(_seg("DTP", "291", "D8", _d8(q.service_date)))
    service.append(_seg("EQ", REPETITION.join(_clean(s, 2) for s in q.service_types if s) or "30"))
    body = [
        _seg("BHT", "0022", "13", trace_id, d8, hhmm),
        _seg("HL", "1", "", "20", "1"),
        _seg("NM1", "PR", "2", _clean(q.payer_name, 60), "", "", "", "", "PI", _clean(q.payer_id, 80)),
        _seg("HL", "2", "1", "21", "1"),
        _seg("NM1", "1P", "2", _clean(q.provider_name, 60), "", "", "", "", "XX", _clean(q.provider_npi, 80)),
        _seg("HL", "3", "2", "22", "1" if q.dependent is not None else "0"),
    ]
    if q.dependent is None:
        body += _person_segments(q.subscriber, "IL", service, trn, None)
    else:
        body += _person_segments(q.subscriber, "IL", [], [], None)
        body.append(_seg("HL", "4", "3", "23", "0"))
        body += _person_segments(
            replace(q.dependent, member_id=None, group_number=None),
            "03",
            service,
            trn,
            RELATIONSHIP_CODES[q.relationship] if q.relationship else None,
        )
    st = [_seg("ST", "270", "0001", IMPLEMENTATION), *body]
    st.append(_seg("SE", str(len(st) + 1), "0001"))
    isa = ELEMENT.join(
        (
            "ISA",
            "00",
            " " * 10,
            "00",
            " " * 10,
            "ZZ",
            f"{_clean(q.sender_id, 15):<15}",
            "ZZ",
            f"{_clean(q.receiver_id, 15):<15}",
            d8[2:],
            hhmm,
            REPETITION,
            "00501",
            f"{ic:09d}",
            "0",
            "T" if q.usage == "T" else "P",
            COMPONENT,
        )
    )
    segs = [
        isa,
        _seg("GS", "HS", _clean(q.sender_id, 15), _clean(q.receiver_id, 15), d8, hhmm, str(gc), "X", IMPLEMENTATION),
        *st,
        _seg("GE", "1", str(gc)),
        _seg("IEA", "1", f"{ic:09d}"),
    ]
    return (TERMINATOR + "\n").join(segs).encode("ascii", "replace") + (TERMINATOR + "\n").encode()


def _iso(d8: str) -> str | None:
    return f"{d8[:4]}-{d8[4:6]}-{d8[6:8]}" if len(d8) == 8 and d8.isdigit() else None


def read_270(raw: bytes) -> list[Inquiry270]:
    """Every inquiry in a 270 file, read with the project's tokenizer (the simulator's reader,
    and the round-trip check of :func:`build_270`). Raises :class:`Rejected` on non-270 input."""
    parsed = tokenize(raw)
    out: list[Inquiry270] = []
    for ic in parsed.interchanges:
        rep = ic.delimiters.repetition or REPETITION
        for group in ic.groups:
            for ts in group.transactions:
                if ts.set_id != "270":
                    raise Rejected("unsupported_transaction", f"expected a 270, found {ts.set_id or 'nothing'}")
                out.extend(_read_set(ts.segments, rep, ic, group.control_number))
    if not out:
        raise Rejected("no_records", "no 270 inquiry found")
    return out


def _el(seg: list[str], i: int) -> str:
    return seg[i].strip() if len(seg) > i else ""


def _read_set(segments: list[list[str]], rep: str, ic: object, group_control: str) -> list[Inquiry270]:
    payer_id = payer_name = npi = provider = ""
    created: datetime | None = None
    people: list[dict[str, object]] = []
    cur: dict[str, object] | None = None
    level = ""
    for seg in segments:
        sid = seg[0]
        if sid == "BHT":
            d, t = _el(seg, 4), _el(seg, 5)
            if len(d) == 8 and len(t) >= 4 and (d + t[:4]).isdigit():
                created = datetime.strptime(d + t[:4], "%Y%m%d%H%M")  # noqa: DTZ007 - the stamp as written
        elif sid == "HL":
            level = _el(seg, 3)
            cur = None
            if level in ("22", "23"):
                cur = {"level": level, "trace": None, "svc": (), "date": None}
                people.append(cur)
        elif sid == "NM1":
            if level == "20":
                payer_name, payer_id = _el(seg, 3), _el(seg, 9)
            elif level == "21":
                provider, npi = _el(seg, 3), _el(seg, 9)
            elif cur is not None:
                cur["person"] = Person270(_el(seg, 3), _el(seg, 4), member_id=_el(seg, 9) or None)
        elif cur is not None:
            if sid == "TRN":
                cur["trace"] = _el(seg, 2)
                cur["originator"] = _el(seg, 3)
            elif sid == "REF" and _el(seg, 1) == "6P":
                cur["group"] = _el(seg, 2)
            elif sid == "DMG":
                cur["dob"], cur["sex"] = _iso(_el(seg, 2)), _el(seg, 3) or None
            elif sid == "INS":
                cur["rel"] = _RELATIONSHIP_NAMES.get(_el(seg, 2), "other")
            elif sid == "DTP" and _el(seg, 1) == "291":
                cur["date"] = _iso(_el(seg, 3)[:8])
            elif sid == "EQ":
                cur["svc"] = tuple(x for x in _el(seg, 1).split(rep) if x)
    result: list[Inquiry270] = []
    sub: Person270 | None = None
    isa = getattr(ic, "isa", None) or []
    for p in people:
        base = p.get("person")
        if not isinstance(base, Person270):
            raise Rejected("malformed_segment", "a 2000C/D loop without NM1")
        person = replace(
            base,
            birth_date=p.get("dob"),  # type: ignore[arg-type]
            sex=p.get("sex"),  # type: ignore[arg-type]
            group_number=p.get("group"),  # type: ignore[arg-type]
        )
        if p["level"] == "22":
            sub = person
        if not p.get("svc"):
            continue  # a subscriber loop that only carries its dependent
        if sub is None:
            raise Rejected("malformed_segment", "a dependent loop without its subscriber")
        dependent = None if p["level"] == "22" else person
        result.append(
            Inquiry270(
                trace_number=str(p.get("trace") or ""),
                payer_id=payer_id,
                payer_name=payer_name,
                provider_npi=npi,
                provider_name=provider,
                subscriber=sub,
                dependent=dependent,
                relationship=p.get("rel") if dependent is not None else None,  # type: ignore[arg-type]
                service_date=p.get("date"),  # type: ignore[arg-type]
                service_types=p["svc"],  # type: ignore[arg-type]
                sender_id=_el(isa, 6) if isa else "",
                receiver_id=_el(isa, 8) if isa else "",
                originator_id=str(p.get("originator") or ""),
                interchange_control=int(_el(isa, 13)) if isa and _el(isa, 13).isdigit() else 0,
                group_control=int(group_control) if group_control.isdigit() else 0,
                usage=_el(isa, 15) if isa else "P",
                created_at=created,
            )
        )
    return result
