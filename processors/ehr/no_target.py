"""A signed EHR write for a practice that has no EHR target -> its answer (pure).

WHY: ``cmd.ehr_write`` is executed only by ``practiceflow ehr sync`` / ``ehr run``, and those
visit only the practices in the setting ``ehr_fhir``. For any other practice a signed renewal
or registration waited on the topic for ever, unanswered, while the item that asked for it was
already ``done`` (issue 12). The worker answers such a command at once with the outcome
``no_ehr``; the ``cmd.results`` handler (``streams/workflows/ehr_results.py``) turns that
answer into an item for a person to enter it by hand, and ``ehr sync`` treats it as answered
for good, so configuring an EHR later never writes a second copy of what was entered by hand.
The reason names no patient (ids only).

The backlog (review s19 S5): the agent came with an upgrade, and on its first start it reads
``cmd.ehr_write`` from the beginning (30 days). Before it existed the README told clinicians to
enter signed writes of practices without an EHR by hand, and they did; an urgent "NOT written:
enter it by hand" item for each of those would be a flood, and a second prescription for anyone
who follows one. So a command issued before the agent's cut-off (its first start, kept in its
table) is answered ``no_ehr`` all the same (terminal: ``ehr sync`` never writes it later) but
marked :data:`BACKLOG`, and no item is opened for it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from practiceflow.processors.ehr.unwritten import BACKLOG, KIND, NO_EHR

REASON: Final = "no EHR configured for this practice (setting ehr_fhir): nothing written; enter it by hand"
BACKLOG_REASON: Final = (
    "no EHR configured for this practice; signed before practiceflow answered such writes (upgrade backlog): "
    "nothing written, no item (it was to be entered by hand then)"
)


def answer_without_target(
    command: Mapping[str, Any], configured: Collection[str], now: int, since: int | None = None
) -> dict[str, Any] | None:
    """The ``CommandResult`` for an ``ehr_write`` command of a practice not in ``configured``
    (the practice ids of ``ehr_fhir``); None when the practice has an EHR (the sync writes it)
    or the command is of another kind. ``since``: the agent's cut-off (ms); a command issued
    before it is the upgrade's backlog: answered, but marked so that no item is opened."""
    if command.get("kind") != KIND or command["practice_id"] in configured:
        return None
    backlog = since is not None and int(command.get("issued_at") or 0) < since
    params = dict(command.get("params") or {})
    if backlog:
        params[BACKLOG] = str(since)
    return {
        "practice_id": command["practice_id"],
        "command_id": command["command_id"],
        "kind": KIND,
        "workflow": command.get("workflow") or "",
        "outcome": NO_EHR,
        "reason": BACKLOG_REASON if backlog else REASON,
        "payload_type": None,
        "payload": "",
        "attempts": 0,
        "latency_ms": None,
        "completed_at": now,
        "params": params,
    }


__all__ = ["BACKLOG", "BACKLOG_REASON", "REASON", "answer_without_target"]
