"""999 / 997 (implementation / functional acknowledgment) and TA1 (interchange ack) -> ``InterchangeAck``.

One ``InterchangeAck`` per acknowledgment set and one per TA1, with a readable line per
IK3/CTX/IK4/IK5/AK9 error (the code tables below carry the TR3 wording).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import FEED, _el, _hash, _Run, _sent_at, _Set
from practiceflow.processors.x12.tokenizer import Interchange

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import InterchangeAckDict, SourceRefDict


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
