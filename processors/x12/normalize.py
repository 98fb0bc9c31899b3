"""X12 5010 normalizer: 835, 277/277CA, 271, 999/997, TA1 and 837P/I/D -> practiceflow records.

``normalize_x12(raw, practice_id, received_at_ms, strict=False)`` follows the contract
in :mod:`practiceflow.processors.base`: pure, no I/O, no clock; a
:class:`NormalizeResult` or :class:`Rejected`, never another exception.

What each transaction set becomes
---------------------------------
* 835 -> one ``ClaimAdjudication`` per CLP loop and one ``ProviderAdjustment`` per
  PLB reason/amount pair (a PLB carries up to six).
* 277 / 277CA -> one ``ClaimStatus`` per claim-level STC composite (STC01, and STC10 /
  STC11 when present); STCs at provider / receiver level only when no claim below
  that HL has a status of its own (e.g. 277 provider-level "E0:24:85").
  Service-line STCs (after SVC) are not emitted.
* 271 -> one ``EligibilityResponse`` per subscriber (2000C) / dependent (2000D);
  a subscriber whose only purpose is to carry a dependent is folded into it.
  AAA rejections at payer / receiver level are added to every response, or become
  one response of their own when there is no subscriber loop.
* 999 / 997 -> one ``InterchangeAck`` per acknowledgment set; TA1 -> one per TA1.
* 837 (P, I, D) -> one ``Claim`` per CLM.
* 278 response (BHT02 11 / HCR) -> one ``AuthorizationResponse`` (processors/x12/x278.py reads it).
* 270 / 276 / 278 request (and anything else) -> ``Rejected("unsupported_transaction")``
  when the file holds nothing else; skipped with a warning in a mixed file.

Leniency (default) vs ``strict=True``
------------------------------------
Default mode keeps what can be trusted and says what it skipped in
``NormalizeResult.warnings`` ("code: message"): envelope count / control-number
mismatches, missing trailers, unpadded ISA, no ISA/GS envelope at all (an input
that starts at GS or ST is parsed with the delimiters it shows), a claim loop
whose CLP lacks a claim id, status or parseable charge / paid amount (that claim is
skipped, the others kept), an unparseable CAS / PLB amount (that item skipped).
``strict=True`` turns the first such problem into ``Rejected(<code>, <message>)``.
An input that yields no record at all is ``Rejected("no_records")``.

Identifiers
-----------
* ``NormalizeResult.message_id``: a hash of each interchange's envelope identity
  (ISA05/06 sender, ISA07/08 receiver, ISA09/10 date/time, ISA13 control number)
  plus its segments with whitespace and line breaks removed. A resent file (same
  interchange, any line-ending or indentation) gets the same id; two different
  files that reuse a sender's control number do not collide.
* ``source.message_id``: ``<message_id>/<ISA13>/<GS06>/<ST02>`` (``TA1`` for TA1s).
* ``adjudication_id``: hash(TRN02 payment trace, CLP01, CLP07, occurrence index of
  that triple in the input) - stable across resends, distinct for a reversal and its
  correction in the same file. ``adjustment_id`` (PLB), ``status_id`` (277) are
  built the same way from their content; ``response_id`` (271) and ``ack_id``
  (999/TA1) from the source message id and position.
* Kafka keys: ``entity_key(practice_id, <patient id or "-">, <record id>)`` like the
  other normalized topics ("practice/patient/entity").

Field choices worth knowing
---------------------------
* 835: ``member_id`` = NM1*IL09, else NM1*QC09, else the corrected id on NM1*74 (never
  an SSN-qualified id); ``patient_id`` = REF*EA (medical record number) when sent;
  ``payer_id`` = N1*PR04, else REF*2U, else TRN03; ``payee_npi`` only when N1*PE03 is
  XX; ``service_date`` = DTM*232 (statement from), else the earliest line date; SVC
  ``units`` = SVC05, or 1 when absent (the TR3 default); an SVC with only a revenue
  code (SVC04) gets it as the procedure (NUBC system). RARC come from MIA05/20-23,
  MOA03-07 (claim) and LQ*HE (line); LQ*RX (NCPDP) is not a RARC and is not kept.
* 277: ``claim_id`` = REF*EJ (patient control number in 005010X212) when present,
  else TRN*2 (the patient control number in 277CA 005010X214). ``accepted``: True
  for A0/A1/A2/A5 and for P/F/R categories (the claim is in adjudication), False
  for A3/A4/A6/A7/A8, else from STC03 (WQ accepted / U rejected), else None.
* 271: ``trace_number`` = TRN*2 (the 270's own trace echoed back), else TRN*1, else
  BHT03; a dependent inherits the subscriber's member id; LS/LE (2120) loops are
  skipped so a PCP or other-payer NM1 never overwrites the patient or payer;
  ``plan_begin`` / ``plan_end`` from 2100C/D DTP*346/356 and 347/357 (a 291/307 date or
  RD8 range fills what they leave), EB11 as ``Benefit.authorization_required`` (Y/N), and
  AAA04 follow-up actions in ``follow_up_actions``, one per deduplicated AAA03 in
  ``rejections`` ("" where the payer sent none): the intake workflow's gap rules read them.
* 999/997: ``acknowledged_control_numbers`` = [AK102 group control number,
  "AK102/AK202" per set]; ``errors`` = one readable line per IK3/CTX/IK4/IK5/AK9 error
  (CTX carries the rejected claim's CLM01). ``kind`` is "999", "997" or "TA1".
* 837: ``status`` "submitted" (CLM05-3 = 1), "replacement" (7) or "void" (8), the code
  itself in ``frequency_code``, CLM05-1 in ``place_of_service``, 2300 REF*F8 (the payer's
  control number a replacement refers to) and REF*G1 (prior authorization); payer =
  the subscriber loop's NM1*PR (never a COB other-payer NM1*PR after CLM);
  ``member_id`` = the subscriber's NM1*IL09 (member-id qualifiers only, never an SSN),
  so the identity crosswalk links CLM01 (echoed as CLP01 in the 835) to the member.
* Some published files declare ISA16 ':' but write composites with '>'; the first
  composite of each transaction set decides (with a ``component_separator`` warning).

Values: amounts are floats (non-finite / malformed -> skipped or None with a
warning), dates CCYYMMDD -> ISO ``YYYY-MM-DD`` (a range RD8 keeps its start), names
"LAST, FIRST MIDDLE SUFFIX". Codes are kept as sent (ICD codes without a dot);
procedure systems are FHIR-style URIs (CPT vs HCPCS level II told apart by the code).

Where the code is
-----------------
This module is the entry point and the dispatch (envelopes, message types, the result). Each
transaction set has a reader of its own beside it: ``remittance_835.py``, ``claim_status_277.py``,
``eligibility_271.py``, ``acks_999.py`` (999/997 and TA1), ``claims_837.py`` and
``auth_response_278.py``; ``segments.py`` holds the code tables, value helpers and per-call
context they share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from practiceflow.processors.base import NormalizeResult, Rejected, guarded
from practiceflow.processors.x12.acks_999 import _do_999, _do_ta1
from practiceflow.processors.x12.auth_response_278 import _do_278, _is_278_response
from practiceflow.processors.x12.claim_status_277 import _do_277
from practiceflow.processors.x12.claims_837 import _do_837
from practiceflow.processors.x12.eligibility_271 import _do_271
from practiceflow.processors.x12.remittance_835 import _do_835
from practiceflow.processors.x12.segments import _el, _hash, _Run, _Set
from practiceflow.processors.x12.tokenizer import Interchange, TransactionSet, _Warn, tokenize

__all__ = ["normalize_x12"]

_UNSUPPORTED_REASONS = {
    "270": "270 is an eligibility inquiry, which a practice sends; the payer's answer arrives as a 271",
    "276": "276 is a claim status inquiry, which a practice sends; the answer arrives as a 277",
    "278": "278 request (services review / prior authorization) is what a practice sends, not an inbound feed",
}


def _message_type(ts: TransactionSet) -> str:
    set_id = ts.set_id
    impl = ts.implementation.upper()
    if set_id == "837":
        if "X222" in impl:
            return "837P"
        if "X223" in impl:
            return "837I"
        if "X224" in impl:
            return "837D"
        for seg in ts.segments:
            if seg[0] == "SV1":
                return "837P"
            if seg[0] == "SV2":
                return "837I"
            if seg[0] == "SV3":
                return "837D"
        return "837"
    if set_id == "277" and ("X214" in impl or _is_277ca(ts)):
        return "277CA"
    return set_id


def _is_277ca(ts: TransactionSet) -> bool:
    for seg in ts.segments[:3]:
        if seg[0] == "BHT":
            return _el(seg, 2) == "08" and _el(seg, 6) == "TH"
    return False


_HANDLERS: dict[str, Callable[[_Set], None]] = {
    "835": _do_835,
    "277": _do_277,
    "277CA": _do_277,
    "271": _do_271,
    "999": _do_999,
    "997": _do_999,
    "837P": _do_837,
    "837I": _do_837,
    "837D": _do_837,
    "837": _do_837,
    "278": _do_278,  # responses only (see _normalize): a 278 request is what a practice sends
}


def _unsupported_reason(ts: TransactionSet, mtype: str) -> str:
    return _UNSUPPORTED_REASONS.get(
        mtype,
        f"transaction set {mtype or '(none)'} is not an inbound feed "
        "this processor handles (835, 277/277CA, 271, 999/997, TA1, 837)",
    )


def _interchange_id(ic: Interchange) -> str:
    if ic.isa is None:
        return _hash("noenvelope", hashlib.sha256(ic.canonical.encode()).hexdigest())
    f = ic.isa_field
    return _hash(f(5), f(6), f(7), f(8), f(9), f(10), f(13), hashlib.sha256(ic.canonical.encode()).hexdigest())


def _normalize(raw: bytes, practice_id: str, strict: bool) -> NormalizeResult:
    if not isinstance(practice_id, str) or not practice_id:
        raise Rejected("invalid_input", "practice_id is required")
    warnings: list[str] = []
    warn = _Warn(strict, warnings)
    parsed = tokenize(raw, strict=strict, warnings=warnings)
    ics = parsed.interchanges
    ids = [_interchange_id(ic) for ic in ics]
    run = _Run(practice_id, warn)
    run.message_id = ids[0] if len(ids) == 1 else _hash("multi", *ids)
    unsupported: list[str] = []
    supported_sets = 0
    for ic in ics:
        if ic.isa is not None and ic.version and ic.version != "00501":
            warn("version", f"ISA12 {ic.version}: not a 5010 interchange; parsed with 5010 rules")
        if ic.ta1:
            _add_type(run, "TA1")
            _do_ta1(run, ic)
        for group in ic.groups:
            for ts in group.transactions:
                mtype = _message_type(ts)
                handler = _HANDLERS.get(mtype) if mtype != "278" or _is_278_response(ts) else None
                if handler is None:
                    reason = _unsupported_reason(ts, mtype)
                    unsupported.append(f"ST {ts.control_number or '?'} ({mtype or '?'}): {reason}")
                    _add_type(run, mtype or "?")
                    continue
                supported_sets += 1
                _add_type(run, mtype)
                handler(_Set(run, ic, ts, mtype))
    message_type = "+".join(run.types) or "unknown"
    if not supported_sets and not any(ic.ta1 for ic in ics):
        if unsupported:
            raise Rejected("unsupported_transaction", "; ".join(unsupported[:3]))
        raise Rejected("no_transactions", "the interchange holds no transaction set or TA1")
    for u in unsupported:
        warn("unsupported_transaction", f"skipped {u}")
    if not run.records:
        detail = "; ".join(warnings[-3:])
        raise Rejected("no_records", f"{message_type}: no usable record" + (f" ({detail})" if detail else ""))
    return NormalizeResult(message_id=run.message_id, message_type=message_type, records=run.records, warnings=warnings)


def _add_type(run: _Run, mtype: str) -> None:
    if mtype not in run.types:
        run.types.append(mtype)


def normalize_x12(raw: bytes, practice_id: str, received_at_ms: int, *, strict: bool = False) -> NormalizeResult:
    """Normalize one X12 file (one or more interchanges). See the module docstring.

    ``received_at_ms`` is part of the normalizer contract; X12 records carry the
    sender's own dates, so it is not used.

    Runs through ``processors.base.guarded`` (collector paused; a bug dead-letters the
    input as ``internal_error`` instead of crashing the stream).
    """
    return guarded(_normalize, raw, practice_id, strict)
