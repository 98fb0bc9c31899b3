"""The refill triage evaluation set: synthetic patients with histories and their refill requests.

Generated, deterministic per seed, never real data. Each case is a patient context built
with the pure fold (``processors/context/snapshot.apply``) from normalized records —
encounters, lab and vital observations, medication orders — plus one portal refill
request, and the class the PROTOCOLS' DOCUMENTED INTENT gives it (the scenario decides
the label; the triage code is not consulted), so the confusion matrix measures the code
against the intent:

* clean cases of every drug class, the drug written as patients write it: generic with
  and without strength, salt names, brand names, RxNorm codes, misspellings -> routine;
* no visit on record, or only one older than the window -> needs_visit;
* a required lab missing, stale, abnormal (K+ high on an ACE inhibitor, INR out of
  range, TSH far off, eGFR below 45 on metformin, A1c above 9, BP 170/105) or flagged by
  the lab -> needs_review;
* controlled substances (combinations, brands, misspellings) with everything else in
  order -> needs_review;
* a different strength, a discontinued order, no order at all, a combination product, a
  drug no protocol covers, a name nobody can read -> needs_review.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from practiceflow.processors.context.snapshot import PatientContext, apply, empty

PRACTICE: Final = "eval-clinic"
NOW: Final = int(datetime(2026, 11, 27, 15, 0, tzinfo=UTC).timestamp() * 1000)
TODAY: Final = date(2026, 11, 27)

# drug class -> (ingredient, rxcui, brand, strength, product code, labs to record)
DRUGS: Final = {
    "ace_arb": [
        ("lisinopril", "29046", "Zestril", "10 mg", "314076"),
        ("losartan", "52175", "Cozaar", "50 mg", "979492"),
        ("enalapril", "3827", "Vasotec", "10 mg", "858813"),
        ("valsartan", "69749", "Diovan", "80 mg", "349199"),
    ],
    "statin": [
        ("atorvastatin", "83367", "Lipitor", "20 mg", "617312"),
        ("simvastatin", "36567", "Zocor", "40 mg", "314231"),
        ("rosuvastatin", "301542", "Crestor", "10 mg", "859751"),
    ],
    "metformin": [("metformin", "6809", "Glucophage", "500 mg", "861007")],
    "levothyroxine": [("levothyroxine", "10582", "Synthroid", "50 mcg", "966222")],
    "warfarin": [("warfarin", "11289", "Coumadin", "5 mg", "855332")],
    "antihypertensive": [
        ("amlodipine", "17767", "Norvasc", "5 mg", "197361"),
        ("metoprolol", "6918", "Lopressor", "25 mg", "866924"),
        ("hydrochlorothiazide", "5487", "Microzide", "25 mg", "310798"),
    ],
}
CONTROLLED_REQUESTS: Final = [
    "Norco 5-325 mg tablet",
    "hydrocodone-acetaminophen 10-325",
    "tramadol 50 mg",
    "Ultram 50mg",
    "Xanax 0.5 mg",
    "alprazolam 1 mg",
    "oxycodon 5 mg",  # misspelt
    "Percocet 5/325",
    "Tylenol #3",
    "Adderall XR 20 mg",
    "zolpidem 10 mg",
    "Ambien 5mg",
    "lorazapam 1mg",  # misspelt
    "clonazepam 0.5 mg",
    "Lyrica 75 mg",
    "Suboxone 8-2 mg film",
    "testosterone cypionate 200 mg/ml",
    "methylphenidate ER 36 mg",
]
UNREADABLE: Final = ["zyxolam forte 10 mg", "herbal supplement", "the blue pill for my heart", "xq-77 drops"]
NO_PROTOCOL: Final = [("sertraline", "50 mg"), ("omeprazole", "20 mg"), ("gabapentin", "300 mg")]
COMBINATIONS: Final = ["lisinopril-hydrochlorothiazide 20-12.5 mg", "amlodipine/benazepril 5-20 mg"]
PROVIDERS: Final = ["Okafor, Grace", "Lindqvist, Erik", "Mendes, Ana"]

# drug class -> (LOINC, name, unit, range text, in-range value factory, abnormal value, window days)
LABS: Final[dict[str, list[tuple[str, str, str, str, tuple[float, float], float, int]]]] = {
    "ace_arb": [
        ("2823-3", "Potassium", "mmol/L", "3.5-5.1", (3.8, 4.8), 5.8, 365),
        ("2160-0", "Creatinine", "mg/dL", "0.6-1.2", (0.7, 1.1), 2.4, 365),
    ],
    "statin": [("13457-7", "LDL cholesterol (calc)", "mg/dL", "0-99", (60, 95), 190, 365)],
    "metformin": [
        ("4548-4", "Hemoglobin A1c", "%", "4.0-5.6", (6.2, 7.8), 10.4, 183),
        ("62238-1", "eGFR (CKD-EPI)", "mL/min/{1.73_m2}", ">60", (65, 95), 38, 365),
    ],
    "levothyroxine": [("3016-3", "TSH", "m[IU]/L", "0.4-4.5", (0.8, 3.5), 14.2, 365)],
    "warfarin": [("6301-6", "INR", "{INR}", "2.0-3.0", (2.1, 2.9), 4.1, 42)],
    "antihypertensive": [],
}
BP_CLASSES: Final = frozenset({"ace_arb", "antihypertensive"})


@dataclass(frozen=True)
class Case:
    case_id: str
    scenario: str
    expected: str  # routine | needs_review | needs_visit
    context: PatientContext
    request: Mapping[str, Any]


def _src(kind: str, n: int) -> dict[str, Any]:
    return {"feed": "hl7v2", "message_id": f"eval-{kind}-{n}", "raw_topic": None, "message_type": None, "sent_at": None}


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


class _Builder:
    def __init__(self, patient_id: str) -> None:
        self.ctx = empty(PRACTICE, patient_id)
        self.pid = patient_id
        self.n = 0

    def add(self, record_type: str, rec: dict[str, Any]) -> None:
        self.n += 1
        rec.setdefault("practice_id", PRACTICE)
        rec.setdefault("patient_id", self.pid)
        rec.setdefault("source", _src(record_type, self.n))
        self.ctx = apply(self.ctx, record_type, rec)

    def visit(self, days_ago: int, provider: str, status: str = "finished") -> None:
        when = f"{_day(days_ago)}T10:00:00"
        self.add(
            "Encounter",
            {
                "encounter_id": f"V{self.n}",
                "status": status,
                "encounter_class": "outpatient",
                "event": "A03",
                "attending_provider": provider,
                "admit_at": when,
                "discharge_at": f"{_day(days_ago)}T10:30:00",
            },
        )

    def obs(
        self, loinc: str, name: str, value: float, unit: str, rng: str | None, days_ago: int, flags: list[str]
    ) -> None:
        self.add(
            "Observation",
            {
                "observation_id": f"O{self.n}-{loinc}",
                "order_id": None,
                "code": {"system": "LN", "code": loinc, "display": name},
                "value_type": "NM",
                "value": f"{value:g}",
                "value_numeric": float(value),
                "units": unit,
                "reference_range": rng,
                "abnormal_flags": flags,
                "status": "F",
                "effective_at": f"{_day(days_ago)}T08:00:00",
            },
        )

    def order(self, display: str, code: str | None, status: str = "NW", written_days_ago: int = 200) -> None:
        self.add(
            "MedicationOrder",
            {
                "order_id": f"RX{self.n}",
                "medication": {"system": "RXNORM", "code": code, "display": display},
                "dose": "1",
                "dose_units": "TAB",
                "route": "Oral",
                "frequency": "QD",
                "quantity": "90 TAB",
                "refills": 0,
                "prescriber": PROVIDERS[self.n % len(PROVIDERS)],
                "status": status,
                "written_at": _day(written_days_ago),
                "instructions": "Take 1 tablet by mouth daily",
            },
        )


def _typo(word: str, r: random.Random) -> str:
    """One realistic slip: a dropped letter, two swapped letters or a doubled letter."""
    i = r.randrange(2, len(word) - 2)
    kind = r.choice(("drop", "swap", "double"))
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _in_range(r: random.Random, lo_hi: tuple[float, float]) -> float:
    return round(r.uniform(*lo_hi), 1)


def _history(b: _Builder, drug_class: str, r: random.Random, *, skip_lab: str | None = None) -> None:
    """A history that meets every condition of the class's protocol."""
    b.visit(r.randint(20, 300), r.choice(PROVIDERS))
    for loinc, name, unit, rng, good, _bad, window in LABS[drug_class]:
        if loinc == skip_lab:
            continue
        b.obs(loinc, name, _in_range(r, good), unit, rng, r.randint(3, window - 5), ["N"])
    if drug_class in BP_CLASSES:
        days = r.randint(3, 300)
        b.obs("8480-6", "Systolic blood pressure", r.randint(112, 138), "mm[Hg]", None, days, [])
        b.obs("8462-4", "Diastolic blood pressure", r.randint(68, 86), "mm[Hg]", None, days, [])


def _request(n: int, patient_id: str, name: str, code: str | None = None) -> dict[str, Any]:
    return {
        "practice_id": PRACTICE,
        "request_id": f"rfl_eval_{n:04d}",
        "patient_id": patient_id,
        "medication": name,
        "medication_code": code,
        "pharmacy": "Main St Pharmacy",
        "last_filled": _day(80),
        "note": None,
        "submitted_at": NOW,
        "source": {
            "feed": "portal",
            "message_id": f"refill.requested/rfl_eval_{n:04d}",
            "raw_topic": None,
            "message_type": "refill.requested",
            "sent_at": None,
        },
    }


def _written(r: random.Random, ingredient: str, brand: str, strength: str, rxcui: str) -> tuple[str, str | None, str]:
    """How the patient wrote the drug: (name, code, style)."""
    style = r.choice(("generic", "generic_no_strength", "brand", "rxnorm", "misspelt", "salt", "generic"))
    compact = strength.replace(" ", "")
    if style == "generic":
        return f"{ingredient} {strength} tablet", None, style
    if style == "generic_no_strength":
        return ingredient.capitalize(), None, style
    if style == "brand":
        return f"{brand} {compact} tabs", None, style
    if style == "rxnorm":
        return f"{ingredient} {strength}", rxcui, style
    if style == "salt":
        salt = {"metformin": "hydrochloride", "losartan": "potassium", "levothyroxine": "sodium"}.get(ingredient)
        if salt:
            return f"{ingredient} {salt} {strength} oral tablet", None, style
        return f"{ingredient.upper()} {compact}", None, style
    return f"{_typo(ingredient, r)} {strength}", None, style


def build_evalset(seed: int = 9, n: int = 240) -> list[Case]:
    """``n`` cases (at least 200 by default), deterministic per seed."""
    r = random.Random(seed)
    cases: list[Case] = []
    classes = sorted(DRUGS)
    scenarios = [
        ("routine", 30),
        ("no_visit", 6),
        ("visit_too_old", 6),
        ("lab_missing", 7),
        ("lab_stale", 6),
        ("lab_abnormal", 10),
        ("lab_flagged", 4),
        ("bp_abnormal", 4),
        ("metformin_egfr_below_45", 3),
        ("controlled", 12),
        ("dose_mismatch", 7),
        ("discontinued", 6),
        ("no_order", 5),
        ("combination", 2),
        ("no_protocol", 3),
        ("unreadable", 3),
        ("misspelt_twice", 6),
        ("look_alike", 4),
        ("product_code_only", 3),
    ]
    bag = [s for s, w in scenarios for _ in range(w)]
    for i in range(n):
        scenario = bag[i % len(bag)] if i < len(bag) else r.choice(bag)
        pid = f"EV{i:05d}"
        b = _Builder(pid)
        drug_class = r.choice(classes)
        if scenario in ("lab_missing", "lab_stale", "lab_abnormal", "lab_flagged"):
            drug_class = r.choice([c for c in classes if LABS[c]])
        if scenario == "bp_abnormal":
            drug_class = r.choice(sorted(BP_CLASSES))
        if scenario == "metformin_egfr_below_45":
            drug_class = "metformin"
        ingredient, rxcui, brand, strength, product = r.choice(DRUGS[drug_class])
        order_name = f"{ingredient} {strength.upper()} Oral Tablet"
        name, code, style = _written(r, ingredient, brand, strength, rxcui)
        expected = "needs_review"
        if scenario == "routine":
            _history(b, drug_class, r)
            b.order(order_name, product)
            expected = "routine"
        elif scenario in ("no_visit", "visit_too_old"):
            _history(b, drug_class, r)
            b.ctx = _drop_encounters(b.ctx)
            if scenario == "visit_too_old":
                b.visit(r.randint(400, 900), r.choice(PROVIDERS))
                b.visit(r.randint(10, 60), r.choice(PROVIDERS), status="cancelled")
            b.order(order_name, product)
            expected = "needs_visit"
        elif scenario in ("lab_missing", "lab_stale", "lab_abnormal", "lab_flagged", "metformin_egfr_below_45"):
            labs = LABS[drug_class]
            pick = labs[1] if scenario == "metformin_egfr_below_45" else r.choice(labs)
            loinc, lname, unit, rng, good, bad, window = pick
            _history(b, drug_class, r, skip_lab=loinc)
            if scenario == "lab_stale":
                b.obs(loinc, lname, _in_range(r, good), unit, rng, window + r.randint(20, 200), ["N"])
            elif scenario == "lab_abnormal":
                b.obs(loinc, lname, bad, unit, rng, r.randint(3, window - 5), ["H" if bad > good[1] else "L"])
            elif scenario == "lab_flagged":
                # inside the protocol's numbers but flagged by the lab (only labs whose flags count)
                if drug_class == "metformin":
                    loinc, lname, unit, rng, good, bad, window = labs[0]
                    b.obs(loinc, lname, 9.6, unit, rng, 20, ["H"])  # above 9 %: over the protocol's limit
                else:
                    b.obs(loinc, lname, _in_range(r, good), unit, rng, r.randint(3, window - 5), ["A"])
            elif scenario == "metformin_egfr_below_45":
                b.obs(loinc, lname, r.choice([38.0, 41.0, 44.0]), unit, rng, 30, ["L"])
            b.order(order_name, product)
        elif scenario == "bp_abnormal":
            b.visit(r.randint(20, 300), r.choice(PROVIDERS))
            for loinc, lname, unit, rng, good, _bad, window in LABS[drug_class]:
                b.obs(loinc, lname, _in_range(r, good), unit, rng, r.randint(3, window - 5), ["N"])
            b.obs("8480-6", "Systolic blood pressure", r.randint(165, 190), "mm[Hg]", None, 15, [])
            b.obs("8462-4", "Diastolic blood pressure", r.randint(100, 112), "mm[Hg]", None, 15, [])
            b.order(order_name, product)
        elif scenario == "controlled":
            name, code, style = CONTROLLED_REQUESTS[i % len(CONTROLLED_REQUESTS)], None, "controlled"
            b.visit(r.randint(10, 60), r.choice(PROVIDERS))
            b.order(name, None)
        elif scenario == "dose_mismatch":
            _history(b, drug_class, r)
            other = {"10 mg": "20 mg", "50 mg": "100 mg", "80 mg": "160 mg", "20 mg": "40 mg", "40 mg": "20 mg"}.get(
                strength, "2.5 mg"
            )
            if strength == "50 mcg":
                other = "75 mcg"
            b.order(f"{ingredient} {other.upper()} Oral Tablet", None)
            name, code, style = f"{(brand if r.random() < 0.3 else ingredient)} {strength}", None, "dose_mismatch"
        elif scenario == "discontinued":
            _history(b, drug_class, r)
            b.order(order_name, product, status=r.choice(["DC", "CA", "stopped"]))
        elif scenario == "no_order":
            _history(b, drug_class, r)
        elif scenario == "combination":
            _history(b, "ace_arb", r)
            name, code, style = COMBINATIONS[i % len(COMBINATIONS)], None, "combination"
            b.order(name, None)
        elif scenario == "no_protocol":
            ing, st = NO_PROTOCOL[i % len(NO_PROTOCOL)]
            b.visit(r.randint(10, 200), r.choice(PROVIDERS))
            b.order(f"{ing} {st.upper()} Oral Tablet", None)
            name, code, style = f"{ing} {st}", None, "no_protocol"
        elif scenario == "misspelt_twice":
            # two slips in one name: the documented intent still identifies it (routine);
            # the fuzzy threshold may not, which is a safe disagreement (needs_review)
            _history(b, drug_class, r)
            b.order(order_name, product)
            name, code, style = f"{_typo(_typo(ingredient, r), r)} {strength}", None, "misspelt_twice"
            expected = "routine"
        elif scenario == "look_alike":
            # the patient names another drug of the same class than the one on the order
            others = [d for d in DRUGS[drug_class] if d[0] != ingredient] or [DRUGS["ace_arb"][0]]
            look_alike = r.choice(others)
            _history(b, drug_class, r)
            b.order(order_name, product)
            name, code, style = f"{look_alike[0]} {look_alike[3]}", None, "look_alike"
        elif scenario == "product_code_only":
            # the request carries the order's RxNorm product code and no usable name
            _history(b, drug_class, r)
            b.order(order_name, product)
            name, code, style = "refill please", product, "product_code_only"
            expected = "routine"
        elif scenario == "unreadable":
            _history(b, drug_class, r)
            b.order(order_name, product)
            name, code, style = UNREADABLE[i % len(UNREADABLE)], None, "unreadable"
        cases.append(Case(f"{i:04d}:{scenario}:{style}", scenario, expected, b.ctx, _request(i, pid, name, code)))
    return cases


def _drop_encounters(ctx: PatientContext) -> PatientContext:
    from dataclasses import replace
    from types import MappingProxyType

    return replace(ctx, encounters=MappingProxyType({}))
