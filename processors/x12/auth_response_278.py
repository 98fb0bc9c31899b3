"""278 response (services review / prior authorization answer) -> ``AuthorizationResponse``.

The segments are read by :mod:`practiceflow.processors.x12.x278` (which also writes the 278
request a practice sends); this module only tells a response from a request and builds the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from practiceflow.processors.base import entity_key, typed_record
from practiceflow.processors.x12.segments import _el, _hash, _Set
from practiceflow.processors.x12.tokenizer import TransactionSet
from practiceflow.processors.x12.x278 import read_278_segments, response_fields

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import AuthorizationResponseDict


def _is_278_response(ts: TransactionSet) -> bool:
    """BHT02 11 (response) or an HCR segment: a payer's answer, not a request we would send."""
    for seg in ts.segments[:3]:
        if seg[0] == "BHT" and _el(seg, 2) == "11":
            return True
    return any(seg[0] == "HCR" for seg in ts.segments)


def _do_278(s: _Set) -> None:
    """A 278 response -> one AuthorizationResponse (read by processors/x12/x278.py)."""
    read = read_278_segments(s.ts.segments, s.d)
    fields = response_fields(read)
    if read.action_code is None and not read.rejections:
        s.warn("malformed_segment", "278 response without HCR or AAA: no decision to record")
        return
    pid = s.run.practice_id
    src = s.source
    response_id = _hash("278", src["message_id"], read.reference, fields["trace_number"] or "")
    rec: AuthorizationResponseDict = {
        "practice_id": pid,
        "response_id": response_id,
        "reference": read.reference or None,
        **fields,  # type: ignore[typeddict-item]  # the reader's field names are the record's
        "source": src.copy(),
    }
    s.run.records.append(typed_record("AuthorizationResponse", entity_key(pid, None, response_id), rec))
