"""Table keys without PHI: a digest in place of a DOB, phone or identifier (pure).

The ``patient-index`` and ``patient-context`` tables are Faust tables, so every key is
also a Kafka key on a changelog topic, and Kafka keys show up in tooling, logs and
consumer-lag dumps and are never encrypted the way a value payload may be. A demographic
block (``dob:19800101``, ``ph:5551234567``) or a crosswalk key (``mb|W123456``) therefore
never goes into a key in the clear: every lookup on those keys is exact-match, so the key
holds ``sha256(practice, kind, value)`` instead, and the clear value, where the agent must
read it back (the crosswalk is rebuilt from the table), travels in the record's value.

The practice id is part of the digest so equal values of two practices never share a key
(and one practice's digests say nothing about another's). Note: a date of birth has few
possible values; the digest keeps it out of sight, it is not encryption.
"""

from __future__ import annotations

import hashlib

__all__ = ["block_key", "digest", "ident_key", "is_digest", "patient_key"]

_SEP = "\x1f"  # a separator no practice id, kind or value holds
DIGEST_LEN = 32


def digest(practice_id: str, kind: str, value: str) -> str:
    """The first 128 bits (32 hex) of SHA-256 over practice, kind and normalized value."""
    raw = _SEP.join((practice_id, kind, value)).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:DIGEST_LEN]


def is_digest(s: str) -> bool:
    """True for a string :func:`digest` could have made (a table key's tail)."""
    return len(s) == DIGEST_LEN and all(c in "0123456789abcdef" for c in s)


def _split(key: str, sep: str) -> tuple[str, str]:
    kind, _, value = key.partition(sep)
    return kind, value


def block_key(practice_id: str, block: str) -> str:
    """``b:<practice>|<digest>`` for a blocking key ``<kind>:<value>`` (matching.blocking_keys)."""
    kind, value = _split(block, ":")
    return f"b:{practice_id}|{digest(practice_id, 'block:' + kind, value)}"


def ident_key(prefix: str, practice_id: str, identifier: str) -> str:
    """``<prefix>:<practice>|<digest>`` for a crosswalk identifier key ``<kind>|<value>``
    (``x`` for the crosswalk binding, ``a`` for an ambiguous key)."""
    kind, value = _split(identifier, "|")
    return f"{prefix}:{practice_id}|{digest(practice_id, 'id:' + kind, value)}"


def patient_key(practice_id: str, patient_id: str) -> str:
    """The ``<practice>/<patient>`` part of a context or demographics key.

    An MRN stays as it is (it is the chart's id, as in every other topic's key). A
    provisional patient id is a crosswalk key (``mb|<member id>``, ``fhir|<id>``) and is
    replaced by its digest."""
    if "|" in patient_id:
        kind, value = _split(patient_id, "|")
        return f"{practice_id}/~{digest(practice_id, 'id:' + kind, value)}"
    return f"{practice_id}/{patient_id}"
