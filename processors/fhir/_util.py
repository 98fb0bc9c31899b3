"""Small, defensive accessors for FHIR JSON dicts.

The normalizer maps from the parsed JSON dicts (not from fhir.resources model
objects: attribute access on the models is slower and renames fields such as
``class``). Resources we map are validated with the R4B models first, so their
*structure* is sound (lists are lists, complex types are dicts); primitive
leaves may still be lax-coerced strings (pydantic accepts ``"5"`` for a decimal
and ``"yes"`` for a boolean), and referenced helper resources (Organization,
Practitioner, Medication) are read without validation. Every accessor here
therefore checks types and never raises.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import CodingDict

from practiceflow.processors.base import ascii_digits

AVRO_LONG_MIN = -(2**63)
AVRO_LONG_MAX = 2**63 - 1


def d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def lst(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def s(x: Any) -> str | None:
    """A non-empty string, or a number rendered as one; anything else -> None."""
    if isinstance(x, str):
        return x if x else None
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float) and math.isfinite(x):
        return num_str(x)
    return None


def f(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        try:
            v = float(x)
        except OverflowError:
            return None
        return v if math.isfinite(v) else None
    if isinstance(x, str):
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def i(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        v = x
    elif isinstance(x, float) and math.isfinite(x) and x.is_integer():
        v = int(x)
    elif isinstance(x, str) and len(x) < 20 and ascii_digits(x.strip().removeprefix("-")):
        v = int(x)
    else:
        return None
    return v if AVRO_LONG_MIN <= v <= AVRO_LONG_MAX else None


def is_true(x: Any) -> bool:
    return x is True or x == "true"


def num_str(v: float | int) -> str:
    """``2.0`` -> ``"2"``, ``2.5`` -> ``"2.5"`` (JSON numbers as a person writes them)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return str(v)


def first(x: Any) -> Any:
    xs = lst(x)
    return xs[0] if xs else None


# --------------------------------------------------------------------------- datatypes
def coding(c: Any) -> CodingDict:
    c = d(c)
    return {"system": s(c.get("system")), "code": s(c.get("code")), "display": s(c.get("display"))}


EMPTY_CODING: CodingDict = {"system": None, "code": None, "display": None}


def cc_coding(cc: Any, prefer_system: str | None = None) -> CodingDict:
    """The most useful Coding of a CodeableConcept (display falls back to text)."""
    cc = d(cc)
    codings = [c for c in lst(cc.get("coding")) if isinstance(c, dict)]
    chosen = None
    if prefer_system:
        chosen = next((c for c in codings if s(c.get("system")) == prefer_system and s(c.get("code"))), None)
    if chosen is None:
        chosen = next((c for c in codings if s(c.get("code"))), codings[0] if codings else None)
    out = coding(chosen) if chosen is not None else EMPTY_CODING.copy()
    if out["display"] is None:
        out["display"] = s(cc.get("text"))
    return out


def cc_code(cc: Any) -> str | None:
    for c in lst(d(cc).get("coding")):
        code = s(d(c).get("code"))
        if code:
            return code
    return None


def cc_codes(cc: Any) -> list[str]:
    return [code for c in lst(d(cc).get("coding")) if (code := s(d(c).get("code")))]


def cc_text(cc: Any) -> str | None:
    cc = d(cc)
    t = s(cc.get("text"))
    if t:
        return t
    for c in lst(cc.get("coding")):
        c = d(c)
        t = s(c.get("display")) or s(c.get("code"))
        if t:
            return t
    return None


def quantity_str(q: Any) -> str | None:
    q = d(q)
    v = q.get("value")
    if v is None:
        return None
    vs = s(v)
    if vs is None:
        return None
    comparator = s(q.get("comparator")) or ""
    unit = s(q.get("unit")) or s(q.get("code")) or ""
    return f"{comparator}{vs} {unit}".strip()


def range_str(r: Any) -> str | None:
    r = d(r)
    lo, hi = quantity_str(r.get("low")), quantity_str(r.get("high"))
    if lo is None and hi is None:
        return s(r.get("text"))
    return f"{lo or ''}-{hi or ''}".strip()


def period_start(p: Any) -> str | None:
    return s(d(p).get("start"))


def human_name(names: Any) -> dict[str, Any] | None:
    """Pick official > usual > first non-old/maiden name."""
    cands = [n for n in lst(names) if isinstance(n, dict)]
    if not cands:
        return None
    for use in ("official", "usual"):
        for n in cands:
            if n.get("use") == use:
                return n
    for n in cands:
        if n.get("use") not in ("old", "maiden", "anonymous"):
            return n
    return cands[0]


def name_parts(names: Any) -> tuple[str | None, list[str]]:
    n = human_name(names)
    if n is None:
        return None, []
    family = s(n.get("family"))
    given = [g for g in (s(x) for x in lst(n.get("given"))) if g]
    if family is None and not given:
        t = s(n.get("text"))
        return t, []
    return family, given


def display_name(names: Any) -> str | None:
    family, given = name_parts(names)
    if family and given:
        return f"{family}, {' '.join(given)}"
    return family or (" ".join(given) if given else None)
