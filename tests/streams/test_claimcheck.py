"""The worker's side of the claim check: resolve a reference, verify it, refuse what does not match."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import urlparse

import pytest

from practiceflow.processors.base import Rejected
from practiceflow.settings import Settings
from practiceflow.streams.claimcheck import check_in, reference, resolve, store_for


def _raw(practice: str, ref: dict) -> dict:
    return {"practice_id": practice, "feed": "hl7v2", "message_id": "m1", "payload": b"", **ref}


def test_reference_resolves_to_the_exact_bytes(tmp_path):
    cfg = Settings(state_dir=tmp_path)
    data = b"MSH|" + b"x" * 1000
    ref = check_in(store_for(cfg), "clinic-a", data)
    assert ref["payload_sha256"] == hashlib.sha256(data).hexdigest() and ref["payload_size"] == len(data)
    raw = _raw("clinic-a", ref)
    assert asyncio.run(resolve(raw, cfg))["payload"] == data
    assert reference(raw) == ref and reference({"payload": b"x"}) == {}
    small = {"practice_id": "clinic-a", "payload": b"inline"}
    assert asyncio.run(resolve(small, cfg)) is small


def test_tampered_missing_or_foreign_references_are_refused(tmp_path):
    cfg = Settings(state_dir=tmp_path)
    store = store_for(cfg)
    ref = check_in(store, "clinic-a", b"original bytes")
    with pytest.raises(Rejected) as foreign:  # practice B cannot claim practice A's document
        asyncio.run(resolve(_raw("clinic-b", ref), cfg))
    assert foreign.value.reason_code == "claim_check_invalid"
    with pytest.raises(Rejected) as wrong_size:
        asyncio.run(resolve(_raw("clinic-a", {**ref, "payload_size": 3}), cfg))
    assert wrong_size.value.reason_code == "claim_check_mismatch"
    Path(urlparse(ref["payload_uri"]).path).write_bytes(b"edited bytes")
    with pytest.raises(Rejected) as edited:
        asyncio.run(resolve(_raw("clinic-a", ref), cfg))
    assert edited.value.reason_code == "claim_check_invalid"  # the store's own hash check
    Path(urlparse(ref["payload_uri"]).path).unlink()
    with pytest.raises(Rejected) as gone:
        asyncio.run(resolve(_raw("clinic-a", ref), cfg))
    assert gone.value.reason_code == "claim_check_missing"
