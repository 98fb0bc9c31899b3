"""The refill evaluation set and its command: >= 200 labelled requests, no unsafe routine."""

from __future__ import annotations

import json
from collections import Counter

from practiceflow.processors.workflows.refill.evalset import build_evalset
from practiceflow.processors.workflows.refill.evaluate import evaluate, main
from practiceflow.processors.workflows.refill.rules import load_refill_rules


def test_evalset_covers_the_issue_cases_deterministically():
    cases = build_evalset()
    assert len(cases) >= 200
    assert [c.request for c in cases] == [c.request for c in build_evalset()]  # same seed, same set
    scenarios = Counter(c.scenario for c in cases)
    for s in ("routine", "controlled", "dose_mismatch", "discontinued", "no_visit", "lab_abnormal", "misspelt_twice"):
        assert scenarios[s] > 0, s
    styles = {c.case_id.rsplit(":", 1)[1] for c in cases}
    assert {"brand", "misspelt", "rxnorm", "generic_no_strength", "salt"} <= styles
    assert {c.expected for c in cases} == {"routine", "needs_review", "needs_visit"}


def test_evaluation_has_no_unsafe_routine_and_reports_the_matrix():
    res = evaluate(load_refill_rules())
    assert res["cases"] >= 200 and res["unsafe_routine"] == 0
    assert sum(sum(row.values()) for row in res["matrix"].values()) == res["cases"]
    assert 0 < res["share_routine"] < 1
    assert all(d["got"] != "routine" for d in res["disagreements"])


def test_command_prints_json_and_exits_zero(capsys):
    assert main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cases"] == 240 and "matrix" in out
