"""Which drug a refill request names: RxNorm ingredient, brand <-> generic, misspellings.

A request names its drug the way a patient or a pharmacy writes it: ``"Zestril 10mg tabs"``,
``"lisinoprel 10 mg"``, ``"hydrocodone-acetaminophen 5-325"``, sometimes with an RxNorm
code. Triage needs the INGREDIENTS (protocols and DEA schedules are per ingredient) and the
strength (a request must match the active order's strength). The order of evidence:

1. an RxNorm code that is an ingredient in the tables (``rules/refill/drugs.yaml``,
   ``controlled.yaml``) names it outright; a product code the table does not hold falls
   through to the name (triage also matches a code equal to an order's code);
2. the name, lowercased, strengths and dose forms stripped, read as words: every known
   alias (generic, salt, brand, multi-word brand) found exactly, longest first;
3. words left over are matched with rapidfuzz against the aliases (misspellings):
   score >= :data:`FUZZY_MIN` identifies; for CONTROLLED ingredients a lower score
   (:data:`CONTROLLED_SUSPECT_MIN`) already counts, because a controlled substance must
   never pass as routine through a typo (fail closed);
4. a word that is neither a known alias nor a dose-form/salt/filler word stays
   ``unrecognised``: triage does not call such a request routine (it might be a second
   ingredient the table does not know).

The table is built once per rule set and identification results are memoised per
(name, code): a practice sees the same few hundred drug strings over and over, and the
triage speed target (>= 20,000 decisions/s per core) leaves no room for fuzzy matching
on every request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from rapidfuzz import fuzz, process

FUZZY_MIN: Final = 85.0  # identify a non-controlled ingredient from a misspelling
CONTROLLED_SUSPECT_MIN: Final = 80.0  # a word this close to a controlled ingredient counts as controlled
MIN_FUZZY_WORD: Final = 4  # shorter words are not fuzzy-matched (too many accidental hits)

# words that say nothing about WHICH drug: dose forms, routes, release, salts, fillers
_FILLER_WORDS = """
tablet tablets tab tabs tabl caplet caplets capsule capsules cap caps softgel softgels pill
pills oral po by mouth solution suspension liquid syrup elixir injection injectable inj pen
patch patches cream ointment gel spray inhaler nasal topical transdermal sublingual film
chewable odt er xr xl sr cr la dr ec ir hr extended delayed release sustained controlled
immediate modified hcl hydrochloride sodium potassium calcium magnesium besylate maleate
tartrate succinate bitartrate sulfate phosphate citrate acetate mesylate fumarate medoxomil mg
mcg g gm ml meq unit units iu mmol percent day daily qd bid tid qid prn and with w plus combo
combination generic brand name refill refills please rx med meds medication medicine
prescription my the a an of for to in on per each once twice take takes taking mg/ml mcg/ml
mg/5ml usp
"""
FILLER: Final = frozenset(_FILLER_WORDS.split())
_SEPARATORS = re.compile(r"[/,+&;:()\[\]{}*\"']|\s-\s|-(?=[a-z])|(?<=[a-z])-")
_STRENGTH = re.compile(
    r"(\d+(?:\.\d+)?)(?:\s*[-/]\s*(\d+(?:\.\d+)?))?\s*(mg|mcg|µg|ug|g|gm|meq|units?|iu|%)\b(?:\s*/\s*(\d*\.?\d*)\s*(ml))?",
    re.IGNORECASE,
)
_NUMBER_WORD = re.compile(r"^[\d.#%]+[a-z]*$")
_WORD = re.compile(r"[a-z0-9#.%µ]+")
_TO_MG: Final = {"mg": 1.0, "mcg": 0.001, "µg": 0.001, "ug": 0.001, "g": 1000.0, "gm": 1000.0}


@dataclass(frozen=True, slots=True)
class DrugEntry:
    """One ingredient of the drug table or the controlled list."""

    ingredient: str
    rxcui: str | None
    drug_class: str | None  # protocol class (protocols.yaml drug_class); None for controlled-only entries
    schedule: str | None  # DEA schedule CII..CV when controlled
    citation: str | None
    aliases: tuple[str, ...]  # normalized generic, salt and brand spellings


@dataclass(frozen=True, slots=True)
class Strength:
    """A strength as written (``10 mg``) and in milligrams where the unit is a mass."""

    text: str
    mg: tuple[float, ...]  # one per ingredient of a combination ("5-325 mg" -> (5, 325))
    key: tuple[object, ...] = field(init=False, compare=False)  # what same_as compares, derived once

    def __post_init__(self) -> None:
        key = tuple(sorted(round(x, 6) for x in self.mg)) if self.mg else (_squash(self.text),)
        object.__setattr__(self, "key", key)

    def same_as(self, other: Strength) -> bool:
        """Equal amounts in mg (0.1 mg == 100 mcg; combinations in any order), else equal text."""
        if bool(self.mg) != bool(other.mg):
            return _squash(self.text) == _squash(other.text)
        return self.key == other.key


@dataclass(frozen=True, slots=True)
class Identification:
    """What the drug table made of a request's medication name and code."""

    ingredients: tuple[DrugEntry, ...]  # every ingredient found, sorted by name
    method: str  # rxnorm | name | fuzzy | none
    matched: tuple[str, ...]  # the aliases that matched (or the code)
    score: float  # 100 for exact matches; the lowest fuzzy score otherwise
    strength: Strength | None
    unrecognised: tuple[str, ...]  # words neither known nor filler (fail closed)

    # derived once (an identification is memoised and read on every triage)
    controlled: tuple[DrugEntry, ...] = field(init=False, compare=False)
    ingredient_names: tuple[str, ...] = field(init=False, compare=False)
    ingredient_set: frozenset[str] = field(init=False, compare=False)
    identified: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(e.ingredient for e in self.ingredients)
        object.__setattr__(self, "controlled", tuple(e for e in self.ingredients if e.schedule))
        object.__setattr__(self, "ingredient_names", names)
        object.__setattr__(self, "ingredient_set", frozenset(names))
        object.__setattr__(self, "identified", bool(names))

    def describe(self, name: str | None) -> str:
        """One line for the evidence: what was asked for, what it was read as, and how."""
        return (
            f"{name!s} -> {', '.join(self.ingredient_names) or 'not identified'} ({self.method}"
            + (f", matched {' + '.join(self.matched)}" if self.matched else "")
            + (f", unrecognised words: {' '.join(self.unrecognised)}" if self.unrecognised else "")
            + ")"
        )


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.lower())


def normalize_name(name: str) -> str:
    """Lowercase, strengths removed, separators as spaces: the form aliases are compared in."""
    text = _STRENGTH.sub(" ", name.lower())
    text = _SEPARATORS.sub(" ", text)
    return " ".join(_WORD.findall(text))


@lru_cache(maxsize=65536)
def parse_strength(name: str) -> Strength | None:
    """The first strength written in ``name`` (``10 mg``, ``0.1 MG``, ``5-325 mg``, ``100 mcg``)."""
    m = _STRENGTH.search(name)
    if not m:
        return None
    a, b, unit, per, per_unit = m.groups()
    unit = unit.lower()
    factor = _TO_MG.get(unit)
    values = [float(a)] + ([float(b)] if b else [])
    mg = tuple(v * factor for v in values) if factor is not None and not per_unit else ()
    text = m.group(0).strip()
    if per_unit and per:
        text = text  # a concentration (mg/mL) is compared as written
    return Strength(text=text, mg=mg)


class DrugTable:
    """The drug table and the controlled list, indexed for identification (see module doc)."""

    def __init__(self, drugs: Iterable[Mapping[str, Any]], controlled: Iterable[Mapping[str, Any]]) -> None:
        entries: list[DrugEntry] = []
        for d in drugs:
            entries.append(_entry(d, schedule=None))
        for c in controlled:
            entries.append(_entry(c, schedule=str(c["schedule"])))
        self.entries: tuple[DrugEntry, ...] = tuple(entries)
        self.by_rxcui: dict[str, DrugEntry] = {}
        self.by_alias: dict[str, DrugEntry] = {}
        for e in entries:
            if e.rxcui:
                if e.rxcui in self.by_rxcui and self.by_rxcui[e.rxcui] is not e:
                    raise ValueError(
                        f"RxCUI {e.rxcui} listed for {self.by_rxcui[e.rxcui].ingredient} and {e.ingredient}"
                    )
                self.by_rxcui[e.rxcui] = e
            for a in e.aliases:
                have = self.by_alias.get(a)
                if have is not None and have.ingredient != e.ingredient:
                    raise ValueError(f"name {a!r} listed for {have.ingredient} and {e.ingredient}")
                self.by_alias[a] = e
        self._max_words = max((len(a.split()) for a in self.by_alias), default=1)
        # single words only for fuzzy matching: a misspelt word is matched against words
        self._fuzzy_keys = sorted({a for a in self.by_alias if " " not in a and len(a) >= MIN_FUZZY_WORD})
        self._controlled_keys = [a for a in self._fuzzy_keys if self.by_alias[a].schedule]
        self._cache: dict[tuple[str, str | None], Identification] = {}
        self._described: dict[tuple[int, str | None], tuple[Identification, str]] = {}

    def describe(self, ident: Identification, name: str | None) -> str:
        """``ident.describe(name)``, memoised: the same drug strings come back all day."""
        key = (id(ident), name)
        hit = self._described.get(key)
        if hit is None or hit[0] is not ident:
            hit = (ident, ident.describe(name))
            if len(self._described) < 100_000:
                self._described[key] = hit
        return hit[1]

    def ingredient(self, name: str) -> DrugEntry | None:
        return next((e for e in self.entries if e.ingredient == name), None)

    def identify(self, name: str | None, code: str | None = None) -> Identification:
        """Identify a medication by RxNorm code and/or name (memoised; the table is immutable)."""
        key = (name or "", code or None)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._identify(name or "", code or None)
            if len(self._cache) < 100_000:
                self._cache[key] = hit
        return hit

    def _identify(self, name: str, code: str | None) -> Identification:
        strength = parse_strength(name) if name else None
        by_code = self.by_rxcui.get(code.strip()) if code else None
        found: dict[str, DrugEntry] = {}
        matched: list[str] = []
        score = 100.0
        words = normalize_name(name).split() if name else []
        leftover: list[str] = []
        i = 0
        while i < len(words):  # longest known alias first ("tylenol with codeine" before "tylenol")
            for n in range(min(self._max_words, len(words) - i), 0, -1):
                phrase = " ".join(words[i : i + n])
                e = self.by_alias.get(phrase)
                if e is not None:
                    found[e.ingredient] = e
                    matched.append(phrase)
                    i += n
                    break
            else:
                leftover.append(words[i])
                i += 1
        unrecognised: list[str] = []
        fuzzy = False
        for w in leftover:
            if w in FILLER or _NUMBER_WORD.match(w):
                continue
            if len(w) >= MIN_FUZZY_WORD:
                c = process.extractOne(w, self._controlled_keys, scorer=fuzz.ratio, score_cutoff=CONTROLLED_SUSPECT_MIN)
                if c is not None:
                    e = self.by_alias[c[0]]
                    found[e.ingredient] = e
                    matched.append(f"{w}~{c[0]}")
                    score, fuzzy = min(score, float(c[1])), True
                    continue
                m = process.extractOne(w, self._fuzzy_keys, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN)
                if m is not None:
                    e = self.by_alias[m[0]]
                    found[e.ingredient] = e
                    matched.append(f"{w}~{m[0]}")
                    score, fuzzy = min(score, float(m[1])), True
                    continue
            unrecognised.append(w)
        if by_code is not None:
            found[by_code.ingredient] = by_code
            matched.insert(0, f"rxcui:{code}")
        ingredients = tuple(sorted(found.values(), key=lambda e: e.ingredient))
        if not ingredients:
            method = "none"
        elif by_code is not None and len(ingredients) == 1:
            method = "rxnorm"
        else:
            method = "fuzzy" if fuzzy else "name"
        return Identification(
            ingredients=ingredients,
            method=method,
            matched=tuple(matched),
            score=score if ingredients else 0.0,
            strength=strength,
            unrecognised=tuple(unrecognised),
        )


def _entry(d: Mapping[str, Any], schedule: str | None) -> DrugEntry:
    ingredient = normalize_name(str(d["ingredient"]))
    aliases = {ingredient}
    for a in [*(d.get("brands") or ()), *(d.get("aliases") or ())]:
        n = normalize_name(str(a))
        if n:
            aliases.add(n)
    drug_class = d.get("drug_class")
    return DrugEntry(
        ingredient=ingredient,
        rxcui=str(d["rxcui"]) if d.get("rxcui") else None,
        drug_class=None if drug_class in (None, "none") else str(drug_class),
        schedule=schedule,
        citation=str(d["citation"]) if d.get("citation") else None,
        aliases=tuple(sorted(aliases)),
    )
