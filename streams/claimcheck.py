"""Claim check: large payloads travel through the document store, not through Kafka.

Why: a Kafka broker refuses records above its ``max.message.bytes`` (about 1 MiB by
default), and faxes, FHIR Binaries and HL7 results with an embedded PDF are often
bigger. A gateway that gets a payload larger than ``claim_check_bytes`` stores it in
the content-addressed document store first (per practice) and writes a RawMessage
whose ``payload`` is empty and whose ``payload_uri`` / ``payload_size`` /
``payload_sha256`` say where the bytes are and what they must hash to. The worker
calls :func:`resolve` before normalizing, so every normalizer still sees the bytes.

The same three fields on a DeadLetter point at the whole original when the dead
letter itself keeps only a head that fits the topic (:func:`reference`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from typing import Any

from practiceflow.processors.base import Rejected
from practiceflow.settings import Settings
from practiceflow.sinks.docstore import DocumentStore, open_document_store

__all__ = ["check_in", "is_claim_checked", "reference", "resolve", "store_for"]


def check_in(
    store: DocumentStore, practice_id: str, payload: bytes, stored: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Store ``payload`` (unless ``stored`` = (sha256, uri) already holds these bytes) and
    return the RawMessage/DeadLetter fields that replace it. Blocking: call it off the loop.

    Raises ``DocumentStoreUnavailable`` when the store does not confirm (retry later).
    """
    sha = hashlib.sha256(payload).hexdigest()
    if stored is not None and stored[0] == sha:
        uri = stored[1]
    else:
        sha, uri = store.put(payload, practice_id)
    return {"payload_uri": uri, "payload_size": len(payload), "payload_sha256": sha}


def is_claim_checked(raw: dict[str, Any]) -> bool:
    return bool(raw.get("payload_uri"))


def reference(raw: dict[str, Any]) -> dict[str, Any]:
    """The claim-check fields of a raw message (for its dead letter); empty when it has none."""
    if not is_claim_checked(raw):
        return {}
    return {k: raw.get(k) for k in ("payload_uri", "payload_size", "payload_sha256")}


@functools.lru_cache(maxsize=8)
def _store(uri: str, endpoint: str | None, region: str | None, sse: str | None) -> DocumentStore:
    return open_document_store(uri, endpoint_url=endpoint, region=region, sse=sse)


def store_for(cfg: Settings) -> DocumentStore:
    """The document store the settings name (one client per configuration and process)."""
    opts = cfg.document_store_options
    return _store(cfg.documents_uri, opts["endpoint_url"], opts["region"], opts["sse"])


def _fetch(store: DocumentStore, raw: dict[str, Any]) -> bytes:
    practice, uri, sha = raw["practice_id"], raw["payload_uri"], raw.get("payload_sha256") or ""
    # content-addressed layout <practice>/<sha[:2]>/<sha>: a reference outside its own
    # practice's folder is refused before anything is read (no cross-tenant reads)
    if len(sha) != 64 or f"/{practice}/{sha[:2]}/{sha}" not in uri:
        raise Rejected("claim_check_invalid", "claim-check reference does not name this practice's document")
    try:
        data = store.get(uri, practice)
    except PermissionError as e:
        raise Rejected("claim_check_invalid", "claim-check reference names another practice's document") from e
    except FileNotFoundError as e:
        raise Rejected("claim_check_missing", "the claim-checked payload is not in the document store") from e
    except ValueError as e:
        raise Rejected("claim_check_invalid", f"claim-checked payload unreadable: {e}") from e
    if hashlib.sha256(data).hexdigest() != sha or (raw.get("payload_size") not in (None, len(data))):
        raise Rejected("claim_check_mismatch", "stored payload does not match the reference's SHA-256 and size")
    return data


async def resolve(raw: dict[str, Any], cfg: Settings) -> dict[str, Any]:
    """The raw message with its payload in place: itself when it was not claim-checked.

    A reference that can never resolve (missing, wrong hash, another practice's folder)
    is :class:`Rejected` (a dead letter that keeps the reference); an unreachable store
    raises ``DocumentStoreUnavailable`` (transient: retry, never a dead letter).
    """
    if not is_claim_checked(raw):
        return raw
    data = await asyncio.to_thread(_fetch, store_for(cfg), raw)
    return {**raw, "payload": data}
