"""277 / 277CA (claim status, claim acknowledgment) -> ``ClaimStatus``.

One ``ClaimStatus`` per claim-level STC composite; the rules for provider / receiver-level STCs
are in :mod:`practiceflow.processors.x12.normalize` (the entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import _d8, _el, _hash, _name, _num, _opt, _Set

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import ClaimStatusDict, SourceRefDict


_277_ACCEPTED = frozenset(("A0", "A1", "A2", "A5"))
_277_REJECTED = frozenset(("A3", "A4", "A6", "A7", "A8"))
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
