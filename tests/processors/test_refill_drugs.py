"""Drug identification for refill triage: RxNorm, brand <-> generic, misspellings, controlled by ingredient."""

from __future__ import annotations

import pytest

from practiceflow.processors.workflows.refill.drugs import normalize_name, parse_strength
from practiceflow.processors.workflows.refill.rules import load_refill_rules


@pytest.fixture(scope="module")
def table():
    return load_refill_rules().drugs


@pytest.mark.parametrize(
    ("name", "code", "ingredients", "method"),
    [
        ("lisinopril 10 mg tablet", None, ("lisinopril",), "name"),
        ("Zestril 10mg tabs", None, ("lisinopril",), "name"),
        ("Prinivil", None, ("lisinopril",), "name"),
        ("whatever the portal sent", "29046", ("lisinopril",), "rxnorm"),
        ("lisinoprel 10 mg", None, ("lisinopril",), "fuzzy"),
        ("lisinoprl", None, ("lisinopril",), "fuzzy"),
        ("metformin hydrochloride 500 MG Oral Tablet", None, ("metformin",), "name"),
        ("Glucophage XR 500mg", None, ("metformin",), "name"),
        ("losartan potassium 50 mg", None, ("losartan",), "name"),
        ("Synthroid 50 mcg", None, ("levothyroxine",), "name"),
        ("levothyroxin 50mcg", None, ("levothyroxine",), "fuzzy"),
        ("Coumadin 5 mg", None, ("warfarin",), "name"),
        ("Toprol XL 25 mg", None, ("metoprolol",), "name"),
        ("atorvastatin 20 MG Oral Tablet", None, ("atorvastatin",), "name"),
        ("Lipitor", None, ("atorvastatin",), "name"),
        ("HCTZ 25mg", None, ("hydrochlorothiazide",), "name"),
        ("lisinopril-hydrochlorothiazide 20-12.5 mg", None, ("hydrochlorothiazide", "lisinopril"), "name"),
    ],
)
def test_identifies_generics_brands_codes_and_misspellings(table, name, code, ingredients, method):
    ident = table.identify(name, code)
    assert ident.ingredient_names == ingredients
    assert ident.method == method
    assert not ident.controlled


@pytest.mark.parametrize(
    ("name", "ingredient", "schedule"),
    [
        ("Norco 5-325 mg tablet", "hydrocodone", "CII"),  # hydrocodone combinations: CII since 2014
        ("hydrocodone-acetaminophen 10-325", "hydrocodone", "CII"),
        ("Vicodin", "hydrocodone", "CII"),
        ("Percocet 5/325", "oxycodone", "CII"),
        ("oxycodon 5 mg", "oxycodone", "CII"),  # misspelt: still controlled (fail closed)
        ("tramadol 50 mg", "tramadol", "CIV"),  # CIV since 2014
        ("Ultram 50mg", "tramadol", "CIV"),
        ("Ultracet", "tramadol", "CIV"),
        ("Xanax 0.5 mg", "alprazolam", "CIV"),
        ("lorazapam 1mg", "lorazepam", "CIV"),
        ("Tylenol #3", "codeine", "CII"),
        ("Tylenol with codeine", "codeine", "CII"),
        ("Adderall XR 20 mg", "amphetamine", "CII"),
        ("Lyrica 75 mg", "pregabalin", "CV"),
        ("Suboxone 8-2 mg film", "buprenorphine", "CIII"),
        ("testosterone cypionate 200 mg/ml", "testosterone", "CIII"),
        ("Ambien 5mg", "zolpidem", "CIV"),
    ],
)
def test_controlled_substances_by_ingredient_including_combinations(table, name, ingredient, schedule):
    ident = table.identify(name)
    assert ingredient in [e.ingredient for e in ident.controlled]
    assert {e.schedule for e in ident.controlled if e.ingredient == ingredient} == {schedule}


def test_plain_tylenol_is_not_codeine(table):
    ident = table.identify("Tylenol 500 mg")
    assert ident.ingredient_names == ("acetaminophen",)
    assert not ident.controlled


def test_unknown_words_are_reported_not_guessed(table):
    ident = table.identify("zyxolam forte 10 mg")
    assert not ident.identified
    assert "zyxolam" in ident.unrecognised
    ident = table.identify("lisinopril and foobarine")
    assert ident.ingredient_names == ("lisinopril",)
    assert ident.unrecognised == ("foobarine",)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("10 mg", "10 MG", True),
        ("0.1 mg", "100 mcg", True),
        ("10 mg", "20 mg", False),
        ("5-325 mg", "5/325 mg", True),
        ("50 mcg", "75 mcg", False),
    ],
)
def test_strengths(a, b, same):
    sa, sb = parse_strength(a), parse_strength(b)
    assert sa is not None and sb is not None
    assert sa.same_as(sb) is same


def test_normalize_strips_strength_and_separators():
    assert normalize_name("Lisinopril-HCTZ 20-12.5 MG Oral Tablet") == "lisinopril hctz oral tablet"


def test_every_table_entry_identifies_itself_by_name_and_code(table):
    for e in table.entries:
        assert e.ingredient in table.identify(e.ingredient).ingredient_names
        if e.rxcui:
            assert table.identify(None, e.rxcui).ingredient_names == (e.ingredient,)
        for alias in e.aliases:
            assert e.ingredient in table.identify(alias).ingredient_names, alias
