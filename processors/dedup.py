"""How long the worker remembers a message id, and which remembered ids may go.

The worker's de-dup table maps ``practice/feed/message_id`` to the gateway's
``received_at`` (epoch ms) of the first copy. A resend after a lost ACK arrives within
seconds or hours, so ids older than the retention (a week by default) are forgotten;
without that the table, and the memory holding it, would grow for ever. A copy that
arrives after its id was forgotten is processed again, which is safe: every record is
written under its stable entity key (compacted topics, ReplacingMergeTree tables).

Time is the messages' own ``received_at``, not the clock, so a replay forgets exactly
what the original run forgot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def sweep_due(last_sweep_ms: int | None, received_at_ms: int, retention_ms: int) -> bool:
    """Sweep once per tenth of the retention (of event time): an id lives at most 1.1 x retention."""
    return last_sweep_ms is None or received_at_ms - last_sweep_ms >= max(retention_ms // 10, 1)


LEGACY = 1  # the value entries had before they carried a time


def sweep(
    entries: Iterable[tuple[str, int]], cutoff_ms: int, owned: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """(keys to forget, keys to restamp) among the entries this partition owns.

    Forget: first seen before ``cutoff_ms``. Restamp: written before ids carried a time
    (value 1); they get the sweeping message's time rather than being forgotten at once,
    so an upgrade does not reopen every recent id to resends. Only the owning partition
    may write a key: the change goes to that partition of the table's changelog.
    """
    forget: list[str] = []
    restamp: list[str] = []
    for key, seen_at in entries:
        if seen_at == LEGACY:
            if owned(key):
                restamp.append(key)
        elif seen_at < cutoff_ms and owned(key):
            forget.append(key)
    return forget, restamp


REDRIVE_HEADER = "pf-redrive"  # RawMessage header set by `practiceflow dlq redrive`


def is_redrive(raw: dict[str, Any]) -> bool:
    """A dead letter re-sent on purpose after a fix: the de-dup table knows its id (it was
    dead-lettered), but it must be processed again, not counted as a duplicate."""
    return bool((raw.get("headers") or {}).get(REDRIVE_HEADER))


def control_key_for(practice_id: str, feed: str, control_key: str | None) -> str | None:
    """The de-dup table key that remembers a sender's control id without its content
    (HL7 MSH-3/4/10), so a reused control id with new content can be flagged. Same value
    (first ``received_at``) and the same retention as the message ids it sits beside."""
    return f"{practice_id}/{feed}/ctl:{control_key}" if control_key else None
