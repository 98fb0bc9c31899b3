"""FHIR R4 JSON (a resource or a Bundle) -> normalized practiceflow records.

``normalize_fhir(raw, practice_id, received_at_ms)`` follows the normalizer contract
of ``processors/base.py``: a pure function returning a :class:`NormalizeResult`, or
raising :class:`Rejected` with a machine-readable reason code.

Accepted input
    One resource, or a Bundle of any R4/R4B type: transaction, batch, collection,
    searchset, history, document, message, the ``-response`` types, and
    subscription notifications — R4 Subscriptions Backport style (``history`` Bundle
    whose first entry is a ``Parameters`` subscription status) or R4B style
    (``subscription-notification`` Bundle, first entry ``SubscriptionStatus``). The
    status entry is not normalized; a handshake/heartbeat/empty or id-only
    notification yields zero records and a warning, not an error.

Validation
    Every resource that is mapped is validated with the fhir.resources **R4B** models
    (there is no R4 package; see ``_validate`` for what differs and the lenient
    repairs). Unsupported types (Practitioner, Organization, a lone Medication,
    Provenance, ...) are skipped with one aggregated warning and are *not*
    validated; they are still used, read defensively, to resolve references (payer
    names, contained/referenced Medication, prescriber names).

Bundles with an invalid entry
    * ``transaction``, ``document``, ``message``: atomic by definition (a transaction
      either all applies or none does; a document or message is one unit) -> the
      whole Bundle is Rejected, naming the entry.
    * every other type (``batch``, ``collection``, ``searchset``, ``history``, ...):
      entries are independent -> valid entries are normalized, each invalid one
      becomes a warning. If invalid entries leave zero records, the Bundle is
      Rejected so a person sees it.
    * A *valid* resource that cannot be mapped (e.g. an Observation whose subject is a
      Group) is a warning in every Bundle type, and Rejected(``missing_patient``)
      when it is the whole payload.
    * An empty transaction/batch/collection/document/message Bundle is Rejected
      (``empty_bundle``); an empty searchset/history is zero records.

Ids
    Record ids are the resource id, else the id part of the entry ``fullUrl``
    (``urn:uuid:<uuid>`` -> ``<uuid>``), else a hash of the resource's canonical JSON.
    ``result.message_id`` (also ``source.message_id``):

    * single resource: hash of (resourceType, id, meta.versionId); without a
      versionId, (resourceType, id, meta.lastUpdated); without either, a hash of the
      bytes — so an *update* that keeps the id is never mistaken for a resend;
    * Bundle: hash of (type, Bundle.identifier, timestamp, meta.profile) when it has an
      identifier; else of (type, id, meta.versionId, meta.lastUpdated, timestamp)
      when it has an id and one of those; else a hash of the bytes. Including the
      type/timestamp/profile keeps e.g. a Da Vinci PAS *inquiry* that reuses its
      request's submitter identifier from being deduplicated as a resend.

    A resend of the same bytes always gets the same id.

Reason codes
    ``invalid_payload``, ``payload_too_large``, ``empty_payload``, ``invalid_encoding``
    (not UTF-8), ``invalid_json`` (syntax, NaN/Infinity, nesting), ``not_json_object``,
    ``missing_resource_type`` (absent/empty/not a string), ``unknown_resource_type``,
    ``invalid_bundle`` (envelope fails validation), ``empty_bundle``,
    ``invalid_resource`` (R4B model validation, summarized pydantic errors),
    ``invalid_code`` (required-binding value outside the R4 value set),
    ``invalid_decimal`` (integer part over 18 digits), ``missing_patient``,
    ``mapping_error`` (a bug in a mapper; tests assert the corpus never hits it).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fhir.resources.R4B import get_fhir_model_class

from practiceflow.processors.base import Normalized, NormalizeResult, Rejected, content_id
from practiceflow.processors.identity.choose import DEFAULT_POLICY, IdentityPolicy

from ._refs import BundleIndex, Scope, _id_from_url
from ._util import d, lst, s
from ._validate import BUNDLE_TYPES, Invalid, find_over_precise, parse_json, validate_resource
from .mappers import MAPPERS, Ctx, Unmappable, interaction

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import SourceRefDict

__all__ = ["normalize_fhir", "SUPPORTED_TYPES"]

FEED = "fhir"
SUPPORTED_TYPES: frozenset[str] = frozenset(MAPPERS)
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
# R4 (4.0.1) resource types that R4B removed: skipped like any other unsupported type.
R4_ONLY_TYPES: frozenset[str] = frozenset(
    {
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "EffectEvidenceSynthesis",
        "RiskEvidenceSynthesis",
    }
)
_ATOMIC = frozenset({"transaction", "document", "message"})
_MAY_BE_EMPTY = frozenset(
    {"searchset", "history", "subscription-notification", "transaction-response", "batch-response"}
)


@lru_cache(maxsize=1024)
def _is_known_type(name: str) -> bool:
    """A real R4 or R4B resource type name (so: skip it) as opposed to garbage (reject).

    A pure memo of a fixed fact, so the cache does not make the normalizer impure.
    """
    if name in R4_ONLY_TYPES:
        return True
    try:
        get_fhir_model_class(name)
    except Exception:
        return False
    return True


def _strip(raw: bytes) -> bytes:
    raw = bytes(raw)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.strip()


def _canonical_hash(obj: Any) -> str:
    return content_id(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _entity_id(resource: dict[str, Any], full_url: str | None) -> str:
    rid = s(resource.get("id"))
    if rid:
        return rid
    if full_url:
        return _id_from_url(full_url)
    return _canonical_hash(resource)


def _resource_type(obj: Any, where: str) -> str:
    rt = obj.get("resourceType")
    if rt is None or rt == "":
        raise Invalid("missing_resource_type", f"{where}: no resourceType")
    if not isinstance(rt, str):
        raise Invalid("missing_resource_type", f"{where}: resourceType is a {type(rt).__name__}, not a string")
    if not _TYPE_NAME.match(rt):
        raise Invalid("unknown_resource_type", f"{where}: {rt[:60]!r} is not a FHIR resource type name")
    return rt


def _process(
    resource: dict[str, Any],
    rt: str,
    full_url: str | None,
    index: BundleIndex,
    *,
    practice_id: str,
    event: str | None,
    base_source: SourceRefDict,
    bundle_sent_at: str | None,
    over_precise: bool,
    warnings: list[str],
    policy: IdentityPolicy = DEFAULT_POLICY,
) -> list[Normalized]:
    """Validate and map one supported resource. Raises Invalid or Unmappable."""
    if over_precise:
        where = find_over_precise(resource)
        if where:
            raise Invalid(
                "invalid_decimal",
                f"{rt}: {where} has more than 18 integer digits; no FHIR decimal or IEEE double holds it without loss",
            )
    data, fixes = validate_resource(resource, rt)
    eid = _entity_id(data, full_url)
    for fx in fixes:
        warnings.append(f"{rt}/{eid}: lenient: {fx}")
    source = base_source.copy()
    source["sent_at"] = bundle_sent_at or s(d(data.get("meta")).get("lastUpdated"))
    ctx = Ctx(data, rt, Scope(data, full_url, index), practice_id, eid, event, source, warnings, policy)
    return MAPPERS[rt](ctx)


def normalize_fhir(
    raw: bytes, practice_id: str, received_at_ms: int, *, policy: IdentityPolicy | None = None
) -> NormalizeResult:
    """Normalize one FHIR R4 JSON payload (resource or Bundle). Pure; raises Rejected.

    ``policy``: the practice's patient identity policy (``processors/identity``)."""
    policy = policy or DEFAULT_POLICY
    value, over_precise = parse_json(raw)
    if not isinstance(value, dict):
        raise Rejected("not_json_object", f"top-level JSON is a {type(value).__name__}, expected an object")
    try:
        rt = _resource_type(value, "payload")
    except Invalid as e:
        raise Rejected(e.code, e.summary) from None
    if rt == "Bundle":
        return _bundle(value, raw, practice_id, over_precise, policy)
    return _single(value, rt, raw, practice_id, over_precise, policy)


# --------------------------------------------------------------------------- single resource
def _single_message_id(rt: str, res: dict[str, Any], raw: bytes) -> str:
    rid = s(res.get("id"))
    meta = d(res.get("meta"))
    vid, lu = s(meta.get("versionId")), s(meta.get("lastUpdated"))
    if rid and vid:
        return content_id(f"{rt}|{rid}|{vid}".encode())
    if rid and lu:
        return content_id(f"{rt}|{rid}||{lu}".encode())
    return content_id(_strip(raw))


def _single(
    res: dict[str, Any],
    rt: str,
    raw: bytes,
    practice_id: str,
    over_precise: bool,
    policy: IdentityPolicy = DEFAULT_POLICY,
) -> NormalizeResult:
    mid = _single_message_id(rt, res, raw)
    result = NormalizeResult(message_id=mid, message_type=rt)
    if rt not in MAPPERS:
        if not _is_known_type(rt):
            raise Rejected("unknown_resource_type", f"{rt[:60]!r} is not an R4/R4B resource type")
        result.warnings.append(f"unsupported resource type {rt} skipped (0 records)")
        return result
    base_source: SourceRefDict = {
        "feed": FEED,
        "message_id": mid,
        "raw_topic": None,
        "message_type": rt,
        "sent_at": None,
    }
    try:
        result.records = _process(
            res,
            rt,
            None,
            BundleIndex(),
            practice_id=practice_id,
            event=None,
            base_source=base_source,
            bundle_sent_at=None,
            over_precise=over_precise,
            warnings=result.warnings,
            policy=policy,
        )
    except Invalid as e:
        raise Rejected(e.code, e.summary) from None
    except Unmappable as e:
        raise Rejected(e.code, e.reason) from None
    except RecursionError:
        raise Rejected("invalid_resource", f"{rt}: nested too deeply") from None
    except Exception as e:
        raise Rejected("mapping_error", f"{rt}: {type(e).__name__}: {str(e)[:200]}") from None
    return result


# --------------------------------------------------------------------------- Bundle
def _bundle_message_id(b: dict[str, Any], btype: str, raw: bytes) -> str:
    ident = d(b.get("identifier"))
    meta = d(b.get("meta"))
    ts = s(b.get("timestamp")) or ""
    if s(ident.get("value")):
        profiles = ",".join(sorted(x for x in (s(p) for p in lst(meta.get("profile"))) if x))
        return content_id(
            f"Bundle|{btype}|{s(ident.get('system')) or ''}|{s(ident.get('value'))}|{ts}|{profiles}".encode()
        )
    bid, vid, lu = s(b.get("id")), s(meta.get("versionId")), s(meta.get("lastUpdated"))
    if bid and (vid or lu or ts):
        return content_id(f"Bundle|{btype}|{bid}|{vid or ''}|{lu or ''}|{ts}".encode())
    return content_id(_strip(raw))


def _notification_status(entries: list[Any]) -> tuple[dict[str, Any], str | None] | None:
    """The first entry's status resource and the notification type, if this is a notification."""
    if not entries:
        return None
    res = d(d(entries[0]).get("resource"))
    rt = res.get("resourceType")
    if rt == "SubscriptionStatus":
        return res, s(res.get("type"))
    if rt == "Parameters":
        params = [d(p) for p in lst(res.get("parameter"))]
        names = {s(p.get("name")) for p in params}
        profiles = " ".join(str(p) for p in lst(d(res.get("meta")).get("profile")))
        if (
            "subscription-status" in profiles
            or {"subscription", "status"} <= names
            or {"subscription", "type"} <= names
        ):
            ntype = next(
                (s(p.get("valueCode")) or s(p.get("valueString")) for p in params if p.get("name") == "type"), None
            )
            return res, ntype
    return None


def _bundle(
    b: dict[str, Any], raw: bytes, practice_id: str, over_precise: bool, policy: IdentityPolicy = DEFAULT_POLICY
) -> NormalizeResult:
    entries = b.get("entry", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise Rejected("invalid_bundle", "Bundle.entry must be an array of objects")
    envelope = {k: v for k, v in b.items() if k != "entry"}
    envelope["entry"] = [{k: v for k, v in e.items() if k != "resource"} for e in entries]
    if not envelope["entry"]:
        del envelope["entry"]
    try:
        envelope, fixes = validate_resource(envelope, "Bundle")
    except Invalid as e:
        raise Rejected("invalid_bundle", e.summary) from None
    btype = s(envelope.get("type")) or ""
    if btype not in BUNDLE_TYPES:
        raise Rejected("invalid_code", f"Bundle.type {btype[:40]!r} is not a Bundle type")
    mid = _bundle_message_id(b, btype, raw)
    mtype = f"Bundle/{btype}"
    result = NormalizeResult(message_id=mid, message_type=mtype)
    warnings = result.warnings
    warnings.extend(f"Bundle: lenient: {fx}" for fx in fixes)
    sent_at = s(envelope.get("timestamp")) or s(d(envelope.get("meta")).get("lastUpdated"))
    base_source: SourceRefDict = {
        "feed": FEED,
        "message_id": mid,
        "raw_topic": None,
        "message_type": mtype,
        "sent_at": sent_at,
    }

    start = 0
    notification = None
    if btype in ("history", "subscription-notification"):
        notification = _notification_status(entries)
        if notification is not None:
            start = 1
            warnings.append(
                f"subscription notification (type={notification[1] or 'unknown'}): "
                f"{len(entries) - 1} event entr{'y' if len(entries) == 2 else 'ies'}"
            )
    body = entries[start:]
    if not body:
        if notification is not None or btype in _MAY_BE_EMPTY:
            warnings.append("Bundle has no entries to normalize (0 records)")
            return result
        raise Rejected("empty_bundle", f"{btype} Bundle has no entries")

    atomic = btype in _ATOMIC
    lenient_event = btype in ("transaction", "batch", "history", "subscription-notification")
    index = BundleIndex()
    for entry in entries:
        res = entry.get("resource")
        if isinstance(res, dict):
            index.add(s(entry.get("fullUrl")), res)

    skipped: Counter[str] = Counter()
    no_resource: list[str] = []
    invalid: list[str] = []
    for n, entry in enumerate(body, start=start):
        res = entry.get("resource")
        full_url = s(entry.get("fullUrl"))
        request = d(entry.get("request"))
        method = s(request.get("method"))
        if res is None:
            if method == "DELETE":
                warnings.append(f"entry[{n}] DELETE {s(request.get('url')) or full_url}: deletions are not normalized")
            else:
                no_resource.append(full_url or s(request.get("url")) or f"entry[{n}]")
            continue
        where = f"entry[{n}]"
        try:
            if not isinstance(res, dict):
                raise Invalid("invalid_resource", f"{where}: resource is not an object")
            rt = _resource_type(res, where)
            if rt == "Bundle" or rt == "OperationOutcome" or d(entry.get("search")).get("mode") == "outcome":
                skipped[rt] += 1
                continue
            if rt not in MAPPERS:
                if not _is_known_type(rt):
                    raise Invalid("unknown_resource_type", f"{where}: {rt!r} is not an R4/R4B resource type")
                skipped[rt] += 1
                continue
            event = interaction(method) if lenient_event else None
            result.records.extend(
                _process(
                    res,
                    rt,
                    full_url,
                    index,
                    practice_id=practice_id,
                    event=event,
                    base_source=base_source,
                    bundle_sent_at=sent_at,
                    over_precise=over_precise,
                    warnings=warnings,
                    policy=policy,
                )
            )
        except Invalid as err:
            label = f"{where} ({res.get('resourceType')}/{res.get('id')})" if isinstance(res, dict) else where
            if atomic:
                raise Rejected(err.code, f"{btype} Bundle rejected: {label}: {err.summary}") from None
            invalid.append(f"{label}: {err.code}: {err.summary}")
        except Unmappable as err:
            warnings.append(f"{where} not normalized: {err.code}: {err.reason}")
        except RecursionError:
            if atomic:
                raise Rejected("invalid_resource", f"{where}: nested too deeply") from None
            invalid.append(f"{where}: invalid_resource: nested too deeply")
        except Exception as err:
            if atomic:
                raise Rejected("mapping_error", f"{where}: {type(err).__name__}: {str(err)[:200]}") from None
            invalid.append(f"{where}: mapping_error: {type(err).__name__}: {str(err)[:200]}")

    for msg in invalid:
        warnings.append(f"invalid entry skipped: {msg}")
    if invalid and not result.records:
        raise Rejected(
            "invalid_resource", f"{btype} Bundle: no valid entries; {len(invalid)} invalid, first: {invalid[0]}"
        )
    if no_resource:
        kind = "id-only notification entries" if notification is not None else "entries without a resource"
        shown = ", ".join(no_resource[:5]) + (f" (+{len(no_resource) - 5} more)" if len(no_resource) > 5 else "")
        warnings.append(f"{len(no_resource)} {kind} not normalized (resource not included): {shown}")
    if skipped:
        warnings.append(
            "unsupported resource types skipped: " + ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
        )
    return result
