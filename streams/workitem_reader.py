"""A sample consumer of the work-item contract: read ``pf.handoff`` and fold it to the latest items.

What a staff tool does (README "Work items"): read the compacted handoff topic of its
practice from the beginning, keep the highest ``revision`` per ``item_id``, and show the open
ones by queue. It reads with ``assign()`` and never commits, so any number of tools (and the
``practiceflow queue`` commands) can read it side by side. Only the practice's own partition
is read, and every record is checked to belong to the practice: nothing crosses tenants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from practiceflow.processors.workflows.workitem import END_STATES, latest
from practiceflow.schemas.typed import HandoffItemDict
from practiceflow.streams import catalog
from practiceflow.streams.serde import AvroSerde
from practiceflow.streams.topic_reader import read_to_end


def _records(
    bootstrap: str, serde: AvroSerde, topic: str, practice_id: str, timeout: float, record: str = "HandoffItem"
) -> Iterator[HandoffItemDict]:
    for m in read_to_end(bootstrap, topic, "reader", timeout, practice_id=practice_id):
        value = serde.decode(m.value() or b"", record)
        if value["practice_id"] == practice_id:
            yield value  # type: ignore[misc]  # decoded by the HandoffItem schema


def read_work_items(
    bootstrap: str, serde: AvroSerde, prefix: str, practice_id: str, *, timeout: float = 30.0
) -> dict[str, HandoffItemDict]:
    """Every work item of one practice at its latest revision, by item id."""
    topic = catalog.BY_SUFFIX["handoff"].name(prefix)
    return latest(_records(bootstrap, serde, topic, practice_id, timeout))


def read_practice_records(
    bootstrap: str, serde: AvroSerde, topic: str, practice_id: str, record: str, *, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Every record of one practice on a practice-partitioned topic (drafts, commands), in order;
    read the same way as the handoff topic (assign, never commit, checked per practice)."""
    return [dict(r) for r in _records(bootstrap, serde, topic, practice_id, timeout, record)]


def open_by_queue(items: dict[str, HandoffItemDict]) -> dict[str, list[HandoffItemDict]]:
    """Open and in-progress items per queue, urgent first, then oldest first (how a queue is worked)."""
    rank = {"urgent": 0, "high": 1, "routine": 2}
    out: dict[str, list[HandoffItemDict]] = {}
    for it in items.values():
        if it.get("state", "open") not in END_STATES:
            out.setdefault(it["queue"], []).append(it)
    for q in out.values():
        q.sort(key=lambda i: (rank.get(i.get("priority", "routine"), 3), i["created_at"]))
    return out
