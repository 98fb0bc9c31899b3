"""271 (eligibility benefit response) -> ``EligibilityResponse``.

One ``EligibilityResponse`` per subscriber (2000C) / dependent (2000D); AAA rejections above them
are folded in. The field choices are listed in :mod:`practiceflow.processors.x12.normalize`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import _d8, _el, _hash, _name, _num, _opt, _Set

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import BenefitDict, EligibilityResponseDict, SourceRefDict


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
