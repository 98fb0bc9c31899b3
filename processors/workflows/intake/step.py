"""The intake workflow's two pure steps: an intake form -> an eligibility command; its result -> work.

``on_intake(context, intake, rules, now)``: the form's insurance -> the payer (payer table)
-> a 270 in an ``eligibility`` :class:`WorkflowCommand` whose id is the idempotency key
``command_id_for("eligibility", "intake", practice, submission id, payer id, member id)``:
the same form replayed gives the same id, and the executor never sends it twice; a
corrected form (other payer or member id) is a new check. A form without insurance or
with a payer the table does not know ends at once as **could not determine** (a front-desk
item, nothing sent). What the result step needs later travels in the command's
``params`` (echoed on the ``CommandResult``), so neither step reads a table.

``on_result(context, result, rules, now)``: the ``CommandResult`` -> one determination
(:mod:`.eligibility`) -> work items, always at least one, whose ``kind`` names the outcome:

* ``intake.eligible`` (front desk): clean; carries the Patient and Coverage drafts to
  approve for the EHR; plus ``intake.visit_ready`` in the clinician queue, assigned to the
  appointment's provider (the appointment routed to the provider's queue);
* ``intake.gap.<check>`` (front desk), one per gap rule that fired, with the 271 evidence
  (the check is not eligible when a fired rule says so: inactive, plan ended);
* ``intake.not_eligible`` (AAA reject reasons meaning no coverage) and
  ``intake.could_not_determine`` (timeout, outage, unknown payer, unreadable 271, AAA
  reasons that mean "ask again"), with the reason and the follow-up action.

Titles name no patient (ids and codes only); names stay in the drafts and the records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from practiceflow.processors.workflows.commands import command_id_for, draft_id_for, new_command
from practiceflow.processors.workflows.intake.drafts import as_body, coverage_resource, patient_resource
from practiceflow.processors.workflows.intake.eligibility import Determination, Fact, determine, summary_facts
from practiceflow.processors.workflows.intake.rules import WORKFLOW, IntakeRules
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.processors.x12.build270 import Inquiry270, Person270, build_270

if TYPE_CHECKING:
    from practiceflow.schemas.typed import DraftDict, EvidenceDict, HandoffItemDict

__all__ = ["IntakeContext", "OUTCOME_OF_KIND", "on_intake", "on_result", "trace_for"]

HOUR_MS = 3_600_000
DEFAULT_SERVICE_TYPE = "30"  # health benefit plan coverage
OUTCOME_OF_KIND = {
    "intake.eligible": "eligible",
    "intake.not_eligible": "not_eligible",
    "intake.could_not_determine": "could_not_determine",
}


@dataclass(frozen=True)
class IntakeContext:
    """What the shell knows besides the event: the patient match and the practice's identity.

    ``match_status`` is the patient matcher's answer (``processors/context/matching.py``):
    matched (``patient_id`` set), new, ambiguous (a candidates item is the matcher's
    work; no Patient draft is proposed until a person picks) or unknown."""

    match_status: str = "unknown"
    patient_id: str | None = None
    provider_npi: str = "1234567893"
    provider_name: str = "PRACTICE"
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "CLEARINGHOUSE"
    usage: str = "P"
    deadline_ms: int = 120_000
    mrn_system: str = "urn:practiceflow:mrn"


def trace_for(command_id: str) -> str:
    """TRN02 of the 270: short, no PHI, and derived from the idempotency key."""
    return "PF" + hashlib.sha256(command_id.encode()).hexdigest()[:16].upper()


def _control(command_id: str) -> int:
    return int(hashlib.sha256(command_id.encode()).hexdigest()[:8], 16) % 1_000_000_000 or 1


def _visit_date(intake: Mapping[str, Any]) -> str | None:
    start = intake.get("appointment_start")
    return str(start)[:10] if start else None


def _due(intake: Mapping[str, Any], hours: float, now: int) -> int | None:
    if hours <= 0:
        return None
    start = intake.get("appointment_start")
    if start:
        try:
            at = int(datetime.fromisoformat(str(start)).timestamp() * 1000)
            return max(now, at - int(hours * HOUR_MS))
        except ValueError:
            pass
    return now + int(hours * HOUR_MS)


def _key(intake: Mapping[str, Any]) -> str:
    return f"{intake['practice_id']}/{intake.get('patient_id') or '-'}/{intake['submission_id']}"


def _intake_evidence(intake: Mapping[str, Any]) -> EvidenceDict:
    return evidence(
        "intake form",
        record_type="IntakeForm",
        record_key=_key(intake),
        assessment="info",
        observed_at=datetime.fromtimestamp(intake["submitted_at"] / 1000, UTC).isoformat(),
    )


def _person(intake: Mapping[str, Any]) -> Person270:
    return Person270(
        family_name=intake["family_name"],
        given_name=intake["given_name"],
        birth_date=intake.get("birth_date"),
        sex=intake.get("sex"),
    )


def build_inquiry(
    intake: Mapping[str, Any], ctx: IntakeContext, payer_id: str, payer_name: str, command_id: str, now: int
) -> Inquiry270:
    """The 270 for this form: the patient as subscriber, or as a dependent of the named subscriber."""
    rel = intake.get("subscriber_relationship") or "self"
    member = str(intake.get("insurance_member_id") or "")
    group = intake.get("insurance_group")
    patient = _person(intake)
    if rel == "self":
        subscriber = Person270(patient.family_name, patient.given_name, patient.birth_date, patient.sex, member, group)
        dependent = None
    else:
        subscriber = Person270(
            intake.get("subscriber_family_name") or patient.family_name,
            intake.get("subscriber_given_name") or "",
            intake.get("subscriber_birth_date"),
            None,
            member,
            group,
        )
        dependent = patient
    ctl = _control(command_id)
    return Inquiry270(
        trace_number=trace_for(command_id),
        payer_id=payer_id,
        payer_name=payer_name,
        provider_npi=ctx.provider_npi,
        provider_name=ctx.provider_name,
        subscriber=subscriber,
        dependent=dependent,
        relationship=None if dependent is None else rel,
        service_date=_visit_date(intake),
        service_types=(intake.get("service_type") or DEFAULT_SERVICE_TYPE,),
        sender_id=ctx.sender_id,
        receiver_id=ctx.receiver_id,
        interchange_control=ctl,
        group_control=ctl,
        usage=ctx.usage,
        created_at=datetime.fromtimestamp(now / 1000, UTC).replace(tzinfo=None),
    )


def _cannot_check(
    intake: Mapping[str, Any], ctx: IntakeContext, rules: IntakeRules, now: int, code: str, why: str, follow: str
) -> StepResult:
    det = Determination(
        "could_not_determine",
        code,
        why,
        follow_up=follow,
        rule_id="intake.payers",
        rule_version=rules.versions.get("intake.payers", "1"),
        rule_source="rules/intake/payers.yaml",
    )
    params = _params(intake, ctx, None, None, "")
    item = _outcome_item(intake, params, det, now, ())
    return StepResult(work_items=(item,), audit=(_audit(item, det),))


def _params(
    intake: Mapping[str, Any], ctx: IntakeContext, payer_id: str | None, payer_name: str | None, trace: str
) -> dict[str, str]:
    """What the result step needs, carried by the command and echoed on its result."""
    return {
        "payer_id": payer_id or "",
        "payer_name": payer_name or "",
        "trace_number": trace,
        "submission_id": str(intake["submission_id"]),
        "match_status": ctx.match_status,
        "patient_id": ctx.patient_id or "",
        "service_type": str(intake.get("service_type") or DEFAULT_SERVICE_TYPE),
        "visit_date": _visit_date(intake) or "",
        "provider": str(intake.get("appointment_provider") or ""),
        "mrn_system": ctx.mrn_system,
        "intake": json.dumps(dict(intake), sort_keys=True, separators=(",", ":"), default=str),
    }


def on_intake(ctx: IntakeContext, intake: Mapping[str, Any], rules: IntakeRules, now: int) -> StepResult:
    """An IntakeForm -> the eligibility command (or, when no check is possible, a front-desk item)."""
    if not intake.get("insurance_member_id") or not (intake.get("insurance_payer") or intake.get("insurance_payer_id")):
        return _cannot_check(
            intake,
            ctx,
            rules,
            now,
            "no_insurance",
            "the intake form gives no insurance (payer and member id)",
            "Ask the patient for the insurance card, or record self-pay.",
        )
    payer = rules.payer_for(intake.get("insurance_payer_id"), intake.get("insurance_payer"))
    if payer is None:
        return _cannot_check(
            intake,
            ctx,
            rules,
            now,
            "unknown_payer",
            "the payer named on the form is not in the practice's payer table (rules/intake/payers.yaml)",
            "Find the payer's id (card, clearinghouse payer list), add it to the payer table, and re-check.",
        )
    subject = (str(intake["submission_id"]), payer.payer_id, str(intake["insurance_member_id"]))
    cid = command_id_for("eligibility", WORKFLOW, intake["practice_id"], *subject)
    inquiry = build_inquiry(intake, ctx, payer.payer_id, payer.name, cid, now)
    command = new_command(
        practice_id=intake["practice_id"],
        kind="eligibility",
        workflow=WORKFLOW,
        subject=subject,
        payload_type="x12.270",
        payload=build_270(inquiry).decode("ascii"),
        now=now,
        patient_id=ctx.patient_id,
        params=_params(intake, ctx, payer.payer_id, payer.name, inquiry.trace_number),
        deadline_at=now + ctx.deadline_ms,
        source=intake.get("source"),
    )
    audit = AuditReason(
        action="eligibility_requested",
        entity_type="WorkflowCommand",
        entity_id=command["command_id"],
        reason=f"intake form {intake['submission_id']}: 270 to payer {payer.payer_id}",
        details={"payer_id": payer.payer_id, "match": ctx.match_status},
    )
    return StepResult(commands=(command,), audit=(audit,))


# --------------------------------------------------------------------------- results
def _fact_evidence(f: Fact, command_key: str, observed: str | None) -> EvidenceDict:
    return evidence(
        f.label,
        record_type="CommandResult" if command_key else None,
        record_key=command_key or None,
        value=f.value,
        observed_at=f.observed_at or observed,
        assessment=f.assessment,
    )


def _base_evidence(
    intake: Mapping[str, Any], params: Mapping[str, str], det: Determination, command_key: str
) -> list[EvidenceDict]:
    observed = None
    ev = [_intake_evidence(intake)]
    ev.append(
        evidence(
            "eligibility outcome",
            record_type="CommandResult" if command_key else None,
            record_key=command_key or None,
            value=det.outcome,
            assessment="met" if det.outcome == "eligible" else "not_met",
            excerpt=f"{det.outcome}: {det.reason}",
        )
    )
    for f in (*summary_facts(det.response), *det.facts):
        ev.append(_fact_evidence(f, command_key, observed))
    if params.get("visit_date"):
        ev.append(evidence("appointment date", value=params["visit_date"], assessment="info"))
    return ev


def _outcome_item(
    intake: Mapping[str, Any],
    params: Mapping[str, str],
    det: Determination,
    now: int,
    extra_ev: tuple[EvidenceDict, ...],
    command_key: str = "",
    kind: str | None = None,
) -> HandoffItemDict:
    kind = kind or f"intake.{det.outcome}"
    return new_item(
        practice_id=intake["practice_id"],
        workflow=WORKFLOW,
        subject=(str(intake["submission_id"]), kind),
        kind=kind,
        queue="front_desk",
        priority="high",
        title=f"Eligibility {det.outcome.replace('_', ' ')}: {det.reason_code}",
        what_happened=f"Eligibility check for intake {intake['submission_id']}: {det.reason}.",
        actions_taken=["sent a 270 eligibility inquiry"] if command_key else [],
        decision_needed=det.follow_up or None,
        proposed_action=det.follow_up or None,
        produced_by=by_rule(det.rule_id, det.rule_version, det.rule_source),
        source=intake["source"],
        now=now,
        patient_id=params.get("patient_id") or None,
        subject_type="IntakeForm",
        subject_id=str(intake["submission_id"]),
        evidence=[*_base_evidence(intake, params, det, command_key), *extra_ev],
        options=[option("acknowledge", "Done: the follow-up is handled"), option("reject", "Not needed")],
        due_at=_due(intake, 24, now),
    )


def _audit(item: HandoffItemDict, det: Determination) -> AuditReason:
    return AuditReason(
        action="eligibility_determined",
        entity_type="HandoffItem",
        entity_id=item["item_id"],
        reason=f"{det.rule_id}@{det.rule_version}: {det.outcome} ({det.reason_code})",
        details={"outcome": det.outcome, "reason_code": det.reason_code, "kind": item.get("kind") or ""},
    )


def _draft(
    intake: Mapping[str, Any], item_id: str, kind: str, resource: Mapping[str, Any], det: Determination, now: int
) -> DraftDict:
    return {
        "practice_id": intake["practice_id"],
        "draft_id": draft_id_for(WORKFLOW, kind, str(intake["submission_id"])),
        "item_id": item_id,
        "workflow": WORKFLOW,
        "kind": kind,
        "content_type": "application/fhir+json",
        "body": as_body(resource),
        "document_uri": None,
        "patient_id": intake.get("patient_id"),
        "status": "draft",
        "produced_by": by_rule(det.rule_id, det.rule_version, det.rule_source),
        "created_at": now,
        "source": intake.get("source"),
    }


def on_result(ctx: IntakeContext | None, result: Mapping[str, Any], rules: IntakeRules, now: int) -> StepResult:
    """A ``CommandResult`` of an intake eligibility check -> its work items (and drafts when clean)."""
    params: Mapping[str, str] = result.get("params") or {}
    intake: dict[str, Any] = json.loads(params["intake"])
    if params.get("patient_id"):
        intake["patient_id"] = params["patient_id"]
    command_key = f"{result['practice_id']}/{result['command_id']}"
    det = determine(
        result,
        rules,
        trace_number=params.get("trace_number") or None,
        service_type=params.get("service_type") or DEFAULT_SERVICE_TYPE,
        visit_date=params.get("visit_date") or None,
    )
    items: list[HandoffItemDict] = []
    drafts: list[DraftDict] = []
    if det.gaps:
        for gap in det.gaps:
            rule = gap.rule
            kind = f"intake.gap.{rule.check}"
            gap_ev = tuple(_fact_evidence(f, command_key, None) for f in gap.facts)
            item = new_item(
                practice_id=intake["practice_id"],
                workflow=WORKFLOW,
                subject=(str(intake["submission_id"]), kind),
                kind=kind,
                queue="front_desk",
                priority=rule.priority,
                title=rule.title,
                what_happened=(
                    f"Eligibility check for intake {intake['submission_id']} (payer {params.get('payer_id')}): "
                    f"{rule.title.lower()}. Outcome of the check: {det.outcome.replace('_', ' ')}."
                ),
                actions_taken=["sent a 270 eligibility inquiry", "read the payer's 271"],
                decision_needed=rule.follow_up,
                proposed_action=rule.follow_up,
                produced_by=by_rule(rule.id, rule.version, rule.source),
                source=intake["source"],
                now=now,
                patient_id=intake.get("patient_id"),
                subject_type="IntakeForm",
                subject_id=str(intake["submission_id"]),
                evidence=[*_base_evidence(intake, params, det, command_key)[:2], *gap_ev],
                options=[option("acknowledge", "Handled with the patient"), option("reject", "Not a real gap")],
                due_at=_due(intake, rule.due_hours, now),
            )
            items.append(item)
    elif det.outcome == "eligible":
        item_id_kind = "intake.eligible"
        base = _outcome_item(intake, params, det, now, (), command_key, kind=item_id_kind)
        pid = intake.get("patient_id")
        matched = params.get("match_status") in ("matched", "new", "unknown")
        item_drafts: list[DraftDict] = []
        if matched:
            patient = patient_resource(intake, pid, params.get("mrn_system") or "urn:practiceflow:mrn")
            item_drafts.append(_draft(intake, base["item_id"], "fhir.Patient", patient, det, now))
        coverage = coverage_resource(
            intake,
            det.response or {},
            f"Patient/{pid or 'intake-' + str(intake['submission_id'])}",
            params.get("payer_id") or "",
            params.get("payer_name") or "",
        )
        item_drafts.append(_draft(intake, base["item_id"], "fhir.Coverage", coverage, det, now))
        base["title"] = "Eligible: approve the registration for the EHR"
        base["priority"] = "routine"
        base["draft_ids"] = [d["draft_id"] for d in item_drafts]
        base["options"] = [
            option("approve", "Write the Patient and Coverage to the EHR"),
            option("edit", "Correct, then write", editable=("name", "address", "telecom", "subscriberId")),
            option("reject", "Do not write"),
        ]
        base["decision_needed"] = "Approve the Patient and Coverage drafts for the EHR." + (
            "" if matched else " The patient match is ambiguous: pick the chart first (front-desk item)."
        )
        base["due_at"] = None
        items.append(base)
        drafts.extend(item_drafts)
        items.append(_visit_item(intake, params, det, now, command_key))
    else:
        items.append(_outcome_item(intake, params, det, now, (), command_key))
    audit = tuple(_audit(i, det) for i in items)
    return StepResult(work_items=tuple(items), drafts=tuple(drafts), audit=audit)


def _visit_item(
    intake: Mapping[str, Any], params: Mapping[str, str], det: Determination, now: int, command_key: str
) -> HandoffItemDict:
    """The appointment, routed to its provider's queue once insurance is verified."""
    provider = params.get("provider") or "unassigned"
    item = new_item(
        practice_id=intake["practice_id"],
        workflow=WORKFLOW,
        subject=(str(intake["submission_id"]), "intake.visit_ready"),
        kind="intake.visit_ready",
        queue="clinician",
        title=f"Visit ready: insurance verified ({params.get('visit_date') or 'no date'})",
        what_happened=f"Intake {intake['submission_id']} is complete and the payer confirmed active coverage.",
        decision_needed=None,
        produced_by=by_rule(det.rule_id, det.rule_version, det.rule_source),
        source=intake["source"],
        now=now,
        patient_id=intake.get("patient_id"),
        subject_type="Appointment" if intake.get("appointment_id") else "IntakeForm",
        subject_id=str(intake.get("appointment_id") or intake["submission_id"]),
        evidence=_base_evidence(intake, params, det, command_key)[:2],
        options=[option("acknowledge", "Seen")],
    )
    item["assigned_to"] = provider
    return item
