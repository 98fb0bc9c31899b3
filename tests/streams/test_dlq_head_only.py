"""`practiceflow dlq redrive` never re-sends the head of an original as if it were whole (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from practiceflow.streams import dlq


def _letter(n: int, details: dict[str, str], **extra: Any) -> dlq.Letter:
    value = {
        "practice_id": "clinic-a",
        "feed": "hl7v2",
        "message_id": f"m{n}",
        "payload": b"MSH|^~\\&|head",
        "details": {"gateway": "g", **details},
        "reason_code": "too_large",
        "stage": "gateway",
        "failed_at": n,
        **extra,
    }
    return dlq.Letter(id=f"l{n}", topic="p.dlq.hl7v2", partition=0, offset=n, value=value)


def test_a_head_only_letter_without_its_original_is_refused_and_counted() -> None:
    whole = _letter(1, {})
    head = _letter(2, {"head_only": "true", "original_bytes": "9999999"})
    dropped = _letter(3, {"head_dropped": "too_large"})
    checked = _letter(
        4, {"head_only": "true"}, payload_uri="file:///d/x", payload_size=9999999, payload_sha256="ab" * 32
    )
    for partial in (head, dropped):
        with pytest.raises(dlq.HeadOnly, match="keeps only the head"):
            dlq.redrive_record(partial, 5)
    assert dlq.redrive_record(whole, 5)["payload"] == b"MSH|^~\\&|head"
    assert dlq.redrive_record(checked, 5)["payload_uri"] == "file:///d/x"  # the store holds the whole original
    ok, refused = dlq.split_redrivable([whole, head, dropped, checked])
    assert [lt.id for lt in ok] == ["l1", "l4"] and [lt.id for lt in refused] == ["l2", "l3"]
