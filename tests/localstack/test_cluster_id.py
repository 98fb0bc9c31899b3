"""KRaft cluster ids: never one the storage tool would read as an option."""

from __future__ import annotations

import uuid

from practiceflow.localstack import kafka


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    # uuid bytes whose base64 starts with "-" (0xf8 -> "-..."), then ordinary ones
    queue = [uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)]
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: queue.pop(0))
    cid = kafka.new_cluster_id()
    assert not cid.startswith("-") and len(cid) == 22 and not queue  # the dashed one was drawn and refused
    monkeypatch.undo()
    assert all(not kafka.new_cluster_id().startswith("-") for _ in range(2000))
