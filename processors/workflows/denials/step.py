"""The denial step: one 835 claim (``ClaimAdjudication``) -> categories, money, a work item, drafts.

``decide(context, adjudication, rules, now)`` is pure (the contract's step shape, plus the
claim store's next state and the ledger entries, which the shell writes beside the
StepResult). What it does, in order:

1. Categorize every claim- and line-level adjustment (:mod:`.categorize`), each with the
   rule (id + version) that decided it.
2. A **reversal** (CLP02 22) is linked to the adjudication it reverses (same payer claim
   control number) and changes the claim's net payment; it asks nothing of a person. The
   correction that follows it is an ordinary adjudication of the same claim.
3. **Money**: one ledger entry per category (denied, recoverable, written off, patient
   responsibility). A later 835 of the same claim that raises its net payment *recovers*
   open entries (oldest first): recovered amount, state, resolution date and days.
4. **The action**, from the largest denial category and ``actions.yaml``: with a fix on
   file (:func:`.store.find_fix`) a corrected claim, else the category's fallback (appeal,
   review); contractual adjustments get a write-off recommendation and patient
   responsibility a transfer, as drafts beside it. Edge cases (claim not in the store, no
   CLP07, a claim an 837P cannot carry, ``needs_person``) go to the billing queue as a
   review. Everything is a Draft with approve / edit / reject options: nothing is sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from practiceflow.processors.base import entity_key
from practiceflow.processors.workflows.commands import draft_id_for
from practiceflow.processors.workflows.denials.categorize import (
    Categorized,
    categorize_adjudication,
    totals_by_category,
)
from practiceflow.processors.workflows.denials.drafts import (
    WORKFLOW,
    BillingProfile,
    appeal_letter,
    claim_resource,
    corrected_claim,
    posting_document,
)
from practiceflow.processors.workflows.denials.rules import RECOVERABLE, DenialRules
from practiceflow.processors.workflows.denials.store import (
    FieldChange,
    Fix,
    PatientFacts,
    claim_diff,
    empty_claim_state,
    find_fix,
)
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, item_id_for, new_item, option
from practiceflow.processors.x12.write837 import WriteError

if TYPE_CHECKING:
    from practiceflow.schemas.typed import DraftDict, EvidenceDict, HandoffItemDict

POSTING = frozenset({"contractual_obligation", "patient_responsibility"})
LABELS = {
    "eligibility_coverage": "eligibility / coverage",
    "authorization_missing": "authorization missing",
    "coding_modifier": "coding or modifier",
    "bundling": "bundling",
    "medical_necessity": "medical necessity",
    "missing_information": "missing information",
    "timely_filing": "timely filing",
    "duplicate": "duplicate",
    "coordination_of_benefits": "coordination of benefits",
    "contractual_obligation": "contractual obligation",
    "patient_responsibility": "patient responsibility",
    "needs_person": "needs a person",
}


@dataclass(frozen=True)
class DenialContext:
    """What the step reads besides the 835: the claim store and the patient's facts."""

    claim_state: Mapping[str, Any] | None = None
    facts: PatientFacts = field(default_factory=PatientFacts)
    profile: BillingProfile = field(default_factory=BillingProfile)
    descriptions: Mapping[str, str] = field(default_factory=dict)  # CARC -> wording


@dataclass(frozen=True)
class DenialDecision:
    result: StepResult
    state: dict[str, Any]  # the claim store's next state for this claim
    ledger: tuple[dict[str, Any], ...] = ()  # DenialLedgerEntry records (new and updated)
    categorized: tuple[Categorized, ...] = ()
    diff: tuple[FieldChange, ...] = ()  # the corrected claim's fix (empty when no corrected claim)
    action: str | None = None


def _h(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _days(start: str | None, end: str | None) -> int | None:
    try:
        return (date.fromisoformat(end or "") - date.fromisoformat(start or "")).days
    except ValueError:
        return None


def _r(x: float) -> float:
    return round(x + 0.0, 2)


def decide(ctx: DenialContext, adj: Mapping[str, Any], rules: DenialRules, now: int) -> DenialDecision:
    """See the module docstring. ``now`` is the event time in epoch ms (never the wall clock)."""
    pid = adj["practice_id"]
    adj_id = adj["adjudication_id"]
    state: dict[str, Any] = dict(ctx.claim_state) if ctx.claim_state else empty_claim_state()
    seen: dict[str, Any] = dict(state.get("adjudications") or {})
    open_entries: dict[str, dict[str, Any]] = {e["entry_id"]: dict(e) for e in state.get("open") or ()}
    categorized = tuple(categorize_adjudication(adj, rules))
    paid = float(adj.get("paid") or 0.0)
    pccn = adj.get("payer_claim_control_number")
    net_before = _r(sum(float(s.get("paid") or 0.0) for k, s in seen.items() if k != adj_id))
    net_after = _r(net_before + paid)
    seen[adj_id] = {
        "paid": paid,
        "status_code": adj.get("status_code"),
        "payment_date": adj.get("payment_date"),
        "payer_claim_control_number": pccn,
        "reversal": bool(adj.get("reversal")),
    }
    audit: list[AuditReason] = []
    ledger: list[dict[str, Any]] = []

    # 2. reversal: link it, no work item
    if adj.get("reversal") or adj.get("status_code") == "22":
        reversed_ids = [
            k
            for k, s in seen.items()
            if k != adj_id and not s.get("reversal") and pccn and s.get("payer_claim_control_number") == pccn
        ]
        for k in reversed_ids:
            seen[k] = {**seen[k], "reversed_by": adj_id}
        seen[adj_id]["reverses"] = reversed_ids
        state.update(adjudications=seen, open=list(open_entries.values()))
        audit.append(
            AuditReason(
                "denial_reversal_linked",
                "ClaimAdjudication",
                adj_id,
                f"CLP02 22 reverses {len(reversed_ids)} earlier adjudication(s) of the claim",
                details={"reverses": ",".join(reversed_ids)},
            )
        )
        return DenialDecision(StepResult(audit=tuple(audit)), state, (), categorized)

    # 3a. a later 835 that raises the claim's net payment recovers open entries, oldest first
    for eid in list(open_entries):
        e = open_entries[eid]
        if e["adjudication_id"] == adj_id:
            continue
        gain = _r(net_after - e["net_paid_before"] - e["recovered"])
        if gain <= 0:
            continue
        take = _r(min(gain, e["recoverable"] - e["recovered"]))
        if take <= 0:
            continue
        e["recovered"] = _r(e["recovered"] + take)
        done = e["recovered"] >= e["recoverable"] - 0.005
        e["state"] = "recovered" if done else "partially_recovered"
        e["resolved_on"] = adj.get("payment_date")
        e["days_to_resolution"] = _days(e.get("denied_on"), adj.get("payment_date"))
        e["updated_at"] = now
        ledger.append(dict(e))
        if done:
            del open_entries[eid]
        else:
            open_entries[eid] = e

    # 3b. this 835's money per category
    by_cat: dict[str, list[Categorized]] = {}
    for c in categorized:
        by_cat.setdefault(c.category, []).append(c)
    totals = totals_by_category(categorized)
    denial_cats = sorted((c for c in by_cat if c not in POSTING and totals[c] > 0), key=lambda c: (-totals[c], c))
    primary = denial_cats[0] if denial_cats else None
    original = state.get("claim")

    # 4. the action and its drafts
    item_subject = ("adjudication", pid, adj_id)
    item_id = item_id_for(WORKFLOW, *item_subject) if by_cat else None
    drafts: list[DraftDict] = []
    ev: list[EvidenceDict] = []
    fix: Fix | None = None
    diff: tuple[FieldChange, ...] = ()
    action: str | None = None
    notes: list[str] = []
    adj_key = entity_key(pid, adj.get("patient_id"), adj_id)
    produced = None
    priority = "routine"
    if primary is not None:
        arule = rules.action(primary)
        produced = by_rule(arule.id, arule.version, arule.source)
        priority = arule.priority
        fix = find_fix(primary, state, ctx.facts)
        action = arule.with_fix if fix is not None else arule.otherwise
        if not ctx.facts.current and action != "review":
            # fail closed: the coverage/authorization facts may be stale (context_not_current)
            notes.append("context_not_current: the patient's coverage and authorizations had not caught up")
            fix, action = None, "review"
        if action == "corrected_claim":
            problem = None
            if fix is None or original is None:
                problem = "the original claim is not in the claim store"
            elif not pccn:
                problem = "the 835 gives no payer claim control number (CLP07) to replace"
            if problem is None and fix is not None and original is not None:
                try:
                    ctl = int(_h("837", pid, adj_id)[:8], 16) % 999_999_999 + 1
                    created = datetime.fromtimestamp(now / 1000, tz=UTC).date().isoformat()
                    fixed, x12 = corrected_claim(
                        original, fix.changes, adj, ctx.profile, interchange_control=ctl, created=created
                    )
                    # the same replacement as a FHIR Claim draft for the EHR write-back (issue 12)
                    fhir_id = draft_id_for(WORKFLOW, "fhir.Claim", pid, adj_id)
                    resource = claim_resource(fixed, adj, ctx.profile, draft_id=fhir_id, created=created)
                    body = json.dumps(resource, sort_keys=True, separators=(",", ":"))
                    diff = fix.changes
                    drafts.append(_draft(adj, item_id, "x12.837P", "application/edi-x12", x12, produced, now))
                    drafts.append(_draft(adj, item_id, "fhir.Claim", "application/fhir+json", body, produced, now))
                    for ch in claim_diff(original, fixed):
                        ev.append(
                            evidence(
                                f"corrected claim: {ch.path}",
                                record_type="Claim",
                                record_key=entity_key(pid, original.get("patient_id"), original["claim_id"]),
                                value=None if ch.new is None else str(ch.new),
                                excerpt=f"{ch.old!s} -> {ch.new!s}",
                                assessment="mismatch",
                                ref=ch.path,
                            )
                        )
                    for ch in fix.changes:
                        ev.append(
                            evidence(
                                f"fix on file: {ch.why}",
                                record_type=ch.record_type,
                                record_key=ch.record_key,
                                value=None if ch.new is None else str(ch.new),
                                assessment="present",
                                ref=ch.path,
                            )
                        )
                except WriteError as exc:
                    problem = f"the corrected claim cannot be written as an 837P ({exc})"
                except ValidationError as exc:
                    problem = f"the corrected claim is not a valid FHIR Claim ({exc.error_count()} error(s))"
            if problem is not None:
                notes.append(problem)
                action = arule.otherwise if arule.otherwise != "corrected_claim" else "review"
                diff = ()
        if action == "appeal":
            lines = [
                f"remittance advice of {adj.get('payment_date') or 'the payment'} (835, trace {adj.get('payment_trace')})"
            ]
            if original is not None:
                lines.append(
                    f"the claim as submitted (837, {original.get('service_date')}: "
                    + ", ".join(str((ln.get("procedure") or {}).get("code")) for ln in original.get("lines") or ())
                    + ")"
                )
            if fix is not None:
                lines += [ch.why for ch in fix.changes]
            denied_items = [c for cat in denial_cats for c in by_cat[cat]]
            letter = appeal_letter(adj, original, denied_items, ctx.descriptions, lines, ctx.profile)
            drafts.append(_draft(adj, item_id, "letter.appeal", "text/plain", letter, produced, now))
    if "contractual_obligation" in by_cat and totals["contractual_obligation"] != 0:
        body = posting_document("write_off", adj, by_cat["contractual_obligation"])
        drafts.append(_draft(adj, item_id, "billing.write_off", "application/json", body, produced, now))
    if "patient_responsibility" in by_cat and totals["patient_responsibility"] != 0:
        body = posting_document("transfer_to_patient", adj, by_cat["patient_responsibility"])
        drafts.append(_draft(adj, item_id, "billing.patient_transfer", "application/json", body, produced, now))
    if action is None:
        action = "write_off" if "contractual_obligation" in by_cat else "transfer_to_patient" if by_cat else None
        if action is not None:
            arule = rules.action("contractual_obligation" if action == "write_off" else "patient_responsibility")
            produced = by_rule(arule.id, arule.version, arule.source)

    for cat, items in by_cat.items():
        amount = totals[cat]
        if amount == 0:
            continue
        denied = max(amount, 0.0) if cat not in POSTING else 0.0  # a negative adjustment paid more, denied nothing
        recoverable = amount if cat in RECOVERABLE and amount > 0 else 0.0
        entry = {
            "practice_id": pid,
            "entry_id": _h("ledger", adj_id, cat),
            "claim_id": adj["claim_id"],
            "adjudication_id": adj_id,
            "payer_id": adj.get("payer_id"),
            "payer_name": adj.get("payer_name"),
            "category": cat,
            "rule_ids": sorted({f"{c.rule_id}@{c.rule_version}" for c in items}),
            "reason_codes": sorted({f"{c.group}-{c.carc}" for c in items} | {r for c in items for r in c.rarcs}),
            "adjusted": amount,
            "denied": _r(denied),
            "recoverable": _r(recoverable),
            "recovered": 0.0,
            "written_off": amount if cat == "contractual_obligation" else 0.0,
            "patient_responsibility": amount if cat == "patient_responsibility" else 0.0,
            "net_paid_before": net_after,
            "state": "written_off"
            if cat == "contractual_obligation"
            else "transferred"
            if cat == "patient_responsibility"
            else "open",
            "action": action if cat == primary else rules.action(cat).otherwise,
            "denied_on": adj.get("payment_date"),
            "resolved_on": None,
            "days_to_resolution": None,
            "item_id": item_id,
            "updated_at": now,
            "source": dict(adj.get("source") or {}),
        }
        ledger.append(entry)
        if recoverable > 0:
            open_entries[entry["entry_id"]] = entry

    for c in categorized:
        where = "claim" if c.line == 0 else f"line {c.line} {c.procedure or ''}".strip()
        desc = ctx.descriptions.get(c.carc)
        ev.append(
            evidence(
                f"{c.group}-{c.carc} {LABELS.get(c.category, c.category)} ({where})",
                record_type="ClaimAdjudication",
                record_key=adj_key,
                value=f"{c.amount:.2f}",
                unit="USD",
                observed_at=adj.get("payment_date"),
                assessment="info",
                ref=f"{c.rule_id}@{c.rule_version}",
                excerpt=(desc[:200] if desc else None),
            )
        )

    work: list[HandoffItemDict] = []
    if item_id is not None and produced is not None and action is not None:
        draft_ids = [d["draft_id"] for d in drafts]
        primary_draft = draft_ids[0] if draft_ids else None
        total_denied = _r(sum(totals[c] for c in denial_cats))
        payer = adj.get("payer_name") or adj.get("payer_id") or "payer"
        if primary is not None:
            title = f"Claim {adj['claim_id']}: ${total_denied:,.2f} denied by {payer} ({LABELS[primary]})"
        else:
            title = f"Claim {adj['claim_id']}: post ${sum(totals.values()):,.2f} of adjustments from {payer}"
        what = (
            f"835 of {adj.get('payment_date') or '?'}: charged ${float(adj.get('total_charge') or 0):,.2f}, paid "
            f"${paid:,.2f}. "
            + "; ".join(f"{LABELS.get(c, c)} ${totals[c]:,.2f}" for c in by_cat)
            + "."
            + (f" Note: {'; '.join(notes)}." if notes else "")
        )
        proposals = {
            "corrected_claim": "Send the corrected claim (837P, frequency 7) shown in the draft.",
            "appeal": "Send the drafted appeal letter with the evidence listed.",
            "review": "Review the denial and decide the follow-up (no draft can be made automatically).",
            "write_off": "Post the contractual adjustment as a write-off.",
            "transfer_to_patient": "Move the patient-responsibility amount to the patient's balance.",
        }
        opts = []
        if primary_draft is not None:
            opts.append(option("approve", "Approve the drafts as they stand", target=primary_draft))
            editable = [ch.path for ch in diff] if action == "corrected_claim" else ["body"]
            opts.append(option("edit", "Change the draft, then approve", target=primary_draft, editable=editable))
            opts.append(option("reject", "Do not send or post anything"))
        else:
            opts.append(option("acknowledge", "Reviewed; follow-up recorded elsewhere"))
            opts.append(option("escalate", "Hand to the billing coordinator"))
        work.append(
            new_item(
                practice_id=pid,
                workflow=WORKFLOW,
                subject=item_subject,
                kind=f"{WORKFLOW}.{action}",
                queue="billing",
                title=title,
                what_happened=what,
                produced_by=produced,
                source=dict(adj.get("source") or {}),  # type: ignore[arg-type]  # a SourceRef record
                now=now,
                priority=priority,
                patient_id=adj.get("patient_id"),
                subject_type="ClaimAdjudication",
                subject_id=adj_id,
                decision_needed="Approve, edit or reject the proposed follow-up." if primary_draft else None,
                proposed_action=proposals[action],
                actions_taken=[f"categorized {len(categorized)} adjustment(s) by rules/denials"],
                evidence=ev,
                options=opts,
                draft_ids=draft_ids,
            )
        )
        audit.append(
            AuditReason(
                "denial_categorized",
                "ClaimAdjudication",
                adj_id,
                f"{produced.get('rule_id')}@{produced.get('rule_version')}: {action}",
                details={c: f"{totals[c]:.2f}" for c in by_cat},
            )
        )
    state.update(adjudications=seen, open=list(open_entries.values()))
    result = StepResult(work_items=tuple(work), drafts=tuple(drafts), audit=tuple(audit))
    return DenialDecision(result, state, tuple(ledger), categorized, diff, action)


def _draft(
    adj: Mapping[str, Any],
    item_id: str | None,
    kind: str,
    content_type: str,
    body: str,
    produced: Any,
    now: int,
) -> DraftDict:
    return {
        "practice_id": adj["practice_id"],
        "draft_id": draft_id_for(WORKFLOW, kind, adj["practice_id"], adj["adjudication_id"]),
        "item_id": item_id or "",
        "workflow": WORKFLOW,
        "kind": kind,
        "content_type": content_type,
        "body": body,
        "document_uri": None,
        "patient_id": adj.get("patient_id"),
        "status": "draft",
        "produced_by": produced,
        "created_at": now,
        "source": dict(adj.get("source") or {}),  # type: ignore[typeddict-item]
    }


def step(ctx: DenialContext, adj: Mapping[str, Any], rules: DenialRules, now: int) -> StepResult:
    """The contract's step signature: ``(context, event, rules, now) -> StepResult``."""
    return decide(ctx, adj, rules, now).result


def descriptions_from_table(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """CARC -> wording, from the ``denials.carc_table`` reference table."""
    return {str(e["code"]): str(e.get("description") or "") for e in entries}
