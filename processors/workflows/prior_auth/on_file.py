"""An approved authorization as the denial workflow reads it: "an authorization on file".

Why: a claim denied for a missing authorization (CARC 197, 15, ...) is fixed by a corrected
claim that quotes the payer's number (837P REF*G1), and the number is in the prior-auth
table once the payer approved (278, PAS ClaimResponse or a confirmed faxed decision). The
denial step knows nothing of prior-auth states: it folds ``Authorization`` facts
(``processors/workflows/denials/store.fold_patient``), and this module turns one state into
one such fact. Pure: the state in, a fact or None out.

Conservative on purpose. Only an authorized state (approved, partially approved, modified)
with a number counts. Its service window is not in the state (a 278 may carry one; PAS and
faxes vary), so the fact covers from the day the request was drafted to ``VALID_DAYS``
after the last answer: payers commonly grant 60-180 days. A claim outside that window gets
no fix and goes to a person; one inside still becomes a draft a person signs, with the
authorization as its evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from practiceflow.processors.workflows.prior_auth.step import AUTHORIZED

VALID_DAYS: Final = 180


def _day(ms: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def authorization_on_file(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``Authorization`` fact of one prior-auth state (``fold_patient``'s shape:
    ``number``, ``service_start``, ``service_end``, ``procedures``), or None when the
    payer has not authorized it with a number."""
    # the number the approving answer carried (step.approved_number), not any number on file: a
    # denied answer's reference or an unconfirmed fax's must never reach a claim (review s21 S1)
    number = (state or {}).get("approved_number")
    if not state or state.get("status") not in AUTHORIZED or not number or not state.get("code"):
        return None
    item = state.get("item") or {}
    start = _day(item.get("created_at")) or _day(state.get("updated_at"))
    answered = _day(state.get("updated_at"))
    end = None
    if answered is not None:
        end = (datetime.fromisoformat(answered) + timedelta(days=VALID_DAYS)).date().isoformat()
    return {
        "number": str(number),
        "service_start": start,
        "service_end": end,
        "procedures": [str(state["code"])],  # never empty: an empty list would match every procedure
        "payer_id": state.get("payer_id"),
        "authorization_id": state.get("authorization_id"),
        "status": state.get("status"),
        "record_type": "Authorization",
        "record_key": f"{state.get('practice_id')}/{state.get('authorization_id')}",
    }
