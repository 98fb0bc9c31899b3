"""Audit and analytics: the hash-chained audit trail, flow events for the dashboards, and the pilot
(shadow mode) comparison of proposals against staff decisions."""

from __future__ import annotations

from pydantic import Field

from practiceflow.schemas.records.common import AvroRecord


class AuditEvent(AvroRecord):
    """Who did what, when and why; ``hash`` chains to ``prev_hash`` per practice."""

    __avro_name__ = "AuditEvent"
    practice_id: str
    event_id: str
    at: int
    actor: str
    action: str
    entity_type: str
    entity_id: str
    reason: str
    outcome: str = "ok"
    details: dict[str, str] = Field(default_factory=dict)
    prev_hash: str | None = None
    hash: str | None = None


class FlowEvent(AvroRecord):
    """One message passing one stage; the analytics tables count these."""

    __avro_name__ = "FlowEvent"
    practice_id: str
    message_id: str
    feed: str
    stage: str = Field(description="accepted | normalized | dead_lettered | handoff | duplicate")
    record_type: str | None = None
    records: int = 0
    latency_ms: float | None = None
    at: int


class PilotComparison(AvroRecord):
    """Pilot (shadow) mode: one work item's proposal against what staff did (processors/pilot/compare.py).

    Keyed ``practice/item_id`` (compacted): one verdict per item, the first decision that gave one."""

    __avro_name__ = "PilotComparison"
    practice_id: str
    item_id: str
    workflow: str
    kind: str = Field(description="the item's class, e.g. refill.routine, fax.lab_result")
    queue: str = Field(description="where the agent routed it")
    rule_id: str = Field(description="the rule (or model) that produced the proposal")
    rule_version: str
    staff_option: str = Field(description="what staff chose: approve, edit, reject, file, ...")
    staff_queue: str = Field(default="", description="where staff filed it instead, if elsewhere")
    staff_channel: str = Field(default="cli", description="cli | ehr | staff_tool | scripted")
    decision_id: str
    verdict: str = Field(description="agree | disagree | no_verdict")
    why: str = ""
    minutes: float = Field(default=0.0, description="documented staff minutes per task (rules/pilot/tasks.yaml)")
    minutes_saved: float = Field(default=0.0, description="minutes when staff agreed, else 0")
    task_rule: str = Field(default="", description="the pilot rule id@version that judged it")
    decided_at: int
