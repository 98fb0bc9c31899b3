"""HL7 v2 acknowledgements (original-mode ACK), built as strings: fast and pure.

``build_ack(original, "AA" | "AE" | "AR", text, error_code=..., now=...)`` returns the
bytes of an ACK that

* swaps sender and receiver (MSH-3/4 <-> MSH-5/6) and echoes MSH-11 (processing id),
* uses the original's delimiters (MSH-1/MSH-2; the v2.7 truncation character only
  for v2.7+) and version (MSH-12 component 1), and its MSH-18 charset,
* carries the original MSH-10 in MSA-2,
* adds an ERR segment for AE/AR with an HL7 table 0357 code, shaped for the version
  (ERR-1 ELD up to v2.4; ERR-3 CWE + ERR-4 severity from v2.5),
* puts the text in MSA-3 (up to v2.6, where the field exists) and in ERR-7.

An input without a readable MSH still gets an answer: an AR with an empty MSA-2,
default delimiters and ``default_version``. No MLLP framing is added (the transport
does that). ``now`` is the time to put in MSH-7 (HL7 DTM or ISO 8601): the caller
owns the clock.
"""

from __future__ import annotations

import hashlib
import re

from practiceflow.processors.base import Rejected, ascii_digits
from practiceflow.processors.hl7.dates import hl7_to_iso
from practiceflow.processors.hl7.parser import Message, escape, parse

__all__ = ["build_ack", "error_code_for", "HL7_ERROR_CODES"]

HL7_ERROR_CODES = {  # HL7 table 0357 (message error condition codes)
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_REASON_TO_0357 = {
    "empty_message": "100",
    "missing_msh": "100",
    "msh_not_first": "100",
    "content_before_msh": "100",
    "multiple_messages": "100",
    "invalid_segment": "100",
    "missing_field_separator": "101",
    "missing_encoding_characters": "101",
    "truncated_msh": "101",
    "missing_control_id": "101",
    "missing_version": "101",
    "missing_message_type": "101",
    "missing_pid_segment": "100",
    "missing_sch_segment": "100",
    "missing_txa_segment": "100",
    "missing_patient_id": "101",
    "missing_appointment_id": "101",
    "invalid_field_separator": "102",
    "invalid_encoding_characters": "102",
    "malformed_date": "102",
    "invalid_numeric_value": "102",
    "hl7_validation_failed": "102",
    "not_hl7": "102",
    "unsupported_message_type": "200",
    "not_clinical_ack": "200",
    "unsupported_version": "203",
}

_ACK_VERSION_RE = re.compile(r"2\.[1-9](?:\.\d{1,2})?\Z")
_DEFAULT_ENC = "^~\\&"


def error_code_for(reason_code: str | None) -> str:
    """Map a ``Rejected.reason_code`` (or a 0357 code) to an HL7 table 0357 code."""
    if not reason_code:
        return "207"
    if reason_code in HL7_ERROR_CODES:
        return reason_code
    return _REASON_TO_0357.get(reason_code, "207")


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if ascii_digits(p))


def _hl7_now(now: str) -> str:
    """Accept an HL7 DTM or an ISO 8601 timestamp; return an HL7 DTM."""
    s = now.strip()
    if hl7_to_iso(s) is not None:
        return s
    if len(s) >= 10 and s[4:5] == "-":
        tz = ""
        body = s
        if body.endswith("Z"):
            body, tz = body[:-1], "+0000"
        else:
            m = re.search(r"([+-]\d{2}):?(\d{2})$", body[10:])
            if m:
                tz = m.group(1) + m.group(2)
                body = body[: len(body) - len(m.group(0))]
        main, _, frac = body.partition(".")
        digits = re.sub(r"[-:T ]", "", main)
        out = digits + ("." + frac[:4] if frac and len(digits) == 14 else "") + tz
        if hl7_to_iso(out) is not None:
            return out
    raise ValueError(f"now={now!r} is neither an HL7 DTM nor an ISO 8601 timestamp")


def build_ack(
    raw_or_parsed: bytes | str | Message,
    code: str,
    text: str = "",
    *,
    error_code: str | None = None,
    now: str,
    control_id: str | None = None,
    default_version: str = "2.5.1",
) -> bytes:
    """Build an ACK for ``raw_or_parsed`` (bytes, str or a parsed :class:`Message`).

    ``code``: AA (accept), AE (error), AR (reject). ``error_code``: an HL7 table 0357
    code ("100", "200", "207", ...) or a ``Rejected.reason_code`` (mapped with
    :func:`error_code_for`); defaults to 207 for AE/AR. ``control_id``: MSH-10 of the
    ACK; by default a hash of the original control id, the code and ``now`` (so a
    replay gives the same ACK). Returns the ACK bytes, segments ended by CR.
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"code must be AA, AE or AR, not {code!r}")
    hl7_now = _hl7_now(now)

    msg: Message | None
    if isinstance(raw_or_parsed, Message):
        msg = raw_or_parsed
    else:
        try:
            msg = parse(raw_or_parsed, header_only=True)
        except Rejected as e:
            msg = None
            if error_code is None:
                error_code = e.reason_code
            if not text:
                text = e.reason

    if msg is None:
        # Nothing trustworthy to echo: reject, with default delimiters and version.
        code = "AR"
        fs, enc, version = "|", _DEFAULT_ENC, default_version
        sender = ("", "")
        receiver = ("", "")
        orig_control = ""
        trigger = ""
        processing = "P"
        charset = ""
        codec = "utf-8"
        if error_code is None:
            error_code = "100"
    else:
        fs = msg.fs
        msh = msg.segs[0]

        def m(n: int) -> str:
            return msh[n] if n < len(msh) else ""

        version = msg.get("MSH", 12).strip()
        if not _ACK_VERSION_RE.match(version):
            version = default_version
        enc = msg.cs + msg.rs + msg.es + msg.ss
        if msg.tc and _vkey(version) >= (2, 7):
            enc += msg.tc
        sender = (m(5), m(6))
        receiver = (m(3), m(4))
        orig_control = m(10)
        trigger = msg.get("MSH", 9, comp=2).strip()
        processing = m(11) or "P"
        charset = m(18)
        codec = msg.codec if msg.codec not in ("ascii",) else "utf-8"

    cs, rs, es, ss = enc[0], enc[1], enc[2], enc[3]
    vk = _vkey(version)
    if trigger:
        trigger = escape(trigger, fs, cs, rs, es, ss)
        msg_type = f"ACK{cs}{trigger}" if vk < (2, 3, 1) else f"ACK{cs}{trigger}{cs}ACK"
    else:
        msg_type = "ACK"
    if control_id is None:
        basis = "\x1f".join((orig_control, code, hl7_now, receiver[0], receiver[1]))
        control_id = hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:20].upper()
    else:
        control_id = escape(control_id, fs, cs, rs, es, ss)

    msh_fields = [
        "MSH",
        enc,
        sender[0],
        sender[1],
        receiver[0],
        receiver[1],
        hl7_now,
        "",
        msg_type,
        control_id,
        processing,
        version,
    ]
    if charset:
        msh_fields += [""] * 5 + [charset]
    segments = [fs.join(msh_fields)]

    clean = escape(" ".join(text.split()), fs, cs, rs, es, ss) if text else ""
    msa = ["MSA", code, orig_control]
    if clean and vk < (2, 7):
        msa.append(_truncate(clean, 80, es))
    segments.append(fs.join(msa))

    if code != "AA":
        err = error_code_for(error_code)
        label = HL7_ERROR_CODES.get(err, "")
        if vk < (2, 5):
            segments.append(fs.join(["ERR", f"{cs}{cs}{cs}{err}{ss}{label}{ss}HL70357"]))
        else:
            fields = ["ERR", "", "", f"{err}{cs}{label}{cs}HL70357", "E"]
            if clean:
                fields += ["", "", _truncate(clean, 2048, es)]
            segments.append(fs.join(fields))

    out = "\r".join(segments) + "\r"
    try:
        return out.encode(codec, errors="replace")
    except LookupError:  # pragma: no cover - codec names come from our own table
        return out.encode("utf-8", errors="replace")


def _truncate(value: str, limit: int, es: str) -> str:
    """Cut to ``limit`` characters without splitting an escape sequence."""
    if len(value) <= limit:
        return value
    cut = value[:limit]
    if cut.count(es) % 2:
        cut = cut[: cut.rfind(es)]
    return cut
