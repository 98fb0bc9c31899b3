"""The work-item contract every workflow writes: work items (``handoff``), the evidence and
options they carry, drafts a person signs off, and staff decisions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from practiceflow.schemas.records.common import AvroRecord, SourceRef


class Evidence(BaseModel):
    """One fact a work item rests on, typed so a staff tool can show it and link to it.

    ``label``/``ref``/``excerpt`` are the human-readable form every item has had since
    contract version 1. Version 2 adds where the fact lives (record type and key, or a
    document page and text span) and the value used, so a person can check the
    software's reading against the source instead of trusting it."""

    model_config = ConfigDict(extra="forbid")
    label: str
    ref: str | None = None
    excerpt: str | None = None
    record_type: str | None = Field(default=None, description="Observation | Encounter | MedicationOrder | ...")
    record_key: str | None = Field(default=None, description="the record's topic key (practice/patient/entity)")
    value: str | None = Field(default=None, description="the value the rule or model used, as text")
    unit: str | None = None
    reference_range: str | None = None
    flags: list[str] = Field(default_factory=list, description="the sender's abnormal flags")
    observed_at: str | None = Field(default=None, description="clinical/business time, ISO 8601 at source precision")
    assessment: str | None = Field(
        default=None,
        description="what the rule made of it: present | missing | abnormal | stale | mismatch | met | not_met "
        "| insufficient | info",
    )
    document_uri: str | None = Field(default=None, description="source document in the document store")
    page: int | None = Field(default=None, description="1-based page of the source document")
    span_start: int | None = Field(default=None, description="character offset of the value in the page text")
    span_end: int | None = None


class DecisionOption(BaseModel):
    """One choice a person can make on a work item (processors/workflows/workitem.py OPTIONS)."""

    model_config = ConfigDict(extra="forbid")
    option: str = Field(description="approve | edit | reject | acknowledge | pick | new_patient | reply | file | ...")
    label: str
    target: str | None = Field(default=None, description="what the option refers to (a draft id, a candidate id)")
    editable_fields: list[str] = Field(
        default_factory=list, description="for edit: the draft fields a person may change"
    )


class ProducedBy(BaseModel):
    """The rule (id, version, source) or model (name, version, prompt version) behind an output."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="rule | model | person")
    rule_id: str | None = None
    rule_version: str | None = None
    rule_source: str | None = Field(default=None, description="where the rule comes from (a protocol, a code table)")
    model: str | None = None
    model_version: str | None = None
    prompt_version: str | None = None
    confidence: float | None = None


class HandoffItem(AvroRecord):
    """A unit of work for a person: what happened, what was done, what they must decide.

    The work-item contract of every workflow (docs: README "Work items"). Keyed by
    practice/item_id in a compacted topic: the latest revision of an item wins, and a
    replay writes the same item_id and revision again rather than a second item."""

    __avro_name__ = "HandoffItem"
    practice_id: str
    item_id: str = Field(description="stable: workflow + subject, so replays update rather than duplicate")
    workflow: str
    queue: str = Field(
        description="the role that acts: front_desk | clinician | nurse | billing | referrals | records | triage "
        "| misdirected (processors/workflows/workitem.py QUEUES)"
    )
    priority: str = "routine"
    title: str
    what_happened: str
    actions_taken: list[str] = Field(default_factory=list)
    decision_needed: str | None = None
    patient_id: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    created_at: int
    source: SourceRef
    corrected: bool = Field(
        default=False, description="a corrected/amended result replaced the earlier item with this item_id"
    )
    contract_version: int = Field(default=1, description="1: results review (2026-11); 2: the workflow contract")
    kind: str | None = Field(default=None, description="workflow-specific kind, e.g. refill.routine")
    state: str = Field(default="open", description="open | in_progress | done | rejected | superseded")
    revision: int = Field(default=1, description="grows with every change of the item; consumers keep the highest")
    due_at: int | None = Field(default=None, description="epoch ms by which a person should act")
    supersedes: str | None = Field(default=None, description="the item_id this item replaces")
    proposed_action: str | None = Field(default=None, description="what the software proposes, in words")
    draft_ids: list[str] = Field(default_factory=list, description="Draft records (topic drafts) awaiting sign-off")
    options: list[DecisionOption] = Field(default_factory=list)
    produced_by: ProducedBy | None = None
    assigned_to: str | None = None
    decision_id: str | None = Field(default=None, description="the StaffDecision that closed or moved the item")
    outcome: str | None = Field(default=None, description="the option chosen, once decided")
    updated_at: int | None = None


class Draft(AvroRecord):
    """Something the software prepared for a person to sign off: a FHIR resource, an X12
    transaction, a letter. Nothing in a draft leaves the practice without a decision."""

    __avro_name__ = "Draft"
    practice_id: str
    draft_id: str = Field(description="stable: workflow + subject + kind")
    item_id: str = Field(description="the work item that asks for the sign-off")
    workflow: str
    kind: str = Field(description="fhir.MedicationRequest | fhir.Patient | fhir.Coverage | x12.270 | x12.837P | letter")
    content_type: str = Field(description="application/fhir+json | application/edi-x12 | text/plain | application/pdf")
    body: str = Field(default="", description="the draft itself (JSON, X12 text); empty when document_uri holds it")
    document_uri: str | None = Field(default=None, description="binary drafts (PDF letters) in the document store")
    patient_id: str | None = None
    status: str = Field(default="draft", description="draft | approved | rejected | sent | superseded")
    produced_by: ProducedBy | None = None
    created_at: int
    source: SourceRef | None = None


class StaffDecision(AvroRecord):
    """A person's decision on a work item, from the CLI, the EHR (Task status) or a staff tool."""

    __avro_name__ = "StaffDecision"
    practice_id: str
    decision_id: str = Field(description="stable per decision: channel + item + the channel's own id")
    item_id: str
    item_revision: int | None = Field(default=None, description="the revision the person saw")
    option: str = Field(description="one of the item's options")
    actor: str = Field(description="who decided (user id, never a patient identifier)")
    actor_role: str | None = None
    edits: dict[str, str] = Field(default_factory=dict, description="for edit: field -> new value")
    comment: str | None = None
    channel: str = Field(default="cli", description="cli | fhir | api")
    decided_at: int
