"""HL7 v2 -> practiceflow records (plain dicts shaped like ``schemas/avro/*.avsc``).

``normalize_hl7`` is a pure function (see ``processors/base.py``). Supported:

=====================  ===========================================================
ADT A01 A02 A03 A04    Patient (+ Encounter from PV1, + Coverage per IN1, + Condition
A05 A06 A07 A08 A28    per DG1, + AllergyIntolerance per AL1; A40: ``merged_from`` from
A31 A40                MRG-1, one Patient per PID/MRG pair)
ADT A24, A37           IdentityLink (link / unlink) with both PIDs' identifiers
ORU R01                Patient + Order per OBR + Observation per OBX (NTE -> notes)
ORM O01, OML O21       Patient + Order per ORC/OBR group + Observation per OBX (the
                       ask-at-order-entry answers, ``order_id`` = their order)
                       + Coverage per IN1 + AllergyIntolerance per AL1
SIU S12 S13 S14 S15    Appointment (+ Patient when PID has an id)
RDE O11, OMP O09       Patient + MedicationOrder per ORC group (RXE/RXO/RXR/TQ1)
MDM T02                Document (TXA + OBX text; ED payloads become a short marker)
                       (+ Patient when PID has an id)
DFT P03                Patient + Encounter, with a warning (no charge record type)
VXU V04                Patient + Immunization per RXA (RXR route/site; its OBX nested)
OUL R22                as ORU: Patient + Order per OBR + Observation per OBX (SPM/SAC
                       specimen segments are not mapped yet: warned)
REF I12                Patient + Order for the referral (RF1, referring PRD, DG1 codes)
                       + Condition per DG1 + Coverage per IN1
=====================  ===========================================================

A segment a message type does not map leaves one warning per segment type,
``unmapped_segment:<ID>`` (see ``_MAPPED``). Anything else is
``Rejected("unsupported_message_type")``; ACKs are
``Rejected("not_clinical_ack")``; header problems get their own codes (``missing_msh``,
``invalid_encoding_characters``, ``truncated_msh``, ``missing_control_id``,
``missing_version``, ``unsupported_version``, ``missing_message_type``, ...).

Conventions:

* ``message_id`` = hash of (MSH-3, MSH-4, MSH-10, content hash); a missing MSH-10 is a
  rejection. The content hash covers every segment after MSH (line endings normalized),
  so an identical resend (even with a new MSH-7 time) keeps its id and is a duplicate,
  while an interface engine that reuses a control id for a different message (common
  after its restart) gets a new id and the message is processed. ``control_key`` (the
  hash of MSH-3/4/10 alone) lets the worker flag such a reuse (``control_id_reused``).
* keys are ``entity_key(practice_id, patient_id[, entity_id])`` (Patient: no entity id).
* ``patient_id`` is the identifier the practice's identity policy chooses among PID-3
  (then PID-2, PID-4) by type and assigning authority (``processors/identity``; default
  MR, MRN, PI, PT, else an untyped one), never an SSN, licence, passport or member id;
  with none keyable the patient is ``unresolved:<message>`` and keeps its identifiers.
  SSNs (typed SS, PID-19, or written 123-45-6789) stay only masked (``***-**-6789``).
* ids the message does not give (an immunization without ORC, a coverage without a
  member id) include the patient id, so two patients' records never share one.
* every record carries ``source`` = {feed "hl7v2", message_id, message_type, sent_at
  (MSH-7 as ISO 8601)}; the records of one message share that one dict (read-only).
* dates keep the sender's precision (``dates.hl7_to_iso``); a malformed date is kept
  raw with a warning, or rejected (``malformed_date``) in strict mode. Strict mode also
  runs hl7apy's STRICT parse + validation (``hl7_validation_failed`` with its text).
* speed: values are read with splits on the raw segment strings; small bounded memo
  tables (dates, OBX-3 codings, versions) never change results, only their cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from operator import itemgetter
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, Rejected, ascii_digits, guarded
from practiceflow.processors.hl7.dates import hl7_to_iso
from practiceflow.processors.hl7.parser import Message, parse
from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    SSN_SYSTEMS,
    IdentityPolicy,
    choose,
    classify,
    keep,
    unresolved_id,
)
from practiceflow.processors.identity.links import identity_link

__all__ = ["normalize_hl7", "message_id_for", "content_hash", "SUPPORTED", "FEED", "UNMAPPED_PREFIX"]

FEED = "hl7v2"
_VERSION_RE = re.compile(r"2\.[3-8](?:\.\d{1,2})?\Z")
_VERSIONS_OK: set[str] = set()  # memo of versions that passed _VERSION_RE (bounded)

_ADT_EVENTS = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A28", "A31", "A40")
_LINK_EVENTS = {"A24": "link", "A37": "unlink"}
_ENCOUNTER_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "arrived",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
}
_PATIENT_CLASS = {
    "I": "inpatient",
    "O": "outpatient",
    "E": "emergency",
    "P": "preadmit",
    "R": "recurring",
    "B": "obstetrics",
    "C": "commercial",
    "N": "not-applicable",
    "U": "unknown",
}
_DOC_TYPES = {  # HL7 table 0270
    "AR": "Autopsy report",
    "CD": "Cardiodiagnostics",
    "CN": "Consultation",
    "DI": "Diagnostic imaging",
    "DS": "Discharge summary",
    "ED": "Emergency department report",
    "HP": "History and physical examination",
    "OP": "Operative report",
    "PC": "Psychiatric consultation",
    "PH": "Psychiatric history",
    "PN": "Procedure note",
    "PR": "Progress note",
    "SP": "Surgical pathology",
    "TS": "Transfer summary",
}
_DOC_STATUS = {  # HL7 table 0271
    "AU": "authenticated",
    "DI": "dictated",
    "DO": "documented",
    "IN": "incomplete",
    "IP": "in-progress",
    "LA": "legally-authenticated",
    "PA": "pre-authenticated",
}
_TEXT_TYPES = frozenset(("TX", "FT", "ST", "TN", "IS", "ID", "GTS"))
_CODED_TYPES = frozenset(("CE", "CWE", "CNE", "CF", "CV", "CO"))
_DATE_TYPES = frozenset(("DT", "DTM", "TS"))
_DURATION_UNITS = {
    "M": 1.0,
    "MIN": 1.0,
    "MINS": 1.0,
    "MINUTE": 1.0,
    "MINUTES": 1.0,
    "H": 60.0,
    "HR": 60.0,
    "HRS": 60.0,
    "HOUR": 60.0,
    "HOURS": 60.0,
    "S": 1 / 60,
    "SEC": 1 / 60,
    "SECOND": 1 / 60,
    "SECONDS": 1 / 60,
    "D": 1440.0,
    "DAY": 1440.0,
    "DAYS": 1440.0,
}


def _msh_value(msg: Message, raw: str) -> str:
    """First repetition/subcomponent of an MSH component, decoded and stripped."""
    if msg.rs in raw:
        raw = raw.split(msg.rs, 1)[0]
    if msg.ss in raw:
        raw = raw.split(msg.ss, 1)[0]
    if msg.es in raw:
        raw = msg.unescape(raw)
    return raw.strip()


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def message_id_for(msh3: str, msh4: str, msh10: str, content_sha: str = "") -> str:
    """Stable message id: hash of sending application, sending facility, control id and,
    when given, the content hash (``content_hash``). Without it: the control key."""
    if content_sha:
        return _sha(msh3.strip(), msh4.strip(), msh10.strip(), content_sha)
    return _sha(msh3.strip(), msh4.strip(), msh10.strip())


def content_hash(raw: bytes | bytearray | memoryview | str) -> str:
    """SHA-256 of the segments after MSH, with CR/LF/CRLF endings and trailing framing
    normalized: the same clinical content hashes the same whatever MSH-7 or the line ending."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    if b"\n" in data:
        data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    cut = data.find(b"\r")
    body = data[cut + 1 :].strip(b"\r\x0b\x1c \t\x00") if cut >= 0 else b""
    return hashlib.sha256(body).hexdigest()[:32]


class _Ctx:
    """Per-message state: delimiters, warnings, and small value helpers."""

    __slots__ = (
        "msg",
        "fs",
        "cs",
        "rs",
        "ss",
        "es",
        "strict",
        "warnings",
        "practice_id",
        "source",
        "out",
        "trigger",
        "plain",
        "nopad",
        "pad1",
        "pad2",
        "pad3",
        "pad4",
        "policy",
        "unresolved",
    )

    def __init__(
        self,
        msg: Message,
        practice_id: str,
        strict: bool,
        source: dict[str, Any],
        warnings: list[str],
        trigger: str,
        plain: bool = False,
        policy: IdentityPolicy = DEFAULT_POLICY,
    ) -> None:
        self.msg = msg
        self.policy = policy
        self.unresolved = 0  # unresolved patients so far in this message
        self.fs = msg.fs
        self.cs = msg.cs
        # blank padding next to a delimiter ("| x", "x |", "^ x", "x ^")
        self.pad1 = msg.fs + " "
        self.pad2 = " " + msg.fs
        self.pad3 = msg.cs + " "
        self.pad4 = " " + msg.cs
        self.rs = msg.rs
        self.ss = msg.ss
        self.es = msg.es
        self.strict = strict
        self.warnings = warnings
        self.practice_id = practice_id
        self.source = source
        self.out: list[Normalized] = []
        self.trigger = trigger
        # No escape, repetition or subcomponent characters anywhere after MSH-2: values
        # can be read with a split and a strip.
        self.plain = plain
        self.nopad: bool | None = None  # msg.nopad, read when the first OBX needs it

    # ---- leaves (hot: written out inline, no helper calls on the common path)
    def leaf(self, raw: str) -> str | None:
        """Decode and strip one leaf; None for empty and for the HL7 null ``""``."""
        if not raw:
            return None
        if self.es in raw:
            raw = self.msg.unescape(raw)
        raw = raw.strip()
        if not raw or raw == '""':
            return None
        return raw

    def first(self, field: str) -> str:
        """The raw first repetition of a field."""
        rs = self.rs
        return field.split(rs, 1)[0] if rs in field else field

    def comp(self, field: str, i: int = 1) -> str | None:
        """Component i (1-based), first subcomponent, of the first repetition."""
        if not field:
            return None
        if self.rs in field:
            field = field.split(self.rs, 1)[0]
        if i == 1:
            if self.cs in field:
                field = field.split(self.cs, 1)[0]
        else:
            parts = field.split(self.cs, i)
            if i > len(parts):
                return None
            field = parts[i - 1]
        if self.ss in field:
            field = field.split(self.ss, 1)[0]
        if self.es in field:
            field = self.msg.unescape(field)
        field = field.strip()
        if not field or field == '""':
            return None
        return field

    def comps(self, rep: str) -> list[str | None]:
        """All components (first subcomponent each) of one raw repetition, decoded."""
        ss = self.ss
        es = self.es
        out: list[str | None] = []
        for c in rep.split(self.cs):
            if c:
                if ss in c:
                    c = c.split(ss, 1)[0]
                if es in c:
                    c = self.msg.unescape(c)
                c = c.strip()
                out.append(c if c and c != '""' else None)
            else:
                out.append(None)
        return out

    def reps(self, field: str) -> list[str]:
        if not field:
            return []
        return field.split(self.rs)

    def text(self, field: str, sep: str = "\n") -> str | None:
        """A text field: every repetition decoded (delimiters kept), joined."""
        if not field:
            return None
        unescape = self.msg.unescape
        lines = [unescape(r) for r in field.split(self.rs)] if self.rs in field else [unescape(field)]
        out = sep.join(lines).strip()
        if "\r" in out:
            out = out.replace("\r\n", "\n").replace("\r", "\n")
        return out or None

    def units(self, field: str) -> str | None:
        """CE/CWE units: the code (e.g. UCUM "mg/dL"), or the text when the code is a bare number."""
        if not field:
            return None
        code = self.comp(field, 1)
        if code is not None and not ascii_digits(code):
            return code
        return self.comp(field, 2) or code

    def coding(self, field: str) -> dict[str, str | None]:
        """CE/CWE/CNE first repetition -> Coding (falls back to the alternate triplet)."""
        if not field:
            return {"system": None, "code": None, "display": None}
        if self.rs in field:
            field = field.split(self.rs, 1)[0]
        c = self.comps(field)
        n = len(c)
        if n < 3:
            c += _NONE6[: 6 - n]
        code, display, system = c[0], c[1], c[2]
        if code is None and display is None and n > 3 and (c[3] is not None or (n > 4 and c[4] is not None)):
            c += _NONE6[: max(0, 6 - n)]
            return {"system": c[5], "code": c[3], "display": c[4]}
        return {"system": system, "code": code, "display": display}

    def cwe_text(self, field: str) -> str | None:
        """Display text of a coded value, else its code."""
        if not field:
            return None
        return self.comp(field, 2) or self.comp(field, 1)

    def person(self, field: str) -> str | None:
        """XCN/XPN (first repetition) -> "Family, Given Middle (id)"."""
        if not field:
            return None
        c = self.comps(self.first(field))
        c += [None] * (4 - len(c))
        ident, family, given, middle = c[0], c[1], c[2], c[3]
        name = family or ""
        rest = " ".join(x for x in (given, middle) if x)
        if rest:
            name = f"{name}, {rest}" if name else rest
        if name and ident:
            return f"{name} ({ident})"
        return name or ident

    def location(self, field: str) -> str | None:
        """PL -> "point of care/room/bed @ facility" (or the description)."""
        if not field:
            return None
        c = self.comps(self.first(field))
        c += [None] * (9 - len(c))
        where = "/".join(x for x in (c[0], c[1], c[2]) if x)
        if c[3]:
            where = f"{where} @ {c[3]}" if where else c[3]
        return where or c[8] or c[6]

    # ---- dates
    def date(self, raw_field: str, where: str) -> str | None:
        """TS/DTM/DT field (first component) -> ISO 8601; malformed -> raw + warning
        (non-strict) or Rejected (strict)."""
        if not raw_field:
            return None
        return self.date_value(self.comp(raw_field, 1), where)

    def date_value(self, v: str | None, where: str) -> str | None:
        if v is None:
            return None
        iso = hl7_to_iso(v)
        if iso is not None:
            return iso
        if self.strict:
            raise Rejected("malformed_date", f"{where}: {v!r} is not an HL7 date/time")
        self.warnings.append(f"malformed_date {where}: {v[:40]!r}")
        return v

    # ---- output
    def emit(self, record_type: str, patient_id: str | None, entity_id: str | None, value: dict[str, Any]) -> None:
        # key == entity_key(practice_id, patient_id[, entity_id]), written out for speed
        if record_type == "Patient":
            key = f"{self.practice_id}/{patient_id or '-'}"
        else:
            key = f"{self.practice_id}/{patient_id or '-'}/{entity_id or '-'}"
        self.out.append(_normalized(record_type, key, value))

    def src(self) -> dict[str, Any]:
        # One SourceRef dict per message, shared by its records (treat as read-only).
        return self.source


# Normalized is a NamedTuple; tuple.__new__ builds one in a single C call (its
# generated __new__ is a Python function). Same class, equal to Normalized(...).
_TUPLE_NEW = tuple.__new__


def _normalized(record_type: str, key: str, value: dict[str, Any]) -> Normalized:
    return _TUPLE_NEW(Normalized, (record_type, key, value))


# OBX-3 text -> (system, code, display) for escape-free values with the standard
# component separator. A memo only (bounded): results do not depend on it.
_CODINGS: dict[str, tuple[Any, ...]] = {}

_NONE6: list[None] = [None] * 6
_PAD: list[str] = [""] * 32


def _raw_lines(msg: Message) -> list[str]:
    if len(msg.lines) == len(msg.segs):
        return msg.lines
    return [msg.fs.join(f) for f in msg.segs]


def _strip_none(x: str) -> str | None:
    return x.strip() or None


def _f(seg: list[str], n: int) -> str:
    return seg[n] if n < len(seg) else ""


# --------------------------------------------------------------------------- patient
def _patient(ctx: _Ctx, pid: list[str], event: str | None) -> dict[str, Any] | None:
    """PID -> Patient dict, or None when the PID carries no identifier at all."""
    n = len(pid)
    if n < 31:
        pid = pid + _PAD[: 31 - n]
    cs, rs, ss = ctx.cs, ctx.rs, ctx.ss
    joined = "".join(pid)
    # no escapes and no HL7 null ("") in this PID: a strip is all a value needs
    leaf = _strip_none if ctx.es not in joined and '""' not in joined else ctx.leaf
    identifiers: list[dict[str, Any]] = []
    fields: list[int] = []
    for fno in (3, 2, 4):
        raw = pid[fno]
        if not raw:
            continue
        for rep in raw.split(rs) if rs in raw else (raw,):
            if not rep:
                continue
            c = rep.split(cs, 5)
            first = c[0]
            value = leaf(first.split(ss, 1)[0] if ss in first else first)
            if value is None:
                continue
            k = len(c)
            system = typ = None
            if k > 3 and c[3]:
                hd = c[3]
                if ss in hd:
                    hd_parts = hd.split(ss, 2)
                    system = leaf(hd_parts[0]) or leaf(hd_parts[1])
                else:
                    system = leaf(hd)
            if k > 4 and c[4]:
                t = c[4]
                typ = leaf(t.split(ss, 1)[0] if ss in t else t)
            ident = {"value": value, "system": system, "type": typ}
            if identifiers and ident in identifiers:
                continue
            identifiers.append(ident)
            fields.append(fno)
    if not identifiers:
        return None
    patient_id = _patient_key(ctx, identifiers, fields, pid[19])

    family = None
    given: list[str] = []
    names = pid[5]
    if names:
        chosen = names
        if rs in names:
            reps = names.split(rs)
            chosen = reps[0]
            for r in reps:
                c = r.split(cs, 7)
                if len(c) > 6 and c[6].strip() == "L":
                    chosen = r
                    break
        c = chosen.split(cs, 3)
        x = c[0]
        family = leaf(x.split(ss, 1)[0] if ss in x else x)
        for x in c[1:3]:
            if x:
                g = leaf(x.split(ss, 1)[0] if ss in x else x)
                if g:
                    given.append(g)

    address = None
    addr = pid[11]
    if addr:
        for rep in addr.split(rs) if rs in addr else (addr,):
            c = rep.split(cs, 6)
            if len(c) < 6:
                c += _PAD[: 6 - len(c)]
            first = c[0]
            street = leaf(first.split(ss, 1)[0] if ss in first else first)
            other = leaf(c[1]) if c[1] else None
            city = leaf(c[2]) if c[2] else None
            state = leaf(c[3]) if c[3] else None
            postal = leaf(c[4]) if c[4] else None
            country = leaf(c[5]) if c[5] else None
            if (
                street is None
                and other is None
                and city is None
                and state is None
                and postal is None
                and country is None
            ):
                continue
            address = {
                "line": [x for x in (street, other) if x],
                "city": city,
                "state": state,
                "postal_code": postal,
                "country": country,
            }
            break

    phones: list[str] = []
    for raw in (pid[13], pid[14]):
        if raw:
            for rep in raw.split(rs) if rs in raw else (raw,):
                c = rep.split(cs, 3)
                p = leaf(c[0])
                if (
                    p is None
                    or (len(c) > 1 and c[1].strip() == "NET")
                    or (len(c) > 2 and c[2].strip().upper() in ("INTERNET", "X.400"))
                ):
                    p = _phone(ctx, rep) if len(c) > 1 else None
                if p and p not in phones:
                    phones.append(p)

    raw = pid[7]
    if raw:
        if cs in raw:
            raw = raw.split(cs, 1)[0]
        v = leaf(raw)
        birth = (hl7_to_iso(v) or ctx.date_value(v, "PID-7")) if v else None
    else:
        birth = None
    indicator = pid[30].strip().upper()
    deceased = indicator == "Y" or (indicator != "N" and bool(pid[29]) and ctx.comp(pid[29], 1) is not None)
    sex: str | None = pid[8]
    if sex:
        sex = leaf(sex.split(cs, 1)[0] if cs in sex else sex)
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "identifiers": identifiers,
        "family_name": family,
        "given_names": given,
        "birth_date": birth,
        "sex": sex or None,
        "address": address,
        "phones": phones,
        "deceased": deceased,
        "merged_from": [],
        "event": event,
        "source": ctx.source,
    }


def _patient_key(ctx: _Ctx, identifiers: list[dict[str, Any]], fields: list[int], ssn_field: str) -> str:
    """The patient id the practice's identity policy allows (processors/identity), or an
    unresolved marker; masks SSNs in ``identifiers`` in place (PID-19 joins them, typed SS).
    Hot path: one MR identifier and no PID-19 costs one ``choose`` fast-path call."""
    policy = ctx.policy
    if ssn_field:
        ssn = ctx.comp(ssn_field, 1)
        if ssn is not None:
            digits = "".join(c for c in ssn if c.isascii() and c.isdigit())
            listed = False  # the same SSN already in PID-2/3/4
            for i, ident in enumerate(identifiers):
                typ = ident["type"]
                if (
                    len(digits) == 9
                    and (typ is None or typ.upper() in ("SS", "SSN"))
                    and "".join(c for c in ident["value"] if c.isascii() and c.isdigit()) == digits
                ):
                    listed = True
                    if typ is None:  # an untyped value that is the PID-19 SSN is an SSN
                        identifiers[i] = {"value": ident["value"], "system": ident["system"], "type": "SS"}
            if not listed:
                identifiers.append({"value": ssn, "system": None, "type": "SS"})
                fields.append(19)
    first = identifiers[0]
    typ = first["type"]
    system = first["system"]
    if (
        typ is not None
        and typ == policy.types[0]
        and not policy.authorities
        and len(first["value"]) != 11
        and (system is None or (system.lower() not in SSN_SYSTEMS and not system.endswith("/us-ssn")))
    ):
        chosen: int | None = 0  # fast path (compiled, no call): the policy's first type, first, not SSN-shaped
    else:
        chosen = choose(identifiers, policy)
    patient_id: str
    if chosen is None:
        ctx.unresolved += 1
        patient_id = unresolved_id(ctx.source["message_id"], ctx.unresolved)
        ctx.warnings.append(f"patient_unresolved: no keyable identifier among {len(identifiers)} in PID")
    else:
        patient_id = identifiers[chosen]["value"]
        if fields[chosen] != 3:
            ctx.warnings.append(f"patient_id_from_PID-{fields[chosen]}")
    if chosen is None or len(identifiers) > 1:
        clear = policy.ssn_in_clear
        for j, ident in enumerate(identifiers):
            if j == chosen:  # the chosen identifier is never an SSN
                continue
            typ = ident["type"]
            v = ident["value"]
            if typ == "SS" and not clear and len(v) >= 4 and v[-4:].isdigit() and v[-4:].isascii():
                # the common SSN repetition, masked inline (same result as keep/mask_ssn)
                identifiers[j] = {"value": "***-**-" + v[-4:], "system": ident["system"], "type": typ}
            else:
                kept = keep(ident, policy)
                if kept is not ident:
                    identifiers[j] = kept
    return patient_id


def _phone(ctx: _Ctx, rep: str) -> str | None:
    if not rep:
        return None
    c = ctx.comps(rep)
    c += [None] * (12 - len(c))
    use, equip = c[1], c[2]
    if use == "NET" or (equip and equip.upper() in ("INTERNET", "X.400")):
        return None
    if c[0]:
        return c[0]
    if c[11]:
        return c[11]
    local = c[6]
    if not local:
        return None
    num = f"({c[5]}) {local}" if c[5] else local
    if c[4]:
        num = f"+{c[4].lstrip('+')} {num}"
    if c[7]:
        num = f"{num} x{c[7]}"
    return num


def _require_patient(ctx: _Ctx, pid: list[str] | None, event: str | None = None) -> dict[str, Any]:
    if pid is None:
        raise Rejected("missing_pid_segment", f"{ctx.source['message_type']} has no PID segment")
    p = _patient(ctx, pid, event)
    if p is None:
        raise Rejected("missing_patient_id", "PID-3 (and PID-2/PID-4) carry no patient identifier")
    return p


# --------------------------------------------------------------------------- encounter / coverage
def _encounter(
    ctx: _Ctx, patient_id: str, pv1: list[str], pv2: list[str] | None, reason: str | None, event: str | None
) -> dict[str, Any] | None:
    enc_id = ctx.comp(_f(pv1, 19), 1) or ctx.comp(_f(pv1, 50), 1)
    admit = ctx.date(_f(pv1, 44), "PV1-44")
    discharge = ctx.date(_f(pv1, 45), "PV1-45")
    klass = ctx.comp(_f(pv1, 2), 1)
    if enc_id is None:
        if admit is None:
            if klass not in (None, "N") or len(pv1) > 4:
                ctx.warnings.append("pv1_without_visit_number_or_admit_time: no Encounter")
            return None
        enc_id = "admit-" + _sha(patient_id, admit, klass or "")[:16]
    status = _ENCOUNTER_STATUS.get(event or "")
    if status is None and discharge:
        status = "finished"
    if pv2 is not None:
        reason = ctx.cwe_text(_f(pv2, 3)) or reason
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "encounter_id": enc_id,
        "status": status,
        "encounter_class": _PATIENT_CLASS.get(klass, klass) if klass else None,
        "event": event,
        "location": ctx.location(_f(pv1, 3)),
        "attending_provider": ctx.person(_f(pv1, 7)),
        "admit_at": admit,
        "discharge_at": discharge,
        "reason": reason,
        "source": ctx.src(),
    }


def _coverage(ctx: _Ctx, patient_id: str, in1: list[str]) -> dict[str, Any]:
    payer_id = ctx.comp(_f(in1, 3), 1)
    payer_name = ctx.comp(_f(in1, 4), 1)
    plan_code = ctx.comp(_f(in1, 2), 1)
    plan_name = ctx.comp(_f(in1, 2), 2) or plan_code
    member_id = ctx.comp(_f(in1, 36), 1) or ctx.comp(_f(in1, 49), 1)
    group = ctx.comp(_f(in1, 8), 1)
    set_id = ctx.comp(_f(in1, 1), 1) or "1"
    payer = payer_id or payer_name or plan_code or "-"
    # The coverage id is a Kafka key part and a ClickHouse sort key, so it never carries the
    # member id itself (PHI; older Medicare ids are SSN-based): a digest of it stands in, the
    # id stays a value field. Without a member id the id names the patient: two patients'
    # "AETNA:1" must not collide.
    if member_id:
        coverage_id = f"{payer}:m{hashlib.sha256(f'{payer}|{member_id}'.encode()).hexdigest()[:20]}"
    else:
        coverage_id = f"{payer}:{patient_id}:{group or set_id}"
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "coverage_id": coverage_id,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "plan_name": plan_name,
        "member_id": member_id,
        "group_number": group,
        "subscriber_relationship": ctx.cwe_text(_f(in1, 17)),
        "period_start": ctx.date(_f(in1, 12), "IN1-12"),
        "period_end": ctx.date(_f(in1, 13), "IN1-13"),
        "status": None,
        "source": ctx.src(),
    }


def _emit_patient(ctx: _Ctx, p: dict[str, Any]) -> None:
    ctx.emit("Patient", p["patient_id"], "", p)


# --------------------------------------------------------------------------- DG1 / AL1
# DG1-6 diagnosis type (table 0052) -> FHIR verificationStatus: a final diagnosis is
# confirmed; admitting and working diagnoses are still provisional.
_DG1_VERIFICATION = {"F": "confirmed", "A": "provisional", "W": "provisional"}
# AL1-2 allergen type (table 0127, and the words some senders use) -> FHIR category
_ALLERGY_CATEGORY = {
    "DA": "medication",
    "DRUG": "medication",
    "FA": "food",
    "FOOD": "food",
    "EA": "environment",
    "AA": "environment",
    "PA": "environment",
    "LA": "environment",
}
_ALLERGY_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}  # AL1-4, table 0128


def _emit_condition(ctx: _Ctx, patient_id: str, dg1: list[str]) -> None:
    """ADT DG1 -> Condition, so diagnoses sent with ADT reach the problem list
    (the first DG1 still gives the encounter its reason text).

    DG1-5 (diagnosis date/time) -> onset, DG1-19 (attestation) -> recorded_at, as the
    HL7 v2-to-FHIR mapping does. The id is DG1-20 (the sender's diagnosis identifier)
    when sent, else a hash of patient + code, so a resend or an A08 update rewrites the
    same record instead of adding one."""
    code = ctx.coding(_f(dg1, 3))
    if code["display"] is None:
        code["display"] = ctx.comp(_f(dg1, 4), 1)
    if code["code"] is None and code["display"] is None:
        ctx.warnings.append("dg1_without_diagnosis: no Condition")
        return
    if code["system"] is None:
        code["system"] = ctx.comp(_f(dg1, 2), 1)  # DG1-2 coding method (deprecated, still sent)
    action = ctx.comp(_f(dg1, 21), 1)
    verification = "entered-in-error" if action == "D" else _DG1_VERIFICATION.get(ctx.comp(_f(dg1, 6), 1) or "")
    condition_id = ctx.comp(_f(dg1, 20), 1) or (
        "dg1-" + _sha(patient_id, code["system"] or "", code["code"] or code["display"] or "")[:16]
    )
    value = {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "condition_id": condition_id,
        "code": code,
        "clinical_status": None,  # v2 does not say; a person or the EHR's FHIR feed does
        "verification_status": verification,
        "onset": ctx.date(_f(dg1, 5), "DG1-5"),
        "recorded_at": ctx.date(_f(dg1, 19), "DG1-19"),
        "source": ctx.source,
    }
    ctx.emit("Condition", patient_id, condition_id, value)


def _emit_allergy(ctx: _Ctx, patient_id: str, al1: list[str]) -> None:
    """AL1 -> AllergyIntolerance (ADT, ORM, OML). The id hashes patient + allergen, so
    the same allergy sent again (every A08 repeats the list) updates one record."""
    allergen = ctx.coding(_f(al1, 3))
    if allergen["code"] is None and allergen["display"] is None:
        ctx.warnings.append("al1_without_allergen: no AllergyIntolerance")
        return
    atype = ctx.comp(_f(al1, 2), 1)
    sev = ctx.comp(_f(al1, 4), 1)
    severity = (_ALLERGY_SEVERITY.get(sev.upper()) or ctx.cwe_text(_f(al1, 4))) if sev else None
    reactions = [x for x in (ctx.cwe_text(r) for r in ctx.reps(_f(al1, 5))) if x]
    allergy_id = "al1-" + _sha(patient_id, allergen["system"] or "", allergen["code"] or allergen["display"] or "")[:16]
    value = {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "allergy_id": allergy_id,
        "allergen": allergen,
        "allergen_type": atype,
        "category": _ALLERGY_CATEGORY.get(atype.upper()) if atype else None,
        "severity": severity,
        "criticality": None,
        "reactions": reactions,
        "identified_at": ctx.date(_f(al1, 6), "AL1-6"),
        "clinical_status": None,
        "verification_status": None,
        "source": ctx.source,
    }
    ctx.emit("AllergyIntolerance", patient_id, allergy_id, value)


# --------------------------------------------------------------------------- ADT / DFT
def _adt(ctx: _Ctx, msg: Message, event: str) -> None:
    patient: dict[str, Any] | None = None
    pv1 = pv2 = None
    dg1_reason = None
    any_pid = False
    ft1 = 0

    def flush_encounter() -> None:
        nonlocal pv1, pv2, dg1_reason
        if patient is not None and pv1 is not None:
            enc = _encounter(ctx, patient["patient_id"], pv1, pv2, dg1_reason, event)
            if enc is not None:
                ctx.emit("Encounter", patient["patient_id"], enc["encounter_id"], enc)
        pv1 = pv2 = None
        dg1_reason = None

    for seg in msg.segs:
        name = seg[0]
        if name == "PID":
            flush_encounter()
            any_pid = True
            patient = _require_patient(ctx, seg, event)
            _emit_patient(ctx, patient)
        elif name == "PV1":
            flush_encounter()
            pv1 = seg
        elif name == "PV2":
            pv2 = seg
        elif name == "DG1":
            if dg1_reason is None:
                dg1_reason = ctx.comp(_f(seg, 4), 1) or ctx.cwe_text(_f(seg, 3))
            if patient is not None:
                _emit_condition(ctx, patient["patient_id"], seg)
        elif name == "IN1":
            if patient is not None:
                cov = _coverage(ctx, patient["patient_id"], seg)
                ctx.emit("Coverage", patient["patient_id"], cov["coverage_id"], cov)
        elif name == "AL1":
            if patient is not None:
                _emit_allergy(ctx, patient["patient_id"], seg)
        elif name == "MRG":
            if patient is not None:
                merged = []
                for n in (1, 4):
                    for rep in ctx.reps(_f(seg, n)):
                        v = ctx.comp(rep, 1)
                        if (
                            v
                            and classify({"value": v, "system": ctx.comp(rep, 4), "type": ctx.comp(rep, 5)})
                            == "forbidden"
                        ):
                            continue  # an SSN (or licence, member id) is never a merged-from id
                        if v and v not in merged and v != patient["patient_id"]:
                            merged.append(v)
                    if merged:
                        break
                patient["merged_from"].extend(m for m in merged if m not in patient["merged_from"])
        elif name == "FT1":
            ft1 += 1
    flush_encounter()
    if not any_pid:
        raise Rejected("missing_pid_segment", f"{ctx.source['message_type']} has no PID segment")
    if event == "A40" and not any(r.value["merged_from"] for r in ctx.out if r.record_type == "Patient"):
        ctx.warnings.append("a40_without_mrg_identifier")
    if ctx.source["message_type"].startswith("DFT"):
        ctx.warnings.append(f"dft_financial_transactions_not_mapped: {ft1} FT1 segment(s) (no charge record type)")


# --------------------------------------------------------------------------- orders
def _order_id(ctx: _Ctx, orc: list[str] | None, obr: list[str] | None, patient_id: str) -> tuple[Any, ...]:
    """(order id, placer, filler): the placer order number, else the filler's, else a
    hash of what identifies the order inside this patient's record."""
    placer = filler = None
    if orc is not None:
        placer = ctx.comp(orc[2], 1) if len(orc) > 2 and orc[2] else None
        filler = ctx.comp(orc[3], 1) if len(orc) > 3 and orc[3] else None
    if obr is not None:
        if placer is None and len(obr) > 2 and obr[2]:
            placer = ctx.comp(obr[2], 1)
        if filler is None and len(obr) > 3 and obr[3]:
            filler = ctx.comp(obr[3], 1)
    order_id = placer or filler
    if order_id is None:
        basis = [patient_id]
        if obr is not None:
            basis += [_f(obr, 1), _f(obr, 4), _f(obr, 7)]
        if orc is not None:
            basis += [_f(orc, 1), _f(orc, 9)]
        order_id = "h" + _sha(*basis)[:16]
    return order_id, placer, filler


def _new_order(
    ctx: _Ctx, patient_id: str, orc: list[str] | None, obr: list[str] | None, result: bool
) -> dict[str, Any]:
    order_id, placer, filler = _order_id(ctx, orc, obr, patient_id)
    if orc is not None and len(orc) < 13:
        orc = orc + _PAD[: 13 - len(orc)]
    if obr is not None and len(obr) < 32:
        obr = obr + _PAD[: 32 - len(obr)]
    comp = ctx.comp
    status = None
    if result and obr is not None and obr[25]:
        status = comp(obr[25], 1)
    if status is None and orc is not None and orc[5]:
        status = comp(orc[5], 1)
    provider = None
    if orc is not None and orc[12]:
        provider = ctx.person(orc[12])
    if provider is None and obr is not None and obr[16]:
        provider = ctx.person(obr[16])
    ordered_at = None
    if orc is not None and orc[9]:
        ordered_at = ctx.date(orc[9], "ORC-9")
    if ordered_at is None and obr is not None:
        if obr[6]:
            ordered_at = ctx.date(obr[6], "OBR-6")
        if ordered_at is None and obr[7]:
            ordered_at = ctx.date(obr[7], "OBR-7")
    priority = None
    if orc is not None and orc[7]:
        priority = comp(orc[7], 6)
    if priority is None and obr is not None:
        if obr[27]:
            priority = comp(obr[27], 6)
        if priority is None and obr[5]:
            priority = comp(obr[5], 1)
    diagnoses = []
    code = None
    if obr is not None:
        if obr[31]:
            for rep in obr[31].split(ctx.rs):
                c = ctx.coding(rep)
                if c["code"] or c["display"]:
                    diagnoses.append(c)
        if obr[4]:
            code = ctx.coding(obr[4])
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "order_id": order_id,
        "placer_order_number": placer,
        "filler_order_number": filler,
        "control": comp(orc[1], 1) if orc is not None else None,
        "status": status,
        "code": code,
        "ordering_provider": provider,
        "ordered_at": ordered_at,
        "priority": priority,
        "diagnoses": diagnoses,
        "source": ctx.source,
    }


def _orders(ctx: _Ctx, msg: Message, result: bool) -> None:
    """ORU R01 (result=True: + Observations), ORM O01, OML O21."""
    patient: dict[str, Any] | None = None
    patient_id = ""
    orc = None
    order: dict[str, Any] | None = None
    obs: dict[str, Any] | None = None
    obr_time: str | None = None
    seen: set[str] = set()
    order_ids: set[str] = set()
    obx_index = 0
    any_pid = False

    pending_priority = None

    def flush_orc() -> None:
        """An ORC that no OBR followed (e.g. a cancel) is an order of its own (ORM/OML)."""
        nonlocal orc, pending_priority
        if orc is not None and not result and patient is not None:
            o = _new_order(ctx, patient_id, orc, None, result)
            if o["priority"] is None:
                o["priority"] = pending_priority
            ctx.emit("Order", patient_id, o["order_id"], o)
        orc = None
        pending_priority = None

    out = ctx.out
    prefix = ""
    order_id = None
    # hot-path constants for the inline OBX reader below
    practice_id = ctx.practice_id
    source = ctx.source
    cs, rs, ss, es = ctx.cs, ctx.rs, ctx.ss, ctx.es
    inline_ok = result and cs == "^" and msg.nopad
    plain = ctx.plain  # no escape, repetition or subcomponent character in any body line
    codings = _CODINGS
    iso = hl7_to_iso
    last_eff = last_iso = None  # the last valid OBX-14 and its ISO form
    template: dict[str, Any] | None = None  # reset whenever patient_id or order_id changes
    for seg, line in zip(msg.segs, _raw_lines(msg), strict=False):
        name = seg[0]
        if name == "OBX":
            # ORU: results. ORM/OML: ask-at-order-entry answers (clinical history,
            # fasting status...), kept as Observations linked to their order.
            if patient is None:
                raise Rejected("missing_pid_segment", "OBX before any PID")
            obx_index += 1
            # Inline fast path for the most common result line: a numeric (NM) OBX
            # with plain values (no escapes, repetitions, subcomponents or padding),
            # a cached OBX-3 coding and no performer. Same output as _observation
            # (tests compare the two); anything else goes through _observation.
            n = len(seg)
            if (
                inline_ok
                and n > 14
                and seg[2] == "NM"
                and (plain or (es not in line and rs not in line and ss not in line))
                and not ((n > 16 and seg[16]) or (n > 23 and seg[23]))
            ):
                t = codings.get(seg[3])
                raw = seg[5]
                if t is not None and raw and cs not in raw:
                    try:
                        numeric = float(raw)
                    except ValueError:
                        numeric = None
                    if numeric is not None and numeric - numeric == 0.0:
                        set_id = seg[1]
                        obs_id = f"{order_id or '-'}:{set_id or obx_index}:{t[1] or t[2] or '-'}"
                        if seg[4]:
                            obs_id += ":" + seg[4]
                        if obs_id not in seen:
                            seen.add(obs_id)
                            flags = seg[8]
                            units = seg[6]
                            eff = seg[14]
                            if eff:
                                if eff == last_eff:  # a panel's OBX-14s are usually all the same
                                    effective = last_iso
                                elif cs not in eff:
                                    effective = iso(eff)
                                    if effective is None:
                                        effective = ctx.date_value(eff, "OBX-14")
                                    else:
                                        last_eff = eff
                                        last_iso = effective
                                else:
                                    effective = ctx.date(eff, "OBX-14") or obr_time
                            else:
                                effective = obr_time
                            if template is None:
                                # the values shared by this order's NM results (a dict copy
                                # is a memcpy; a new dict inserts every key one by one)
                                template = {
                                    "practice_id": practice_id,
                                    "patient_id": patient_id,
                                    "observation_id": None,
                                    "order_id": order_id,
                                    "code": None,
                                    "value_type": "NM",
                                    "value": None,
                                    "value_numeric": None,
                                    "units": None,
                                    "reference_range": None,
                                    "abnormal_flags": None,
                                    "status": None,
                                    "effective_at": None,
                                    "performer": None,
                                    "notes": None,
                                    "source": source,
                                }
                            obs = template.copy()
                            obs["observation_id"] = obs_id
                            obs["code"] = {"system": t[0], "code": t[1], "display": t[2]}
                            obs["value"] = raw
                            obs["value_numeric"] = numeric
                            obs["units"] = (units if cs not in units else ctx.units(units)) if units else None
                            obs["reference_range"] = seg[7] or None
                            obs["abnormal_flags"] = (
                                ([flags] if cs not in flags else [x for x in (ctx.comp(flags, 1),) if x])
                                if flags
                                else []
                            )
                            obs["status"] = seg[11] or None
                            obs["effective_at"] = effective
                            obs["notes"] = []
                            out.append(_TUPLE_NEW(Normalized, ("Observation", prefix + obs_id, obs)))
                            continue
            obs = _observation(ctx, seg, line, patient_id, order_id, obr_time, seen, obx_index, prefix, out)
        elif name == "NTE":
            if obs is not None:
                note = ctx.text(_f(seg, 3))
                if note:
                    obs["notes"].append(note)
        elif name == "OBR":
            if patient is None:
                raise Rejected("missing_pid_segment", "OBR before any PID")
            order = _new_order(ctx, patient_id, orc, seg, result)
            if pending_priority is not None:
                if order["priority"] is None:
                    order["priority"] = pending_priority
                pending_priority = None
            oid = order["order_id"]
            if oid in order_ids:
                # several OBRs under one ORC/filler number: keep one key per OBR
                suffix = (order["code"] or {}).get("code") or ctx.leaf(_f(seg, 1)) or str(len(order_ids))
                oid = f"{oid}.{suffix}"
                k = 2
                while oid in order_ids:
                    oid = f"{order['order_id']}.{suffix}#{k}"
                    k += 1
                order["order_id"] = oid
            order_ids.add(oid)
            order_id = oid
            template = None
            orc = None
            obs = None
            obr_time = ctx.date(_f(seg, 7), "OBR-7") if result else None
            ctx.emit("Order", patient_id, order["order_id"], order)
        elif name == "ORC":
            flush_orc()
            orc = seg
            order = order_id = pending_priority = None
            template = None
            obs = None
        elif name == "PID":
            flush_orc()
            any_pid = True
            patient = _require_patient(ctx, seg)
            patient_id = patient["patient_id"]
            prefix = f"{ctx.practice_id}/{patient_id}/"
            _emit_patient(ctx, patient)
            order = order_id = None
            template = None
            obs = None
        elif name == "TQ1":
            prio = ctx.comp(_f(seg, 9), 1)
            if order is not None:
                if order["priority"] is None:
                    order["priority"] = prio
            elif orc is not None:
                pending_priority = prio  # ORC TQ1 OBR (v2.5+ order groups)
        elif name == "DG1":
            if order is not None:
                c = ctx.coding(_f(seg, 3))
                if c["code"] or c["display"]:
                    order["diagnoses"].append(c)
        elif name == "SPM":
            obs = None
        elif name == "IN1":
            if patient is not None:
                cov = _coverage(ctx, patient_id, seg)
                ctx.emit("Coverage", patient_id, cov["coverage_id"], cov)
        elif name == "AL1":
            if patient is not None:
                _emit_allergy(ctx, patient_id, seg)
    flush_orc()
    if not any_pid:
        raise Rejected("missing_pid_segment", f"{ctx.source['message_type']} has no PID segment")


def _number(v: str | None) -> float | None:
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _observation(
    ctx: _Ctx,
    f: list[str],
    line: str,
    patient_id: str,
    order_id: str | None,
    obr_time: str | None,
    seen: set[str],
    index: int,
    prefix: str | None = None,
    out: list[Any] | None = None,
) -> dict[str, Any]:
    """One OBX -> Observation. The hot path of ORU: simple values are read inline."""
    n = len(f)
    if n < 15:
        f = f + _PAD[: 15 - n]
    cs = ctx.cs
    # "tight": the segment holds no escape, repetition or subcomponent character and no
    # blank padding next to a field separator, so each value is its raw text (or empty).
    nopad = ctx.nopad
    if nopad is None:
        nopad = ctx.nopad = ctx.msg.nopad
    if nopad:
        tight = ctx.plain or (ctx.es not in line and ctx.rs not in line and ctx.ss not in line)
    else:
        tight = (
            ctx.es not in line
            and ctx.rs not in line
            and ctx.ss not in line
            and "\t" not in line
            and ctx.pad1 not in line
            and ctx.pad2 not in line
            and line[-1:] != " "
        )
    if tight:
        vt = f[2] or None
        raw = f[3]
        t = _CODINGS.get(raw) if cs == "^" else None
        if t is not None:
            system, code_v, display = t
            code = {"system": system, "code": code_v, "display": display}
        elif raw and ctx.pad3 not in raw and ctx.pad4 not in raw:
            c = raw.split(cs, 3)
            k = len(c)
            code_v = c[0] or None
            display = (c[1] or None) if k > 1 else None
            if code_v is None and display is None and k > 3:
                code = ctx.coding(raw)
                code_v = code["code"]
                display = code["display"]
            else:
                system = (c[2] or None) if k > 2 else None
                code = {"system": system, "code": code_v, "display": display}
                if cs == "^":
                    if len(_CODINGS) >= 8192:
                        _CODINGS.clear()
                    _CODINGS[raw] = (system, code_v, display)
        else:
            code = ctx.coding(raw)
            code_v = code["code"]
            display = code["display"]
        raw = f[5]
        numeric = None
        if not raw:
            obx5 = None
        elif vt == "NM" and cs not in raw:
            obx5 = raw
            try:
                numeric = float(raw)
            except ValueError:
                pass
            if numeric is None or numeric - numeric != 0.0:  # not a number, or inf/nan
                _bad_number(ctx, raw)
                numeric = None
        else:
            obx5, numeric = _obx_value(ctx, vt, raw)
        raw = f[8]
        flags = ([raw] if cs not in raw else [x for x in (ctx.comp(raw, 1),) if x]) if raw else []
        raw = f[6]
        units = (raw if cs not in raw else ctx.units(raw)) if raw else None
        raw = f[14]
        if not raw:
            effective = obr_time
        elif cs not in raw:
            effective = hl7_to_iso(raw) or ctx.date_value(raw, "OBX-14")
        else:
            effective = ctx.date(raw, "OBX-14") or obr_time
        refrange = f[7] or None
        status = f[11] or None
        set_id: str | None = f[1]
        sub_id: str | None = f[4]
    else:
        leaf = ctx.leaf
        vt = leaf(f[2])
        code = ctx.coding(f[3])
        code_v = code["code"]
        display = code["display"]
        raw = f[5]
        obx5, numeric = _obx_value(ctx, vt, raw) if raw else (None, None)
        raw = f[8]
        flags = [x for x in (ctx.comp(r, 1) for r in raw.split(ctx.rs)) if x] if raw else []
        units = ctx.units(f[6])
        effective = ctx.date(f[14], "OBX-14") or obr_time
        refrange = leaf(f[7])
        status = leaf(f[11])
        set_id = leaf(f[1])
        sub_id = leaf(f[4])

    obs_id = f"{order_id or '-'}:{set_id or index}:{code_v or display or '-'}"
    if sub_id:
        obs_id += ":" + sub_id
    if obs_id in seen:
        k = 2
        while f"{obs_id}#{k}" in seen:
            k += 1
        obs_id = f"{obs_id}#{k}"
    seen.add(obs_id)

    performer = None
    if n > 16 and f[16]:
        performer = ctx.person(f[16])
    if performer is None and n > 23 and f[23]:
        performer = ctx.comp(f[23], 1)
    value = {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "observation_id": obs_id,
        "order_id": order_id,
        "code": code,
        "value_type": vt,
        "value": obx5,
        "value_numeric": numeric,
        "units": units,
        "reference_range": refrange,
        "abnormal_flags": flags,
        "status": status,
        "effective_at": effective,
        "performer": performer,
        "notes": [],
        "source": ctx.source,
    }
    if out is not None:
        out.append(_TUPLE_NEW(Normalized, ("Observation", (prefix or "") + obs_id, value)))
    return value


def _bad_number(ctx: _Ctx, value: str) -> None:
    if ctx.strict:
        raise Rejected("invalid_numeric_value", f"OBX-5 {value[:40]!r} is not a number (NM)")
    ctx.warnings.append(f"non_numeric_nm_value: {value[:40]!r}")
    return None


def _obx_value(ctx: _Ctx, vt: str | None, raw: str) -> tuple[str | None, float | None]:
    if vt == "NM":
        v = ctx.comp(raw, 1)
        if v is None:
            return None, None
        num = _number(v)
        if num is None:
            _bad_number(ctx, v)
        return v, num
    if vt in _TEXT_TYPES or vt is None:
        return ctx.text(raw), None
    if vt in _CODED_TYPES:
        parts: list[str] = []
        for rep in raw.split(ctx.rs):
            coding = ctx.coding(rep)
            code, text = coding["code"], coding["display"]
            if code and text and code != text:
                parts.append(f"{text} ({code})")
            elif text or code:
                parts.append(text or code or "")
        return ("; ".join(parts) or None), None
    if vt == "SN":
        c = ctx.comps(ctx.first(raw))
        c += [None] * (4 - len(c))
        comparator, n1, sep, n2 = c[0], c[1], c[2], c[3]
        value = "".join(x for x in (comparator, n1, sep, n2) if x) or None
        num = None
        if n1 and not sep and not n2 and comparator in (None, "="):
            num = _number(n1)
        return value, num
    if vt in _DATE_TYPES:
        return ctx.date(raw, "OBX-5"), None
    if vt == "ED":
        p = ctx.first(raw).split(ctx.cs, 4)
        p += [""] * (5 - len(p))
        typ = ctx.leaf(p[1]) or "?"
        sub = ctx.leaf(p[2]) or "?"
        enc = ctx.leaf(p[3]) or "?"
        return f"[ED {typ}/{sub} {enc}, {len(p[4].strip())} chars not stored]", None
    if vt == "RP":
        return ctx.comp(raw, 1), None
    parts = []
    for rep in raw.split(ctx.rs):
        text = " ".join(x for x in ctx.comps(rep) if x)
        if text:
            parts.append(text)
    return ("; ".join(parts) or None), None


# --------------------------------------------------------------------------- VXU
_FUNDING_ELIGIBILITY = "64994-7"  # LOINC: vaccine funding program eligibility category
_FUNDING_SOURCE = "30963-3"  # LOINC: vaccine funding source
_RXA_NOT_DONE = frozenset(("RE", "NA"))  # RXA-20 (table 0322): refused, not administered


def _vxu(ctx: _Ctx, msg: Message) -> None:
    """VXU^V04 -> Patient + one Immunization per RXA, with the RXR route/site and the
    RXA's OBX (funding, VIS) nested in it (see ``ImmunizationObservation`` for why)."""
    patient_id = ""
    patient = None
    orc = None
    imm: dict[str, Any] | None = None
    seen: set[str] = set()
    index = 0
    any_pid = False
    for seg in msg.segs:
        name = seg[0]
        if name == "PID":
            any_pid = True
            patient = _require_patient(ctx, seg)
            patient_id = patient["patient_id"]
            _emit_patient(ctx, patient)
            imm = None
        elif name == "ORC":
            orc = seg
            imm = None
        elif name == "RXA":
            if patient is None:
                raise Rejected("missing_pid_segment", "RXA before any PID")
            index += 1
            imm = _immunization(ctx, seg, orc, patient_id, seen, index)
            ctx.emit("Immunization", patient_id, imm["immunization_id"], imm)
            orc = None
        elif name == "RXR":
            if imm is not None:
                imm["route"] = imm["route"] or ctx.cwe_text(_f(seg, 1))
                imm["site"] = imm["site"] or ctx.cwe_text(_f(seg, 2))
        elif name == "OBX":
            if imm is None:
                ctx.warnings.append("vxu_obx_outside_an_immunization_ignored")
                continue
            entry = _immunization_observation(ctx, seg)
            imm["observations"].append(entry)
            code = entry["code"]["code"]
            if code == _FUNDING_ELIGIBILITY and imm["funding_eligibility"] is None:
                imm["funding_eligibility"] = entry["value_code"]
            elif code == _FUNDING_SOURCE and imm["funding_source"] is None:
                imm["funding_source"] = entry["value_code"]
        elif name == "NTE" and imm is not None:
            t = ctx.text(_f(seg, 3))
            if t:
                imm["notes"].append(t)
    if not any_pid:
        raise Rejected("missing_pid_segment", "VXU has no PID segment")


def _immunization_observation(ctx: _Ctx, obx: list[str]) -> dict[str, Any]:
    vt = ctx.leaf(_f(obx, 2))
    raw5 = _f(obx, 5)
    value = _obx_value(ctx, vt, raw5)[0] if raw5 else None
    value_code = None
    if raw5 and vt in _CODED_TYPES:
        c = ctx.coding(raw5)
        if c["code"] or c["display"]:
            value_code = c
    return {
        "code": ctx.coding(_f(obx, 3)),
        "value_type": vt,
        "value": value,
        "value_code": value_code,
        "sub_id": ctx.comp(_f(obx, 4), 1),
        "effective_at": ctx.date(_f(obx, 14), "OBX-14"),
    }


def _immunization(
    ctx: _Ctx, rxa: list[str], orc: list[str] | None, patient_id: str, seen: set[str], index: int
) -> dict[str, Any]:
    code = ctx.coding(_f(rxa, 5))
    if code["system"] is None and code["code"]:
        code["system"] = "CVX"
    when = ctx.date(_f(rxa, 3), "RXA-3")
    imm_id = None
    if orc is not None:
        # ORC-3 (filler order number) is the IIS's unique id for the shot (CDC IIS guide)
        imm_id = ctx.comp(_f(orc, 3), 1) or ctx.comp(_f(orc, 2), 1)
    if imm_id is None:
        # without an ORC order number the id names the patient: two patients' flu shots on
        # one day must not share "2024-10-01:1:141"
        imm_id = f"{patient_id}:{when or '-'}:{ctx.comp(_f(rxa, 2), 1) or index}:{code['code'] or '-'}"
    if imm_id in seen:
        imm_id += f"#{index}"
    seen.add(imm_id)
    amount = ctx.comp(_f(rxa, 6), 1)
    if amount == "999":  # "unknown amount" (CDC IIS guide)
        amount = None
    completion = ctx.comp(_f(rxa, 20), 1)
    action = ctx.comp(_f(rxa, 21), 1)
    if action == "D":
        status = "entered-in-error"
    elif completion in _RXA_NOT_DONE:
        status = "not-done"
    else:
        status = "completed"  # CP, PA, or empty (the CDC guide reads empty as CP)
    info = ctx.comp(_f(rxa, 9), 1)
    manufacturer = ctx.coding(_f(rxa, 17))
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "immunization_id": imm_id,
        "vaccine": code,
        "status": status,
        "completion_status": completion,
        "status_reason": ctx.cwe_text(_f(rxa, 18)),
        "administered_at": when,
        "amount": _number(amount),
        "amount_units": ctx.units(_f(rxa, 7)) if amount else None,
        "lot_number": ctx.comp(_f(rxa, 15), 1),
        "expiration_date": ctx.date(_f(rxa, 16), "RXA-16"),
        "manufacturer": manufacturer if manufacturer["code"] or manufacturer["display"] else None,
        "site": None,
        "route": None,
        "performer": ctx.person(_f(rxa, 10)),
        "ordering_provider": ctx.person(_f(orc, 12)) if orc is not None else None,
        "location": ctx.location(_f(rxa, 11)),
        "primary_source": (info == "00") if info else None,
        "information_source": ctx.cwe_text(_f(rxa, 9)),
        "funding_eligibility": None,
        "funding_source": None,
        "observations": [],
        "notes": [],
        "source": ctx.src(),
    }


# --------------------------------------------------------------------------- SIU
def _duration_minutes(ctx: _Ctx, amount: str | None, units: str | None) -> int | None:
    num = _number(amount)
    if num is None or num < 0:
        return None
    factor = _DURATION_UNITS.get((units or "M").upper())
    if factor is None:
        ctx.warnings.append(f"unknown_duration_units: {units!r}")
        return None
    return int(round(num * factor))  # noqa: RUF046 - compiled, round() of a C double can stay a double


def _siu(ctx: _Ctx, msg: Message, event: str) -> None:
    sch = pid = pv1 = tq1 = None
    ais = ail = aip = aig = None
    for seg in msg.segs:
        name = seg[0]
        if name == "SCH" and sch is None:
            sch = seg
        elif name == "PID" and pid is None:
            pid = seg
        elif name == "PV1" and pv1 is None:
            pv1 = seg
        elif name == "TQ1" and tq1 is None:
            tq1 = seg
        elif name == "AIS" and ais is None:
            ais = seg
        elif name == "AIL" and ail is None:
            ail = seg
        elif name == "AIP" and aip is None:
            aip = seg
        elif name == "AIG" and aig is None:
            aig = seg
    if sch is None:
        raise Rejected("missing_sch_segment", "SIU message without SCH")
    appt_id = ctx.comp(_f(sch, 1), 1) or ctx.comp(_f(sch, 2), 1)
    if appt_id is None:
        raise Rejected("missing_appointment_id", "SCH-1 and SCH-2 are empty")
    patient = _patient(ctx, pid, None) if pid is not None else None
    patient_id = patient["patient_id"] if patient else None
    if patient is not None:
        _emit_patient(ctx, patient)
    elif pid is not None:
        ctx.warnings.append("appointment_pid_without_identifier")

    start = None
    if tq1 is not None and _f(tq1, 7):
        start = ctx.date(_f(tq1, 7), "TQ1-7")
    tq = _f(sch, 11)
    if start is None and tq:
        start = ctx.date_value(ctx.comp(tq, 4), "SCH-11.4")
    for appt_seg, n, where in ((ais, 4, "AIS-4"), (aig, 8, "AIG-8"), (ail, 6, "AIL-6"), (aip, 6, "AIP-6")):
        if start is None and appt_seg is not None and _f(appt_seg, n):
            start = ctx.date(_f(appt_seg, n), where)

    duration = None
    if _f(sch, 9):
        duration = _duration_minutes(ctx, ctx.comp(_f(sch, 9), 1), ctx.comp(_f(sch, 10), 1))
    if duration is None:
        for appt_seg, n in ((ais, 7), (aig, 11), (ail, 9), (aip, 9)):
            if appt_seg is not None and _f(appt_seg, n):
                duration = _duration_minutes(ctx, ctx.comp(_f(appt_seg, n), 1), ctx.comp(_f(appt_seg, n + 1), 1))
                if duration is not None:
                    break

    status = ctx.cwe_text(_f(sch, 25))
    if status is None:
        status = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}.get(event, "booked")

    provider = ctx.person(_f(aip, 3)) if aip is not None else None
    if provider is None and aig is not None:
        provider = ctx.cwe_text(_f(aig, 3))
    if provider is None and pv1 is not None:
        provider = ctx.person(_f(pv1, 7))
    location = ctx.location(_f(ail, 3)) if ail is not None else None
    if location is None and pv1 is not None:
        location = ctx.location(_f(pv1, 3))
    appt_type = ctx.cwe_text(_f(sch, 8))
    if appt_type is None and ais is not None:
        appt_type = ctx.cwe_text(_f(ais, 3))
    value = {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "appointment_id": appt_id,
        "event": event,
        "status": status,
        "start": start,
        "duration_minutes": duration,
        "appointment_type": appt_type,
        "reason": ctx.cwe_text(_f(sch, 7)) or ctx.cwe_text(_f(sch, 6)),
        "provider": provider,
        "location": location,
        "source": ctx.src(),
    }
    ctx.emit("Appointment", patient_id, appt_id, value)


# --------------------------------------------------------------------------- pharmacy
def _pharmacy(ctx: _Ctx, msg: Message) -> None:
    patient_id = ""
    patient = None
    groups: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    any_pid = False
    for seg in msg.segs:
        name = seg[0]
        if name == "PID":
            any_pid = True
            patient = _require_patient(ctx, seg)
            patient_id = patient["patient_id"]
            _emit_patient(ctx, patient)
            cur = None
        elif name == "ORC":
            if patient is None:
                raise Rejected("missing_pid_segment", "ORC before any PID")
            cur = {"ORC": seg, "patient_id": patient_id}
            groups.append(cur)
        elif cur is not None and name in ("RXE", "RXO", "RXR", "TQ1"):
            cur.setdefault(name, seg)
    if not any_pid:
        raise Rejected("missing_pid_segment", f"{ctx.source['message_type']} has no PID segment")
    for g in groups:
        rx = _medication(ctx, g)
        if rx is not None:
            ctx.emit("MedicationOrder", rx["patient_id"], rx["order_id"], rx)


def _medication(ctx: _Ctx, g: dict[str, Any]) -> dict[str, Any] | None:
    orc, rxe, rxo, rxr, tq1 = g["ORC"], g.get("RXE"), g.get("RXO"), g.get("RXR"), g.get("TQ1")
    if rxe is None and rxo is None:
        ctx.warnings.append("pharmacy_orc_without_rxe_or_rxo")
        return None
    patient_id = g["patient_id"]
    order_id, _placer, _filler = _order_id(ctx, orc, None, patient_id)
    if rxe is not None:
        med = ctx.coding(_f(rxe, 2))
        dmin, dmax, dunits = ctx.comp(_f(rxe, 3), 1), ctx.comp(_f(rxe, 4), 1), _f(rxe, 5)
        instr_field = _f(rxe, 7)
        qty, qty_units = ctx.comp(_f(rxe, 10), 1), _f(rxe, 11)
        refills = ctx.comp(_f(rxe, 12), 1)
        prescriber_field = _f(rxe, 13)
        written_field, written_where = _f(rxe, 32), "RXE-32"
        freq = ctx.comp(_f(rxe, 1), 2)
    elif rxo is not None:  # one of the two is there (checked above)
        med = ctx.coding(_f(rxo, 1))
        dmin, dmax, dunits = ctx.comp(_f(rxo, 2), 1), ctx.comp(_f(rxo, 3), 1), _f(rxo, 4)
        instr_field = _f(rxo, 7) or _f(rxo, 6)
        qty, qty_units = ctx.comp(_f(rxo, 11), 1), _f(rxo, 12)
        refills = ctx.comp(_f(rxo, 13), 1)
        prescriber_field = _f(rxo, 14)
        written_field, written_where = "", ""
        freq = None
    if rxe is not None and rxo is not None:
        if not (med["code"] or med["display"]):
            med = ctx.coding(_f(rxo, 1))
        if refills is None:
            refills = ctx.comp(_f(rxo, 13), 1)
        if not instr_field:
            instr_field = _f(rxo, 7) or _f(rxo, 6)
    if tq1 is not None and _f(tq1, 3):
        freq = ctx.comp(_f(tq1, 3), 1) or freq
    if freq is None and _f(orc, 7):
        freq = ctx.comp(_f(orc, 7), 2)
    dose = dmin if not dmax or dmax == dmin else f"{dmin or ''}-{dmax}"
    refill_n = None
    if refills is not None:
        num = _number(refills)
        if num is None or num < 0 or num != int(num):
            ctx.warnings.append(f"invalid_refills: {refills[:20]!r}")
        else:
            refill_n = int(num)
    instructions = None
    if instr_field:
        lines = [ctx.cwe_text(r) for r in instr_field.split(ctx.rs)]
        instructions = "\n".join(x for x in lines if x) or None
    written = None
    if orc is not None and _f(orc, 9):
        written = ctx.date(_f(orc, 9), "ORC-9")
    if written is None and written_field:
        written = ctx.date(written_field, written_where)
    quantity = " ".join(x for x in (qty, ctx.units(qty_units)) if x) or None
    return {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "order_id": order_id,
        "medication": med,
        "dose": dose,
        "dose_units": ctx.units(dunits),
        "route": ctx.cwe_text(_f(rxr, 1)) if rxr is not None else None,
        "frequency": freq,
        "quantity": quantity,
        "refills": refill_n,
        "prescriber": ctx.person(_f(orc, 12)) or ctx.person(prescriber_field),
        "status": ctx.comp(_f(orc, 5), 1) or ctx.comp(_f(orc, 1), 1),
        "written_at": written,
        "instructions": instructions,
        "source": ctx.src(),
    }


# --------------------------------------------------------------------------- MDM
def _mdm(ctx: _Ctx, msg: Message) -> None:
    txa = pid = obr = None
    lines: list[str] = []
    content_type = None
    sha = None
    for seg in msg.segs:
        name = seg[0]
        if name == "TXA" and txa is None:
            txa = seg
        elif name == "PID" and pid is None:
            pid = seg
        elif name == "OBR" and obr is None:
            obr = seg
        elif name == "OBX":
            vt = ctx.leaf(_f(seg, 2))
            raw = _f(seg, 5)
            if vt == "ED":
                p = ctx.first(raw).split(ctx.cs, 4)
                p += [""] * (5 - len(p))
                typ, sub, enc = ctx.leaf(p[1]), ctx.leaf(p[2]), ctx.leaf(p[3])
                data = p[4].strip()
                if ctx.es in data:
                    data = ctx.msg.unescape(data)
                if content_type is None and (typ or sub):
                    content_type = f"{(typ or 'application').lower()}/{(sub or 'octet-stream').lower()}"
                size = len(data)
                if data and enc and enc.upper() == "BASE64":
                    try:
                        blob = base64.b64decode(data, validate=False)
                        size = len(blob)
                        if sha is None:
                            sha = hashlib.sha256(blob).hexdigest()
                    except (binascii.Error, ValueError):
                        ctx.warnings.append("ed_payload_not_valid_base64")
                lines.append(f"[embedded {content_type or 'document'} ({enc or 'unencoded'}), {size} bytes not stored]")
            elif raw and (vt is None or vt in _TEXT_TYPES):
                v = ctx.text(raw)
                if v:
                    lines.append(v)
    if txa is None:
        raise Rejected("missing_txa_segment", "MDM message without TXA")
    patient = _patient(ctx, pid, None) if pid is not None else None
    patient_id = patient["patient_id"] if patient else None
    if patient is not None:
        _emit_patient(ctx, patient)
    else:
        ctx.warnings.append("document_without_patient_id")
    text = "\n".join(lines) or None
    if content_type is None and text:
        content_type = "text/plain"
    doc_id = ctx.comp(_f(txa, 12), 1) or ctx.comp(_f(txa, 16), 1)
    if doc_id is None:
        doc_id = "h" + _sha(patient_id or "", _f(txa, 2), _f(txa, 4), _f(txa, 6), text or "")[:24]
        ctx.warnings.append("document_without_txa12_unique_id")
    kind = ctx.comp(_f(txa, 2), 1)
    title = ctx.comp(_f(txa, 2), 2) or _DOC_TYPES.get(kind or "") or (ctx.cwe_text(_f(obr, 4)) if obr else None)
    status_code = ctx.comp(_f(txa, 17), 1)
    value: dict[str, Any] = {
        "practice_id": ctx.practice_id,
        "document_id": doc_id,
        "patient_id": patient_id,
        "kind": kind,
        "title": title,
        "status": _DOC_STATUS.get(status_code, status_code) if status_code else None,
        "content_type": content_type,
        "storage_uri": None,
        "sha256": sha,
        "page_count": None,
        "text": text,
        "pages": [],
        "ocr_confidence": None,
        "fax_from": None,
        "fax_to": None,
        "authored_at": ctx.date(_f(txa, 6), "TXA-6") or ctx.date(_f(txa, 4), "TXA-4"),
        "source": ctx.src(),
    }
    ctx.emit("Document", patient_id, doc_id, value)


# --------------------------------------------------------------------------- REF I12
def _referral(ctx: _Ctx, msg: Message) -> None:
    """REF^I12 (patient referral) -> Patient, an Order for the referral itself, Conditions, Coverage.

    The referral is an ``Order`` so it reaches the same place as every other request for
    care: RF1-6 (originating referral id) or the message control id is its id, RF1-3
    (referral type) or RF1-10 (reason) its code, RF1-1 its status, RF1-2 its priority, the
    referring provider's PRD (PRD-1 ``RP``) its ordering provider, DG1 its diagnoses.
    ``processors/workflows/referral`` turns it into the same referral work item a faxed
    referral becomes."""
    pid = rf1 = None
    prds: list[list[str]] = []
    dg1s: list[list[str]] = []
    in1s: list[list[str]] = []
    for seg in msg.segs:
        name = seg[0]
        if name == "PID" and pid is None:
            pid = seg
        elif name == "RF1" and rf1 is None:
            rf1 = seg
        elif name == "PRD":
            prds.append(seg)
        elif name == "DG1":
            dg1s.append(seg)
        elif name == "IN1":
            in1s.append(seg)
    p = _require_patient(ctx, pid)
    patient_id = p["patient_id"]
    _emit_patient(ctx, p)
    referring = None
    for prd in prds:
        role = (ctx.comp(_f(prd, 1), 1) or "").upper()
        if role in ("RP", "PP") and referring is None:
            referring = ctx.person(_f(prd, 2))
    if referring is None and prds:
        referring = ctx.person(_f(prds[0], 2))
    diagnoses = []
    for dg1 in dg1s:
        code = ctx.coding(_f(dg1, 3))
        if code["code"] or code["display"]:
            diagnoses.append(code)
        _emit_condition(ctx, patient_id, dg1)
    for in1 in in1s:
        cov = _coverage(ctx, patient_id, in1)
        ctx.emit("Coverage", patient_id, cov["coverage_id"], cov)
    ref_id = (rf1 and ctx.comp(_f(rf1, 6), 1)) or ("ref-" + _sha(patient_id, ctx.source["message_id"])[:16])
    code = ctx.coding(_f(rf1, 3)) if rf1 is not None else {"system": None, "code": None, "display": None}
    if rf1 is not None and code["code"] is None and code["display"] is None:
        code = ctx.coding(_f(rf1, 10))
    value = {
        "practice_id": ctx.practice_id,
        "patient_id": patient_id,
        "order_id": ref_id,
        "placer_order_number": ref_id,
        "filler_order_number": (rf1 and ctx.comp(_f(rf1, 11), 1)) or None,
        "control": "NW",
        "status": (rf1 and ctx.comp(_f(rf1, 1), 1)) or None,
        "code": {
            "system": code["system"],
            "code": code["code"] or "referral",
            "display": code["display"] or "Referral",
        },
        "ordering_provider": referring,
        "ordered_at": (rf1 and (ctx.date(_f(rf1, 7), "RF1-7") or ctx.date(_f(rf1, 9), "RF1-9"))) or None,
        "priority": (rf1 and ctx.comp(_f(rf1, 2), 1)) or None,
        "diagnoses": diagnoses,
        "source": ctx.src(),
    }
    ctx.emit("Order", patient_id, ref_id, value)


# --------------------------------------------------------------------------- A24 / A37
def _link(ctx: _Ctx, msg: Message) -> None:
    """ADT^A24 (link patient information) / A37 (unlink): one IdentityLink with both
    PIDs' identifiers; no Patient records (a link message's PIDs are often bare ids
    and must not overwrite a registration's demographics)."""
    pids = [seg for seg in msg.segs if seg[0] == "PID"]
    if len(pids) < 2:
        raise Rejected("missing_pid_segment", f"{ctx.source['message_type']} needs two PID segments (the two patients)")
    a = _require_patient(ctx, pids[0], ctx.trigger)
    b = _require_patient(ctx, pids[1], ctx.trigger)
    ctx.out.append(
        identity_link(
            ctx.practice_id,
            _LINK_EVENTS[ctx.trigger],
            ctx.source,
            a["patient_id"],
            a["identifiers"],
            other_patient_id=b["patient_id"],
            other_identifiers=b["identifiers"],
            record_type=None,
            basis=ctx.trigger,
        )
    )


# --------------------------------------------------------------------------- dispatch
def _h_adt(ctx: _Ctx, msg: Message) -> None:
    _adt(ctx, msg, ctx.trigger)


def _h_oru(ctx: _Ctx, msg: Message) -> None:
    _orders(ctx, msg, True)


def _h_oul(ctx: _Ctx, msg: Message) -> None:
    """OUL^R22 sends each OBR before its ORC (ORU sends ORC first): put every such ORC back in
    front of its OBR, then read the message exactly as an ORU."""
    segs = msg.segs
    lines = msg.lines if len(msg.lines) == len(segs) else None
    for i in range(len(segs) - 1):
        if segs[i][0] == "OBR" and segs[i + 1][0] == "ORC":
            segs[i], segs[i + 1] = segs[i + 1], segs[i]
            if lines is not None:
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
    msg._index = None
    _orders(ctx, msg, True)


def _h_orm(ctx: _Ctx, msg: Message) -> None:
    _orders(ctx, msg, False)


def _h_siu(ctx: _Ctx, msg: Message) -> None:
    _siu(ctx, msg, ctx.trigger)


SUPPORTED: dict[tuple[str, str], Any] = {
    **{("ADT", e): _h_adt for e in _ADT_EVENTS},
    **{("ADT", e): _link for e in _LINK_EVENTS},
    ("DFT", "P03"): _h_adt,
    ("ORU", "R01"): _h_oru,
    ("ORM", "O01"): _h_orm,
    ("OML", "O21"): _h_orm,
    **{("SIU", e): _h_siu for e in ("S12", "S13", "S14", "S15")},
    ("RDE", "O11"): lambda ctx, msg: _pharmacy(ctx, msg),
    ("OMP", "O09"): lambda ctx, msg: _pharmacy(ctx, msg),
    ("MDM", "T02"): lambda ctx, msg: _mdm(ctx, msg),
    ("VXU", "V04"): lambda ctx, msg: _vxu(ctx, msg),
    # OUL^R22 (specimen-oriented results): the same Observations as ORU; its SPM/SAC
    # specimen segments map to nothing yet (warned as unmapped)
    ("OUL", "R22"): _h_oul,
    ("REF", "I12"): lambda ctx, msg: _referral(ctx, msg),
}


# Segments each message type maps into records. Any other segment in a message leaves
# one warning per segment type, ``unmapped_segment:<ID>`` (a stable prefix the worker
# counts in ``practiceflow_unmapped_segments_total``), so a gap is visible instead of
# silent. MSH/EVN/SFT/UAC are envelope (sender, software, event time), not content.
_ENVELOPE = ("MSH", "EVN", "SFT", "UAC")
_ORDER_SEGMENTS = ("PID", "ORC", "OBR", "OBX", "NTE", "TQ1", "DG1", "IN1", "AL1")
_MAPPED: dict[str, frozenset[str]] = {
    mtype: frozenset(_ENVELOPE + segments)
    for mtype, segments in (
        ("ADT", ("PID", "PV1", "PV2", "DG1", "IN1", "AL1", "MRG")),
        ("DFT", ("PID", "PV1", "PV2", "DG1", "IN1", "AL1", "MRG")),
        ("ORU", _ORDER_SEGMENTS),
        ("ORM", _ORDER_SEGMENTS),
        ("OML", _ORDER_SEGMENTS),
        ("SIU", ("SCH", "PID", "PV1", "TQ1", "AIS", "AIL", "AIP", "AIG")),
        ("RDE", ("PID", "ORC", "RXE", "RXO", "RXR", "TQ1")),
        ("OMP", ("PID", "ORC", "RXE", "RXO", "RXR", "TQ1")),
        ("MDM", ("TXA", "PID", "OBR", "OBX")),
        ("VXU", ("PID", "ORC", "RXA", "RXR", "OBX", "NTE")),
        ("OUL", (*_ORDER_SEGMENTS, "PV1", "PV2")),
        ("REF", ("RF1", "PRD", "PID", "DG1", "IN1")),
    )
}
_ENVELOPE_ONLY = frozenset(_ENVELOPE)
UNMAPPED_PREFIX = "unmapped_segment:"
_SEG_ID = itemgetter(0)


def _validate_with_hl7apy(msg: Message) -> None:
    """Strict mode: hl7apy STRICT parse + structure validation; its error text is the reason."""
    try:
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.parser import parse_message

        parsed = parse_message(msg.to_er7(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except Exception as e:  # hl7apy raises many exception types; all mean "not valid"
        text = str(e) or type(e).__name__
        raise Rejected("hl7_validation_failed", f"hl7apy {type(e).__name__}: {text[:500]}") from None


def normalize_hl7(
    raw: bytes | bytearray | memoryview | str,
    practice_id: str,
    received_at_ms: int,
    *,
    strict: bool = False,
    policy: IdentityPolicy | None = None,
) -> NormalizeResult:
    """Normalize one HL7 v2 message. Returns records, or raises ``Rejected``.

    ``policy``: the practice's patient identity policy (``processors/identity``;
    None = the default MR/MRN/PI/PT order). Runs through ``processors.base.guarded``
    (collector paused; a bug is an ``internal_error`` rejection, which tests assert
    never happens).
    """
    return guarded(_normalize, raw, practice_id, strict, policy or DEFAULT_POLICY)


def _normalize(
    raw: bytes | bytearray | memoryview | str, practice_id: str, strict: bool, policy: IdentityPolicy = DEFAULT_POLICY
) -> NormalizeResult:
    msg = parse(raw, strict=strict)
    msh = msg.segs[0]
    nf = len(msh)
    warnings = msg.warnings
    if nf <= 9:
        raise Rejected("truncated_msh", f"MSH ends after field {nf - 1}; MSH-9..MSH-12 are required")
    msh3 = msh[3]
    msh4 = msh[4]
    cs = msg.cs
    control_id = _msh_value(msg, msh[10]) if nf > 10 else ""
    if not control_id or control_id == '""':
        raise Rejected("missing_control_id", "MSH-10 (message control id) is empty")
    version = _msh_value(msg, msh[12].split(cs, 1)[0]) if nf > 12 else ""
    if not version:
        raise Rejected("missing_version", "MSH-12 (version id) is empty")
    if version not in _VERSIONS_OK:
        if not _VERSION_RE.match(version):
            raise Rejected("unsupported_version", f"HL7 version {version[:40]!r} is not supported (2.3 to 2.8)")
        if len(_VERSIONS_OK) < 64:
            _VERSIONS_OK.add(version)
    t = msh[9].split(cs, 2)
    mtype = _msh_value(msg, t[0]).upper()
    trigger = _msh_value(msg, t[1]).upper() if len(t) > 1 else ""
    if not mtype:
        raise Rejected("missing_message_type", "MSH-9 (message type) is empty")
    message_type = f"{mtype}^{trigger}" if trigger else mtype
    if mtype in ("ACK", "MCF"):
        raise Rejected("not_clinical_ack", f"{message_type} is an acknowledgement, not clinical content")
    handler = SUPPORTED.get((mtype, trigger))
    if handler is None:
        raise Rejected("unsupported_message_type", f"{message_type[:40]!r} is not a supported message type")
    if strict:
        _validate_with_hl7apy(msg)

    message_id = message_id_for(msh3, msh4, control_id, content_hash(raw))
    sent_raw = msh[7] if nf > 7 else ""
    source = {"feed": FEED, "message_id": message_id, "raw_topic": None, "message_type": message_type, "sent_at": None}
    ctx = _Ctx(msg, practice_id, strict, source, warnings, trigger, msg.plain, policy)
    source["sent_at"] = ctx.date(sent_raw, "MSH-7")
    handler(ctx, msg)
    names = set(map(_SEG_ID, msg.segs))  # one set of segment ids per message: cheap
    mapped = _MAPPED.get(mtype, _ENVELOPE_ONLY)  # a type added without an entry: all but envelope
    if not names.issubset(mapped):
        for name in sorted(names.difference(mapped)):
            warnings.append(UNMAPPED_PREFIX + name)
    records = ctx.out
    if not records:
        raise Rejected("no_records", f"{message_type} produced no records")
    return NormalizeResult(
        message_id=message_id,
        message_type=message_type,
        records=records,
        warnings=warnings,
        control_key=message_id_for(msh3, msh4, control_id),
    )
