"""The pure step of the ``patient_match`` workflow (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

from practiceflow.processors.context.matching import MatchResult, MatchRules
from practiceflow.processors.rules import Overrides, load_rules
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.schemas.typed import SourceRefDict

WORKFLOW = "patient_match"
KIND_AMBIGUOUS = f"{WORKFLOW}.ambiguous"
RULES_FOLDER = "matching"
DEFAULT_RULE = "patient_match.demographic"
_FIELD_NAMES = {"name": "name", "birth_date": "DOB", "sex": "sex", "address": "address", "phone": "phone"}


@dataclass(frozen=True)
class MatchEvent:
    """An input that needed matching: which record (type + key), where it came from, and the answer."""

    practice_id: str
    subject_type: str  # IntakeForm | Document | RefillRequest | ...
    subject_id: str  # the record's own id (submission id, document id, request id)
    record_key: str  # its topic key, for the evidence link
    source: SourceRefDict
    result: MatchResult


def load_match_rules(overrides_dir: Overrides = None, rule_id: str = DEFAULT_RULE) -> MatchRules:
    """The matching rule in force (shipped ``rules/matching/``, a practice's overrides applied)."""
    return load_rules(RULES_FOLDER, MatchRules, overrides_dir).by_id(rule_id)


def _fields(scores: dict[str, float]) -> str:
    return ", ".join(f"{_FIELD_NAMES.get(f, f)} {s:.2f}" for f, s in sorted(scores.items()))


def step(context: None, event: MatchEvent, rules: MatchRules, now: int) -> StepResult:
    """An ambiguous match -> one front-desk item with the candidates; anything else -> nothing.

    ``context`` is unused (the candidates carry what the person needs); it keeps the
    workflow step signature. Titles and texts name no patient: ids and scores only."""
    result = event.result
    if result.status != "ambiguous" or not result.candidates:
        return EMPTY
    ev = [
        evidence(
            f"candidate {i}: patient {c.patient_id}",
            record_type="Patient",
            record_key=f"{event.practice_id}/{c.patient_id}",
            value=f"{c.score:.2f}",
            assessment="candidate",
            excerpt=f"score {c.score:.2f} ({_fields(dict(c.fields))})",
        )
        for i, c in enumerate(result.candidates, start=1)
    ]
    ev.append(
        evidence(
            f"the {event.subject_type} that needs a patient",
            record_type=event.subject_type,
            record_key=event.record_key,
            assessment="info",
            excerpt="; ".join(result.notes) or None,
        )
    )
    options = [
        option("pick", f"Patient {c.patient_id} (score {c.score:.2f})", target=c.patient_id) for c in result.candidates
    ]
    options.append(option("new_patient", "None of these: register a new patient"))
    n = len(result.candidates)
    item = new_item(
        practice_id=event.practice_id,
        workflow=WORKFLOW,
        subject=(event.subject_type, event.subject_id),
        kind=KIND_AMBIGUOUS,
        queue="front_desk",
        title=f"Which patient? {n} possible chart{'s' if n != 1 else ''} for a {event.subject_type}",
        what_happened=(
            f"A {event.subject_type} arrived without a known patient id. Demographic matching found "
            f"{n} candidate{'s' if n != 1 else ''} but no clear match (best {result.candidates[0].score:.2f}; "
            f"automatic match needs {rules.auto_match:.2f} and a lead of {rules.margin:.2f}). Nothing was merged."
        ),
        decision_needed="Pick the patient this belongs to, or register a new patient.",
        produced_by=by_rule(rules.id, rules.version, rules.source),
        source=event.source,
        now=now,
        subject_type=event.subject_type,
        subject_id=event.subject_id,
        evidence=ev,
        options=options,
    )
    audit = AuditReason(
        action="work_item_created",
        entity_type="HandoffItem",
        entity_id=item["item_id"],
        reason=f"{rules.id}@{rules.version}: ambiguous match, {n} candidates",
        details={"subject_type": event.subject_type},
    )
    return StepResult(work_items=(item,), audit=(audit,))
