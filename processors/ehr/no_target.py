"""A signed EHR write for a practice that has no EHR target -> its answer (pure).

WHY: ``cmd.ehr_write`` is executed only by ``practiceflow ehr sync`` / ``ehr run``, and those
visit only the practices in the setting ``ehr_fhir``. For any other practice a signed renewal
or registration waited on the topic for ever, unanswered, while the item that asked for it was
already ``done`` (issue 12). The worker answers such a command at once with the outcome
``no_ehr``; the ``cmd.results`` handler (``streams/workflows/ehr_results.py``) turns that
answer into an item for a person to enter it by hand, and ``ehr sync`` treats it as answered
for good, so configuring an EHR later never writes a second copy of what was entered by hand.
The reason names no patient (ids only).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from practiceflow.processors.ehr.unwritten import KIND, NO_EHR

REASON: Final = "no EHR configured for this practice (setting ehr_fhir): nothing written; enter it by hand"


def answer_without_target(command: Mapping[str, Any], configured: Collection[str], now: int) -> dict[str, Any] | None:
    """The ``CommandResult`` for an ``ehr_write`` command of a practice not in ``configured``
    (the practice ids of ``ehr_fhir``); None when the practice has an EHR (the sync writes it)
    or the command is of another kind."""
    if command.get("kind") != KIND or command["practice_id"] in configured:
        return None
    return {
        "practice_id": command["practice_id"],
        "command_id": command["command_id"],
        "kind": KIND,
        "workflow": command.get("workflow") or "",
        "outcome": NO_EHR,
        "reason": REASON,
        "payload_type": None,
        "payload": "",
        "attempts": 0,
        "latency_ms": None,
        "completed_at": now,
        "params": dict(command.get("params") or {}),
    }


__all__ = ["REASON", "answer_without_target"]
