"""JSON parsing and R4B validation, with the few documented lenient repairs.

Why R4B models validate R4 payloads: fhir.resources 8 ships R5 (default), R4B and
STU3 but no R4. R4B (4.3.0) is R4 (4.0.1) plus the topic-based Subscription
resources, the new medication-definition and evidence resources; every resource
this normalizer maps (Patient, Coverage, Encounter, Observation, Condition,
Immunization, AllergyIntolerance, MedicationRequest, ServiceRequest, Appointment,
DocumentReference, Claim,
ClaimResponse, ExplanationOfBenefit, CoverageEligibilityResponse, Bundle) has the
same elements and cardinalities in R4 and R4B, so R4 instances of them validate
unchanged. What does differ:

* R4-only resource types that R4B removed (``MedicinalProduct*``,
  ``SubstanceSpecification``/``Polymer``/``Protein``/``NucleicAcid``/
  ``ReferenceInformation``/``SourceMaterial``, ``EffectEvidenceSynthesis``,
  ``RiskEvidenceSynthesis``) are unknown to R4B. We never validate types we do not
  map, so at top level they are skipped like any unsupported type; *contained*
  inside a mapped resource they make it invalid (fhir.resources raises a KeyError
  for unknown contained types; we report it as ``invalid_resource``).
* ``Bundle.type`` gains ``subscription-notification`` in R4B, and R4B has a real
  ``SubscriptionStatus`` resource; the R4 Subscriptions Backport uses a ``history``
  Bundle whose first entry is a ``Parameters`` status. Both shapes are accepted.

Lenient repairs (each adds a warning; nothing else is repaired):

1. A UTF-8 BOM before the JSON is stripped (the spec forbids it; servers emit it).
2. A single JSON object where the model expects an array is wrapped in a one-item
   array. This is the STU3 -> R4 cardinality change (e.g. ``Observation.interpretation``
   0..1 -> 0..*), which "version-neutral" documents still carry.
3. An ``instant`` without a timezone (``"2000-01-01T00:00:00"`` in
   ``meta.lastUpdated``) is read as UTC and given a ``Z``.

Stricter than fhir.resources, because the records would otherwise be wrong:

* decimals whose integer part has more than 18 digits (the bound R5 wrote into the
  decimal regex; R4's regex is unbounded) are rejected as ``invalid_decimal`` instead
  of being rounded silently into an IEEE double (which at 1e18 cannot even hold the
  units digit). Fraction digits are not limited: R4 producers such as Synthea write
  18 of them, and rounding those loses nothing that matters;
* NaN / Infinity literals are not JSON and are rejected;
* required-binding codes on the elements we map (``status``, ``gender``, ``intent``,
  ``use``, ``outcome``, Bundle ``type``) are checked against the R4 value sets; the
  models only check the code *syntax*.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from practiceflow.processors.base import Rejected

MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"

# The integer-part and exponent bounds of R5's decimal regex
# -?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?([eE][+-]?[0-9]{1,9})? ; R5's 17-digit fraction bound is
# NOT applied: R4 producers (Synthea) write 18 fraction digits, and rounding those into a
# double loses nothing that matters. An integer part of 19+ digits is beyond any FHIR
# decimal and beyond what a double holds to the unit.
_DECIMAL_OK = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,9})?")
_NAIVE_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")


class OverPreciseDecimal(float):
    """A float parsed from a literal FHIR cannot hold; remembered for the error message."""

    literal: str

    def __new__(cls, literal: str) -> OverPreciseDecimal:
        obj = super().__new__(cls, float(literal))
        obj.literal = literal
        return obj


class _ParseState:
    __slots__ = ("over_precise",)

    def __init__(self) -> None:
        self.over_precise = False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """Bytes -> (JSON value, saw an over-precise decimal). Raises Rejected."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise Rejected("invalid_payload", f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejected("payload_too_large", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    if raw.startswith(_BOM):
        raw = raw[3:]
    if not raw.strip():
        raise Rejected("empty_payload", "no content")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected("invalid_encoding", f"FHIR JSON must be UTF-8: {e}") from None
    state = _ParseState()

    def parse_float(lit: str) -> float:
        if _DECIMAL_OK.fullmatch(lit):
            return float(lit)
        state.over_precise = True
        return OverPreciseDecimal(lit)

    def parse_int(lit: str) -> int | float:
        if len(lit) <= 18:
            return int(lit)
        if len(lit.lstrip("-")) <= 18:
            return int(lit)
        state.over_precise = True  # > 18 digits: beyond FHIR decimal and integer64 alike
        return OverPreciseDecimal(lit)

    try:
        value = json.loads(text, parse_float=parse_float, parse_int=parse_int, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejected("invalid_json", "JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, int-digit limit, NaN/Infinity
        raise Rejected("invalid_json", str(e)[:300]) from None
    return value, state.over_precise


def find_over_precise(node: Any, path: str = "") -> str | None:
    """Path and literal of the first over-precise decimal under ``node`` (rare path)."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        cur, p = stack.pop()
        if isinstance(cur, OverPreciseDecimal):
            return f"{p or '<root>'} = {cur.literal}"
        if isinstance(cur, dict):
            stack.extend((v, f"{p}.{k}" if p else k) for k, v in cur.items())
        elif isinstance(cur, list):
            stack.extend((v, f"{p}[{n}]") for n, v in enumerate(cur))
    return None


# --------------------------------------------------------------------------- required bindings (R4)
_FM_STATUS = frozenset({"active", "cancelled", "draft", "entered-in-error"})
_CLAIM_USE = frozenset({"claim", "preauthorization", "predetermination"})
_OUTCOME = frozenset({"queued", "complete", "error", "partial"})
_BINDINGS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "Patient": (("gender", frozenset({"male", "female", "other", "unknown"})),),
    "Observation": (
        (
            "status",
            frozenset(
                {
                    "registered",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                }
            ),
        ),
    ),
    "Encounter": (
        (
            "status",
            frozenset(
                {
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                }
            ),
        ),
    ),
    "Coverage": (("status", _FM_STATUS),),
    "MedicationRequest": (
        (
            "status",
            frozenset(
                {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
            ),
        ),
        (
            "intent",
            frozenset(
                {
                    "proposal",
                    "plan",
                    "order",
                    "original-order",
                    "reflex-order",
                    "filler-order",
                    "instance-order",
                    "option",
                }
            ),
        ),
    ),
    "ServiceRequest": (
        ("status", frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})),
        (
            "intent",
            frozenset(
                {
                    "proposal",
                    "plan",
                    "directive",
                    "order",
                    "original-order",
                    "reflex-order",
                    "filler-order",
                    "instance-order",
                    "option",
                }
            ),
        ),
    ),
    "Appointment": (
        (
            "status",
            frozenset(
                {
                    "proposed",
                    "pending",
                    "booked",
                    "arrived",
                    "fulfilled",
                    "cancelled",
                    "noshow",
                    "entered-in-error",
                    "checked-in",
                    "waitlist",
                }
            ),
        ),
    ),
    "DocumentReference": (
        ("status", frozenset({"current", "superseded", "entered-in-error"})),
        ("docStatus", frozenset({"preliminary", "final", "amended", "entered-in-error"})),
    ),
    "Immunization": (("status", frozenset({"completed", "entered-in-error", "not-done"})),),
    "AllergyIntolerance": (
        ("type", frozenset({"allergy", "intolerance"})),
        ("criticality", frozenset({"low", "high", "unable-to-assess"})),
    ),
    "Claim": (("status", _FM_STATUS), ("use", _CLAIM_USE)),
    "ClaimResponse": (("status", _FM_STATUS), ("use", _CLAIM_USE), ("outcome", _OUTCOME)),
    "ExplanationOfBenefit": (("status", _FM_STATUS), ("use", _CLAIM_USE), ("outcome", _OUTCOME)),
    "CoverageEligibilityResponse": (("status", _FM_STATUS), ("outcome", _OUTCOME)),
}
BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
        "subscription-notification",
    }
)


class Invalid(Exception):
    """One resource failed validation; ``code`` is the Rejected reason code."""

    def __init__(self, code: str, summary: str) -> None:
        super().__init__(summary)
        self.code = code
        self.summary = summary


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<resource>"


def summarize(errors: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    parts = []
    for err in errors[:limit]:
        msg = str(err.get("msg", "")).replace("Value error, ", "")
        parts.append(f"{_loc(tuple(err.get('loc', ())))}: {msg[:160]}")
    more = len(errors) - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _get_parent(root: Any, loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    cur = root
    for part in loc[:-1]:
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur, loc[-1]


def _repair(
    data: dict[str, Any], errors: Sequence[Mapping[str, Any]], rtype: str
) -> tuple[dict[str, Any], list[str]] | None:
    """Apply the documented lenient repairs to a copy, or None if some error is not repairable."""
    fixes: list[tuple[tuple[Any, ...], str, str]] = []
    seen: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if loc in seen:
            continue
        seen.add(loc)
        inp = err.get("input")
        if err.get("type") == "list_type" and isinstance(inp, dict) and loc:
            fixes.append(
                (loc, "wrap", f"{rtype}.{_loc(loc)}: single object wrapped in an array (STU3-style cardinality)")
            )
        elif (
            err.get("type") == "value_error"
            and isinstance(inp, str)
            and "Instant" in str(err.get("msg", ""))
            and _NAIVE_INSTANT.match(inp)
            and loc
        ):
            fixes.append((loc, "utc", f"{rtype}.{_loc(loc)}: instant {inp!r} has no timezone, read as UTC"))
        else:
            return None
    data = copy.deepcopy(data)
    for loc, kind, _ in fixes:
        found = _get_parent(data, loc)
        if found is None:
            return None
        parent, key = found
        try:
            if kind == "wrap":
                parent[key] = [parent[key]]
            else:
                parent[key] = parent[key] + "Z"
        except (KeyError, IndexError, TypeError):
            return None
    return data, [w for _, _, w in fixes]


def validate_resource(data: dict[str, Any], rtype: str) -> tuple[dict[str, Any], list[str]]:
    """Validate one resource dict with its R4B model. Returns (possibly repaired dict, warnings)."""
    try:
        model = get_fhir_model_class(rtype)
    except Exception:
        raise Invalid("unknown_resource_type", f"{rtype!r} is not an R4B resource type") from None
    warnings: list[str] = []
    for _attempt in range(4):
        try:
            model.model_validate(data)
            break
        except ValidationError as e:
            errors = e.errors(include_url=False)
            repaired = _repair(data, errors, rtype)
            if repaired is None:
                raise Invalid("invalid_resource", f"{rtype}: {summarize(errors)}") from None
            data, more = repaired
            warnings.extend(more)
        except RecursionError:
            raise Invalid("invalid_resource", f"{rtype}: nested too deeply") from None
        except Exception as e:
            raise Invalid("invalid_resource", f"{rtype}: {type(e).__name__}: {str(e)[:200]}") from None
    else:
        raise Invalid("invalid_resource", f"{rtype}: could not be repaired")
    for field, allowed in _BINDINGS.get(rtype, ()):
        v = data.get(field)
        if v is not None and v not in allowed:
            raise Invalid(
                "invalid_code",
                f"{rtype}.{field} {str(v)[:60]!r} is not in the R4 value set ({', '.join(sorted(allowed))})",
            )
    return data, warnings
