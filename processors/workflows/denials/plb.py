"""835 provider-level adjustments (PLB) in the denial ledger, and the ones a person reviews.

A PLB moves money outside any one claim: an overpayment recovered (WO), a forwarding
balance (FB), interest paid (L6)... Each ``ProviderAdjustment`` becomes one ledger entry
(category ``provider_adjustment``, so ClickHouse can sum them beside the claim categories);
the reasons ``rules/denials/plb.yaml`` marks ``review`` also get a work item in the billing
queue - money taken back deserves a look at which claim it came from (PLB03-2).
Pure, like the rest of the workflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from practiceflow.processors.workflows.denials.drafts import WORKFLOW
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option

CATEGORY = "provider_adjustment"


def plb_step(
    plb: Mapping[str, Any], reasons: Mapping[str, Mapping[str, Any]], table_version: str, now: int
) -> tuple[StepResult, dict[str, Any]]:
    """(the work item, if the reason needs review; the ledger entry) for one ``ProviderAdjustment``."""
    pid = plb["practice_id"]
    reason = str(plb["reason"])
    known = reasons.get(reason)
    meaning = str(known["meaning"]) if known else "reason code not in the PLB table"
    review = bool(known["review"]) if known else True
    amount = round(float(plb["amount"]), 2)
    adj_id = plb["adjustment_id"]
    ref = plb.get("reference")
    entry = {
        "practice_id": pid,
        "entry_id": hashlib.sha256(f"ledger\x1f{adj_id}\x1f{CATEGORY}".encode()).hexdigest()[:32],
        "claim_id": ref or "-",
        "adjudication_id": adj_id,
        "payer_id": None,
        "payer_name": None,
        "category": CATEGORY,
        "rule_ids": [f"denials.plb_reasons@{table_version}"],
        "reason_codes": [f"PLB-{reason}"],
        "adjusted": amount,
        "denied": 0.0,
        "recoverable": 0.0,
        "recovered": 0.0,
        "written_off": 0.0,
        "patient_responsibility": 0.0,
        "net_paid_before": 0.0,
        "state": "open" if review else "closed",
        "action": "review" if review else None,
        "denied_on": plb.get("fiscal_period_end"),
        "resolved_on": None,
        "days_to_resolution": None,
        "item_id": None,
        "updated_at": now,
        "source": dict(plb.get("source") or {}),
    }
    if not review:
        return StepResult(), entry
    src = dict(plb.get("source") or {})
    item = new_item(
        practice_id=pid,
        workflow=WORKFLOW,
        subject=("plb", pid, adj_id),
        kind=f"{WORKFLOW}.provider_adjustment",
        queue="billing",
        title=f"Payer adjustment {reason} ({meaning}): ${amount:,.2f}",
        what_happened=(
            f"An 835 carries a provider-level adjustment {reason} ({meaning}) of ${amount:,.2f}"
            + (f" referring to {ref}" if ref else "")
            + f" for provider {plb.get('provider_id')}, fiscal period ending {plb.get('fiscal_period_end') or '?'}."
        ),
        produced_by=by_rule("denials.plb_reasons", table_version, "X12 005010 element 426"),
        source=src,  # type: ignore[arg-type]  # a SourceRef record
        now=now,
        priority="high" if amount > 0 else "routine",
        subject_type="ProviderAdjustment",
        subject_id=adj_id,
        decision_needed="Match the adjustment to its claim or overpayment notice and post it.",
        proposed_action="Review the adjustment and post it against the claim it names.",
        evidence=[
            evidence(
                f"PLB {reason}: {meaning}",
                record_type="ProviderAdjustment",
                record_key=f"{pid}/-/{adj_id}",
                value=f"{amount:.2f}",
                unit="USD",
                ref=ref,
                assessment="info",
            )
        ],
        options=[option("acknowledge", "Posted / matched"), option("escalate", "Hand to the billing coordinator")],
    )
    entry["item_id"] = item["item_id"]
    audit = AuditReason(
        "denial_plb_review", "ProviderAdjustment", adj_id, f"denials.plb_reasons@{table_version}: {reason}"
    )
    return StepResult(work_items=(item,), audit=(audit,)), entry
