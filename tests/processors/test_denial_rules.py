"""Denial categories over every CARC in the code table and every adjustment in the 835 samples.

Table-driven: the CARC list comes from ``<shared>/data/codes`` (the CMS Blue Button
CodeSystem, 407 codes); the 835s from ``<shared>/data/x12``. Every CARC must map to a
category by a base rule of its own (``rules/denials/carc.yaml``) - "needs a person"
included, but only by an explicit rule, never by falling through to
``denials.carc.unknown`` - under every group code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from practiceflow.processors.base import Rejected
from practiceflow.processors.rules import load_table
from practiceflow.processors.workflows.denials.categorize import categorize_adjudication
from practiceflow.processors.workflows.denials.rules import (
    CATEGORIES,
    GROUP_CODES,
    UNKNOWN_RULE,
    load_denial_rules,
)
from practiceflow.processors.x12.normalize import normalize_x12
from tests.fixtures import require_corpus, shared_data_dir
from tests.processors.corpus_outcomes import X12

RULES = load_denial_rules()
DATA = shared_data_dir()
CARC_FILE = DATA / "codes" / "carc_claim_adjustment_reason_codes_cms_bfd.fsh" if DATA else None


def _carcs() -> list[str]:
    if CARC_FILE is None or not CARC_FILE.is_file():
        return []
    return [m.group(1) for m in re.finditer(r'^\* #(\S+) "', CARC_FILE.read_text(encoding="utf-8"), re.M)]


CARCS = _carcs()


def _835s() -> list[Path]:
    if DATA is None:
        return []
    x12 = DATA / "x12"
    return sorted(p for p in [*x12.glob("*.x12"), *(x12 / "malformed").glob("*.x12")] if p.name.startswith("835"))


@pytest.mark.corpus
def test_the_code_table_is_there():
    require_corpus("codes")
    assert len(CARCS) == 407  # SOURCES.md: 1-308, A0-A8, B1-B23, D1-D23, P1-P32, W1-W9, Y1-Y3


@pytest.mark.corpus
@pytest.mark.parametrize("carc", CARCS)
def test_every_carc_maps_by_an_explicit_rule_under_every_group(carc: str):
    base = [r for r in RULES.category_rules if carc in r.carcs and not r.groups and not r.rarcs]
    assert len(base) == 1, f"CARC {carc}: {len(base)} base rules ({[r.id for r in base]}), expected exactly one"
    for group in sorted(GROUP_CODES):
        rule = RULES.categorize(group, carc, ())
        assert rule is not UNKNOWN_RULE
        assert rule.category in CATEGORIES and rule.id and rule.version and rule.source


@pytest.mark.corpus
def test_the_shipped_carc_table_is_the_code_table():
    table = load_table("denials", "denials.carc_table")
    assert [e["code"] for e in table.entries] == CARCS
    assert "CC0" in str(table.source)


def test_every_category_has_an_action_and_a_base_rule():
    for cat in CATEGORIES:
        assert RULES.action(cat).id == f"denials.action.{cat}"
        assert any(r.category == cat for r in RULES.category_rules if not r.groups and not r.rarcs)


@pytest.mark.parametrize(
    ("group", "carc", "rarcs", "category", "rule_id"),
    [
        ("CO", "45", (), "contractual_obligation", "denials.carc.contractual_obligation"),
        ("PR", "1", (), "patient_responsibility", "denials.carc.patient_responsibility"),
        ("CO", "1", (), "contractual_obligation", "denials.group.co_cost_share"),  # CO: the provider absorbs it
        ("CO", "96", (), "eligibility_coverage", "denials.carc.eligibility_coverage"),
        ("PR", "96", (), "patient_responsibility", "denials.group.pr_noncovered"),  # PR: billed to the patient
        ("CO", "197", (), "authorization_missing", "denials.carc.authorization_missing"),
        ("CO", "29", (), "timely_filing", "denials.carc.timely_filing"),
        ("PR", "29", (), "timely_filing", "denials.carc.timely_filing"),
        ("CO", "16", (), "missing_information", "denials.carc.missing_information"),
        ("CO", "16", ("M51",), "coding_modifier", "denials.rarc.invalid_codes"),
        ("CO", "16", ("MA04",), "coordination_of_benefits", "denials.rarc.primary_payer_missing"),
        ("CO", "A1", (), "needs_person", "denials.carc.needs_person"),
        ("CO", "A1", ("N30",), "eligibility_coverage", "denials.rarc.not_eligible_for_service"),
        ("CO", "A1", ("N54",), "authorization_missing", "denials.rarc.not_as_authorized"),
        ("CO", "97", ("N19",), "bundling", "denials.rarc.incidental"),
        ("OA", "23", (), "coordination_of_benefits", "denials.carc.coordination_of_benefits"),
        ("CO", "18", (), "duplicate", "denials.carc.duplicate"),
        ("CO", "50", (), "medical_necessity", "denials.carc.medical_necessity"),
        ("CO", "4", (), "coding_modifier", "denials.carc.coding_modifier"),
        ("CO", "97", (), "bundling", "denials.carc.bundling"),
        ("CO", "Z99", (), "needs_person", "denials.carc.unknown"),  # newer than the table: a person decides
    ],
)
def test_precedence_group_and_rarc_rules(group, carc, rarcs, category, rule_id):
    rule = RULES.categorize(group, carc, rarcs)
    assert (rule.category, rule.id) == (category, rule_id)


def test_a_practice_rule_replaces_a_shipped_one(tmp_path: Path):
    folder = tmp_path / "denials"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "rules:\n"
        "  - {id: denials.carc.duplicate, version: practice-1, source: our billing manager, "
        "category: needs_person, carcs: [18, B13]}\n",
        encoding="utf-8",
    )
    mine = load_denial_rules(tmp_path)
    rule = mine.categorize("CO", "18", ())
    assert (rule.category, rule.version) == ("needs_person", "practice-1")
    assert RULES.categorize("CO", "18", ()).category == "duplicate"


FILES_835 = _835s()


@pytest.mark.corpus
@pytest.mark.parametrize("path", FILES_835, ids=lambda p: p.name)
def test_every_835_adjustment_is_categorized_by_a_named_rule(path: Path):
    try:
        result = normalize_x12(path.read_bytes(), "corpus", 0)
    except Rejected as exc:
        # nothing to categorize: the rejection must be the one pinned in corpus_outcomes
        assert (
            X12[path.relative_to(path.parents[1] if path.parent.name == "malformed" else path.parent).as_posix()]
            == f"rejected:{exc.reason_code}"
        )
        return
    n = 0
    for rec in result.records:
        if rec.record_type != "ClaimAdjudication":
            continue
        adj = rec.value
        expected = len(adj["adjustments"]) + sum(len(ln["adjustments"]) for ln in adj["lines"])
        got = categorize_adjudication(adj, RULES)
        assert len(got) == expected
        for c in got:
            assert c.category in CATEGORIES and c.rule_id and c.rule_version
            assert c.rule_id != UNKNOWN_RULE.id, f"{c.group}-{c.carc} fell through"
        n += len(got)
    assert n >= 0


# what each 835 sample shows, by file name: the categories of its adjustments
EXPECTED = {
    "835_denied_pr29_timely_filing_and_paid_pr3_co45.x12": {
        "timely_filing",
        "patient_responsibility",
        "contractual_obligation",
    },
    "835_emedny_denied_co29_co251_lq_he_n206.x12": {"timely_filing", "missing_information"},
    "835_tr3_cob_contractual_oa23_oa94_negative.x12": {"coordination_of_benefits", "contractual_obligation"},
    "835_tr3_managed_care_co_a2_pr1_co45.x12": {"contractual_obligation", "patient_responsibility"},
    "835_uhc_style_dme_co45_pr1_pr2_multi_reason_cas.x12": {"contractual_obligation", "patient_responsibility"},
}


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_835_samples_give_their_categories(name: str):
    require_corpus("x12")
    path = DATA / "x12" / name  # type: ignore[operator]
    result = normalize_x12(path.read_bytes(), "corpus", 0)
    cats = {
        c.category
        for rec in result.records
        if rec.record_type == "ClaimAdjudication"
        for c in categorize_adjudication(rec.value, RULES)
    }
    assert EXPECTED[name] <= cats, cats
