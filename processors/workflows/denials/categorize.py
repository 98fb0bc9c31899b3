"""Every adjustment of an 835 claim, flattened and categorized by the denial rules.

An 835 claim (``ClaimAdjudication``) carries adjustments at two levels: claim-level CAS
(after CLP) and service-line CAS (after SVC). Remark codes (RARC) sit beside them: MOA/MIA
at claim level, LQ*HE per line. A line's adjustment is read with the line's RARCs and the
claim's (a claim-level remark explains every line); a claim-level adjustment with the
claim's. Each adjustment becomes one :class:`Categorized` naming the rule (id + version)
that decided its category, so a person can see why.

Hot path: a tuple per adjustment, one dict lookup per CARC (``DenialRules.categorize``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from practiceflow.processors.workflows.denials.rules import DenialRules


class Categorized(NamedTuple):
    """One adjustment with its category and the rule behind it."""

    line: int  # 0 = claim level, n = the n-th service line (1-based)
    procedure: str | None  # the line's procedure code (None at claim level)
    group: str
    carc: str
    amount: float
    rarcs: tuple[str, ...]
    category: str
    rule_id: str
    rule_version: str
    core_scenario: int | None


def categorize_adjudication(adj: Mapping[str, Any], rules: DenialRules) -> list[Categorized]:
    """All adjustments of one ``ClaimAdjudication`` (claim level first, then lines in order)."""
    out: list[Categorized] = []
    claim_rarcs: tuple[str, ...] = tuple(adj.get("remark_codes") or ())
    decide = rules.categorize
    append = out.append
    for a in adj.get("adjustments") or ():
        r = decide(a["group"], a["reason"], claim_rarcs)
        append(
            Categorized(
                0, None, a["group"], a["reason"], a["amount"], claim_rarcs, r.category, r.id, r.version, r.core_scenario
            )
        )
    for n, ln in enumerate(adj.get("lines") or (), 1):
        adjs: Sequence[Mapping[str, Any]] = ln.get("adjustments") or ()
        if not adjs:
            continue
        line_rarcs = tuple(ln.get("remark_codes") or ()) + claim_rarcs
        code = (ln.get("procedure") or {}).get("code")
        for a in adjs:
            r = decide(a["group"], a["reason"], line_rarcs)
            append(
                Categorized(
                    n,
                    code,
                    a["group"],
                    a["reason"],
                    a["amount"],
                    line_rarcs,
                    r.category,
                    r.id,
                    r.version,
                    r.core_scenario,
                )
            )
    return out


def totals_by_category(items: Sequence[Categorized]) -> dict[str, float]:
    """Adjusted amount per category (rounded to cents), in first-seen order."""
    out: dict[str, float] = {}
    for c in items:
        out[c.category] = out.get(c.category, 0.0) + c.amount
    return {k: round(v, 2) for k, v in out.items()}
