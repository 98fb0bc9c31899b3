"""Who is calling: the pure credential checks every gateway shares (no I/O, no clock).

A caller authenticates *as a practice* and may only write into, or read from, that
practice. The gateways ask three questions, answered here:

* :func:`practice_for_token` - which practice does this bearer token belong to? Every
  configured secret of every practice is compared with :func:`hmac.compare_digest`,
  without an early exit, so neither the answer's timing nor a partial match tells an
  attacker anything. Each practice holds up to two secrets at once (the current one and
  the next one) so a sender can switch tokens without downtime.
* :func:`practice_for_certificate` - which practice does this MLLP client certificate
  belong to? By SHA-256 fingerprint of the DER bytes (the most precise), else by a
  subjectAltName (DNS / URI / e-mail), else by the subject CN.
* :func:`claimed_receiving_facility` - MSH-6 of an HL7 message, which a sender might use
  to address another practice than the one its certificate maps to.

:func:`valid_practice_id` keeps a path segment that cannot name a tenant (``..``,
``%2e``, slashes, control characters) from ever reaching a key, a folder or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BEARER",
    "UNKNOWN_PRACTICE",
    "bearer_token",
    "cert_fingerprint",
    "claimed_receiving_facility",
    "practice_for_certificate",
    "practice_for_token",
    "safe_label",
    "valid_practice_id",
]

BEARER = "bearer"
UNKNOWN_PRACTICE = "_unknown"
"""Tenant of dead letters whose practice is not (or not yet) known: an unknown URL practice,
an MLLP client certificate mapped to no practice. Never a configured practice id."""

_PRACTICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_practice_id(value: str) -> bool:
    """Whether ``value`` can name a tenant: 1-64 of ``[A-Za-z0-9._-]``, not starting with a dot."""
    return bool(_PRACTICE_ID.fullmatch(value)) and ".." not in value


def safe_label(value: str, limit: int = 64) -> str:
    """An untrusted string made safe for a dead letter's details or a log line (printable ASCII, short)."""
    return "".join(c if 32 < ord(c) < 127 else "?" for c in value[:limit])


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == BEARER and token else None


def practice_for_token(token: str | None, secrets: Mapping[str, Sequence[bytes]]) -> str | None:
    """The practice whose current or next secret equals ``token``; None when none does.

    Compares against every secret of every practice (constant time per comparison, no
    early exit), so the time taken does not depend on which practice, or whether any,
    matched.
    """
    presented = (token or "").encode("utf-8", "surrogateescape")
    found: str | None = None
    for practice, candidates in secrets.items():
        for secret in candidates:
            if hmac.compare_digest(presented, secret) and secret:
                found = practice
    return found if token else None


def cert_fingerprint(der: bytes) -> str:
    """``sha256:<hex>`` of a certificate's DER bytes (what ``openssl x509 -fingerprint -sha256`` shows)."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _cert_names(cert: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(subjectAltName values, subject CNs) of a certificate as ``ssl.SSLSocket.getpeercert()`` returns it."""
    sans = [str(v) for _kind, v in cert.get("subjectAltName", ())]
    cns = [str(v) for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return sans, cns


def practice_for_certificate(
    cert: Mapping[str, Any] | None, der: bytes | None, mapping: Mapping[str, str]
) -> str | None:
    """The practice a verified client certificate is mapped to, or None.

    ``mapping`` keys are ``sha256:<hex>`` fingerprints, ``san:<value>`` or ``cn:<value>``
    (a bare value means ``cn:``). The fingerprint wins over a SAN, a SAN over the CN: the
    more precise name decides when an operator configured several.
    """
    if not cert:
        return None
    by_fingerprint, by_san, by_cn = _certificate_namespaces(mapping)
    if der:
        hit = by_fingerprint.get(cert_fingerprint(der).lower())
        if hit:
            return hit
    sans, cns = _cert_names(cert)
    for san in sans:
        hit = by_san.get(san.lower())
        if hit:
            return hit
    for cn in cns:
        hit = by_cn.get(cn.lower())
        if hit:
            return hit
    return None


def _certificate_namespaces(mapping: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The mapping split into (fingerprint, SAN, CN) lookups, keys lowercased.

    WHY: a certificate's subject CN is chosen by whoever requested it; looked up against
    the whole mapping, a CN spelled ``sha256:<B's fingerprint>`` or ``san:<B's name>``
    would be taken for B. A CN is only ever compared with ``cn:`` (or bare) keys.
    """
    by_fingerprint: dict[str, str] = {}
    by_san: dict[str, str] = {}
    by_cn: dict[str, str] = {}
    for key, practice in mapping.items():
        k = key.strip().lower()
        if k.startswith("sha256:"):
            by_fingerprint[k] = practice
        elif k.startswith("san:"):
            by_san[k.removeprefix("san:")] = practice
        else:
            by_cn[k.removeprefix("cn:")] = practice
    return by_fingerprint, by_san, by_cn


def claimed_receiving_facility(payload: bytes) -> str:
    """MSH-6 (receiving facility, first component) of an HL7 v2 message; "" when absent or unreadable."""
    if not payload.startswith(b"MSH") or len(payload) < 8:
        return ""
    fs = payload[3:4]
    end = min((i for i in (payload.find(b"\r"), payload.find(b"\n")) if i >= 0), default=len(payload))
    fields = payload[:end].split(fs)
    if len(fields) <= 5:
        return ""
    comp = payload[4:5] or b"^"
    return fields[5].split(comp)[0].decode("latin-1").strip()
