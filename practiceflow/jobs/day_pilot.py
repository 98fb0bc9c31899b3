"""``practiceflow day --pilot``: the day's scripted staff decide its work items; the report compares.

After the day's inputs are through (every workflow in pilot mode for the day's practice), the
scripted staff (``practiceflow/sampleday/staff.py``) decide every open item of the run the way
a person would — through the same ``pf.decisions`` topic the CLI and the EHR write to. The
worker applies them, compares each with the agent's proposal (``streams/workflows/pilot.py``)
and the ClickHouse sink writes the comparisons to ``pilot_agreement``; the summary prints the
same report as ``practiceflow pilot report``, from ClickHouse, with this run's rows only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from practiceflow.jobs.pilot import from_clickhouse, print_report, withheld_in_clickhouse
from practiceflow.processors.pilot.compare import summarize
from practiceflow.processors.pilot.mode import is_piloted
from practiceflow.sampleday.staff import decide_as_staff
from practiceflow.streams import catalog, runner
from practiceflow.streams.clock import now_ms
from practiceflow.streams.workitem_reader import read_work_items


async def scripted_staff(
    pipeline: Any, producer: Any, practice: str, seed: int, sink: Any, since: str, params: dict[str, Any]
) -> dict[str, Any]:
    cfg = pipeline.cfg
    items = await asyncio.to_thread(read_work_items, pipeline.bootstrap, pipeline.serde, cfg.topic_prefix, practice)
    open_items = [
        i
        for i in items.values()
        if i.get("state", "open") == "open"
        and not i.get("decision_id")
        and is_piloted(cfg.pilot, practice, i["workflow"])
    ]
    decisions = [d for d in (decide_as_staff(i, seed, now_ms()) for i in open_items) if d is not None]
    topic = catalog.BY_SUFFIX["decisions"].name(cfg.topic_prefix)
    c = pipeline.counts
    before = c.get("decisions.applied", 0) + c.get("decisions.refused", 0)
    compared_before = c.get("pilot.compared", 0) + c.get("pilot.already_counted", 0)
    for d in decisions:
        value = pipeline.serde.encode(f"{topic}-value", "StaffDecision", dict(d))
        await producer.send_async(topic, f"{practice}/{d['item_id']}", value, practice)

    def decided() -> bool:
        return c.get("decisions.applied", 0) + c.get("decisions.refused", 0) >= before + len(decisions)

    await runner.wait_for(decided, 120)
    applied = c.get("decisions.applied", 0) + c.get("decisions.refused", 0) - before

    def counted() -> bool:
        return c.get("pilot.compared", 0) + c.get("pilot.already_counted", 0) >= compared_before + applied

    await runner.wait_for(counted, 60)
    await runner.wait_for(lambda: sunk(pipeline), 60)
    comparisons = from_clickhouse(sink, practice, since, params)
    return {
        "decisions": len(decisions),
        "applied": applied,
        "comparisons": comparisons,
        "withheld": withheld_in_clickhouse(sink, practice, since, params),
        "withheld_by_kind": {
            k.removeprefix("pilot.withheld."): v for k, v in c.items() if k.startswith("pilot.withheld.")
        },
        "worker_counts": {k: v for k, v in c.items() if k.startswith("pilot.") and k.count(".") == 2},
    }


def sunk(pipeline: Any) -> bool:
    """The comparisons and the audit events (withheld commands) of this worker are in ClickHouse."""
    c = pipeline.counts
    return (
        pipeline.sink_caught_up()
        and c.get("clickhouse.pilot_agreement", 0) >= c.get("pilot.compared", 0)
        and c.get("clickhouse.audit_events", 0) >= c.get("audit.chained", 0)
    )


def print_pilot(pilot: dict[str, Any]) -> None:
    print(
        f"\n  pilot mode (every workflow of the practice, beside scripted staff): {pilot['decisions']} staff "
        f"decisions, {len(pilot['comparisons'])} compared with the agent's proposals (ClickHouse pilot_agreement)"
    )
    print_report(summarize(pilot["comparisons"]), pilot["withheld"], indent="    ")
    print(f"    withheld by workflow.kind (worker counts): {pilot['withheld_by_kind'] or 'none'}")
