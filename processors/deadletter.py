"""Dead-letter records: the original bytes plus a reason a person can act on (pure)."""

from __future__ import annotations

from typing import Any


def dead_letter(
    practice_id: str,
    feed: str,
    stage: str,
    reason_code: str,
    reason: str,
    payload: bytes,
    *,
    failed_at: int,
    message_id: str | None = None,
    source_topic: str | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    details: dict[str, str] | None = None,
    payload_uri: str | None = None,
    payload_size: int | None = None,
    payload_sha256: str | None = None,
) -> dict[str, Any]:
    """``payload_uri``/``payload_size``/``payload_sha256``: where the whole original is when
    ``payload`` holds only its head (or nothing), so a dead letter always fits its topic."""
    return {
        "practice_id": practice_id,
        "feed": feed,
        "stage": stage,
        "reason_code": reason_code,
        "reason": reason[:2000],
        "payload": payload,
        "message_id": message_id,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "failed_at": failed_at,
        "details": dict(details or {}),
        "payload_uri": payload_uri,
        "payload_size": payload_size,
        "payload_sha256": payload_sha256,
    }


HEADER_PREFIX = "header."  # details keys that carry the RawMessage's headers


def raw_header_details(raw: dict[str, Any]) -> dict[str, str]:
    """The RawMessage headers as dead-letter details, so a redrive can rebuild the message."""
    return {f"{HEADER_PREFIX}{k}": str(v) for k, v in (raw.get("headers") or {}).items()}


def headers_from_details(details: dict[str, str]) -> dict[str, str]:
    return {k[len(HEADER_PREFIX) :]: v for k, v in (details or {}).items() if k.startswith(HEADER_PREFIX)}
