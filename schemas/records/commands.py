"""Side effects a workflow asks for (``cmd.<kind>``) and what became of each (``cmd.results``)."""

from __future__ import annotations

from pydantic import Field

from practiceflow.schemas.records.common import AvroRecord, SourceRef


class WorkflowCommand(AvroRecord):
    """A side effect a workflow asks for (send a 270, call the LLM, write to the EHR).

    ``command_id`` is the idempotency key: the executor performs each id at most once,
    so replaying the workflow's log re-emits the command but never re-sends it."""

    __avro_name__ = "WorkflowCommand"
    practice_id: str
    command_id: str = Field(description="idempotency key: kind + workflow + subject (processors/workflows/commands.py)")
    kind: str = Field(description="eligibility | llm | ehr_write | ... (one topic cmd.<kind> each)")
    workflow: str
    item_id: str | None = None
    patient_id: str | None = None
    payload_type: str = Field(description="what payload holds: x12.270 | llm.request | fhir.Task | ...")
    payload: str = Field(description="the request, as text (X12, JSON)")
    params: dict[str, str] = Field(default_factory=dict, description="routing: payer id, endpoint name, ...")
    issued_at: int
    deadline_at: int | None = Field(default=None, description="after this the executor answers timeout")
    source: SourceRef | None = None


class CommandResult(AvroRecord):
    """What became of one command: its answer, or why there is none."""

    __avro_name__ = "CommandResult"
    practice_id: str
    command_id: str
    kind: str
    workflow: str
    outcome: str = Field(description="ok | failed | timeout | refused | no_ehr (ehr_write: the practice has no EHR)")
    reason: str | None = None
    payload_type: str | None = None
    payload: str = ""
    attempts: int = 1
    latency_ms: float | None = None
    completed_at: int
    params: dict[str, str] = Field(
        default_factory=dict,
        description="the command's params, echoed: the workflow reads its answer without looking the command up",
    )
