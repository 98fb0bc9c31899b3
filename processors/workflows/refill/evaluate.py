"""``practiceflow eval refills``: run the evaluation set, print the confusion matrix.

Rows are the class the protocols' documented intent gives a case (``evalset.py``),
columns what the step decided. The number that must stay 0 is ``unsafe``: a request
triaged routine that the intent says is not. Exit status 1 when it is not 0, so CI can
run the evaluation as a check. ``--json`` prints the same numbers as JSON (recorded in
``bench/refill_results.md``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evalset import NOW, build_evalset
from .rules import RefillRules, load_refill_rules
from .step import refill_step
from .triage import CLASSES, ROUTINE


def evaluate(rules: RefillRules, seed: int = 9, n: int = 240) -> dict[str, Any]:
    """Run the step over the set; the confusion matrix, shares and disagreements."""
    cases = build_evalset(seed, n)
    matrix: Counter[tuple[str, str]] = Counter()
    by_scenario: dict[str, Counter[str]] = {}
    disagreements: list[dict[str, str]] = []
    for c in cases:
        result = refill_step(c.context, c.request, rules, NOW)
        got = str(result.work_items[0]["kind"]).split(".", 1)[1]
        matrix[(c.expected, got)] += 1
        by_scenario.setdefault(c.scenario, Counter())[got] += 1
        if got != c.expected:
            disagreements.append(
                {
                    "case": c.case_id,
                    "medication": str(c.request["medication"]),
                    "expected": c.expected,
                    "got": got,
                    "why": result.audit[0].details.get("reasons", ""),
                }
            )
    total = len(cases)
    correct = sum(v for (e, g), v in matrix.items() if e == g)
    routine = sum(v for (_e, g), v in matrix.items() if g == ROUTINE)
    unsafe = sum(v for (e, g), v in matrix.items() if g == ROUTINE and e != ROUTINE)
    expected_routine = sum(v for (e, _g), v in matrix.items() if e == ROUTINE)
    return {
        "cases": total,
        "seed": seed,
        "matrix": {e: {g: matrix[(e, g)] for g in CLASSES} for e in CLASSES},
        "accuracy": round(correct / total, 4) if total else 0.0,
        "share_routine": round(routine / total, 4) if total else 0.0,
        "share_routine_expected": round(expected_routine / total, 4) if total else 0.0,
        "routine_recall": round(matrix[(ROUTINE, ROUTINE)] / expected_routine, 4) if expected_routine else 0.0,
        "unsafe_routine": unsafe,
        "by_scenario": {s: dict(c) for s, c in sorted(by_scenario.items())},
        "disagreements": disagreements,
    }


def render(res: dict[str, Any]) -> str:
    w = max(len(c) for c in CLASSES) + 2
    lines = [
        f"refill triage evaluation: {res['cases']} requests (seed {res['seed']})",
        "",
        "expected \\ triaged".ljust(w + 8) + "".join(c.rjust(w) for c in CLASSES),
    ]
    for e in CLASSES:
        lines.append(e.ljust(w + 8) + "".join(str(res["matrix"][e][g]).rjust(w) for g in CLASSES))
    lines += [
        "",
        f"accuracy {res['accuracy']:.1%}; share triaged routine {res['share_routine']:.1%} "
        f"(intent: {res['share_routine_expected']:.1%}; routine recall {res['routine_recall']:.1%})",
        f"unsafe (triaged routine, intent not routine): {res['unsafe_routine']}",
        "",
        "by scenario (triaged class: count):",
    ]
    for s, c in res["by_scenario"].items():
        lines.append(f"  {s:26s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if res["disagreements"]:
        lines += ["", "disagreements:"]
        for d in res["disagreements"]:
            lines.append(
                f"  {d['case']:40s} {d['medication']!r}: expected {d['expected']}, got {d['got']} ({d['why']})"
            )
    return "\n".join(lines)


def main(argv: Sequence[str], cfg: Any = None) -> int:
    """Entry point of ``practiceflow eval refills [--seed N] [--cases N] [--json]``."""
    p = argparse.ArgumentParser(prog="practiceflow eval refills", description=__doc__)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--cases", type=int, default=240)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args(list(argv))
    rules_dir = getattr(cfg, "rules_dir", None)
    rules = load_refill_rules(Path(rules_dir) if rules_dir else None)
    res = evaluate(rules, args.seed, args.cases)
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 1 if res["unsafe_routine"] else 0
