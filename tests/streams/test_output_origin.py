"""Outputs name the input they were made from (``Outbox.made_from``; ``pf-source``, ``pf-seq``).

The ClickHouse sink writes a worker replay's copies of an output once because each copy carries
the same name (``sinks/clickhouse.py``); these pin how the names are made and read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.serializers.codecs import Codec

from practiceflow.schemas.headers import SEQ_HEADER, SOURCE_HEADER, origin_of, source_header
from practiceflow.streams.offsets import Outbox


class _Bytes(Codec):
    def _dumps(self, obj: Any) -> bytes:
        return repr(obj).encode()

    def _loads(self, s: bytes) -> Any:
        return s


class _Topic:
    value_serializer = _Bytes()

    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _Producer:
    """Records what the Outbox hands librdkafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[tuple[str, bytes]] | None]] = []

    def ticket(self) -> object:
        return object()

    def produce(self, ticket: object, name: str, key: bytes, value: bytes, partition: int, headers: Any) -> None:
        self.sent.append((name, headers))


def test_sends_inside_made_from_are_named_and_numbered_per_input():
    producer = _Producer()
    box = Outbox(producer)  # type: ignore[arg-type]
    out, flow = _Topic("pf.norm.observation"), _Topic("pf.analytics.flow")

    async def go() -> None:
        await box.send(out, "k", {"v": 0}, 0)  # outside: no headers at all
        with box.made_from("pf.raw.hl7v2", 2, 40):
            await box.send(out, "k", {"v": 1}, 2)
            await box.send(flow, "k", {"v": 2}, 2, headers=[(SOURCE_HEADER, b"stale:0:0"), ("x-other", b"kept")])
            with box.made_from("pf.retry.hl7v2", 2, 7):  # nested: its own numbering
                await box.send(out, "k", {"v": 3}, 2)
            await box.send(out, "k", {"v": 4}, 2)  # the outer input again, numbering continues
        with box.made_from("pf.raw.hl7v2", 2, 41):  # the next input starts at 0
            await box.send(out, "k", {"v": 5}, 2)
        with box.made_from("pf.raw.fax", 0, 3, numbered=False):  # a feed whose replay may differ
            await box.send(out, "k", {"v": 6}, 0)

    asyncio.run(go())
    names = [origin_of(h) for _, h in producer.sent]
    assert producer.sent[0][1] is None
    assert names[1:6] == [
        ("pf.raw.hl7v2", 2, 40, 0),
        ("pf.raw.hl7v2", 2, 40, 1),
        ("pf.retry.hl7v2", 2, 7, 0),
        ("pf.raw.hl7v2", 2, 40, 2),
        ("pf.raw.hl7v2", 2, 41, 0),
    ]
    assert ("x-other", b"kept") in producer.sent[2][1]
    assert [h for h in producer.sent[2][1] if h[0] == SOURCE_HEADER] == source_header("pf.raw.hl7v2", 2, 40)
    # unnumbered: the source for the context barrier, no name for the sink
    assert producer.sent[6][1] == source_header("pf.raw.fax", 0, 3) and names[6] is None


def test_a_name_is_read_only_when_whole():
    src = source_header("pf.raw.hl7v2", 1, 9)
    assert origin_of([*src, (SEQ_HEADER, b"3")]) == ("pf.raw.hl7v2", 1, 9, 3)
    assert origin_of({SOURCE_HEADER: b"pf.raw.hl7v2:1:9", SEQ_HEADER: b"0"}) == ("pf.raw.hl7v2", 1, 9, 0)
    assert origin_of(src) is None  # no number
    assert origin_of([*src, (SEQ_HEADER, b"x")]) is None
    assert origin_of([(SOURCE_HEADER, b"no-offset"), (SEQ_HEADER, b"1")]) is None
    assert origin_of(None) is None


def test_every_feed_but_fax_numbers_its_outputs_on_raw_and_retry_agents(monkeypatch, tmp_path):
    """The fax feed's OCR runs under a time limit, so a replay may carry a better version, which
    must win in FINAL as in the topics: its outputs are not numbered (``Pipeline.names_outputs``).

    Also: the retry agents leave the patient-context fold to the context agent and the raw agents
    fold (``fold_contexts``): retries sleep out backoffs between inputs, and their records are
    outside the barrier's first stage (tests/streams/test_context_upstream.py)."""
    from practiceflow.settings import Settings
    from practiceflow.streams import app as app_module
    from practiceflow.streams.normalize_agent import Normalizer

    asked: dict[str, bool | None] = {}
    folds: dict[str, bool] = {}

    async def normalizer_run(self: Normalizer, stream: str, committer: object, **kw: Any) -> None:
        asked[stream] = kw.get("name_outputs")
        folds[stream] = kw.get("fold_contexts", True)

    monkeypatch.setattr(Normalizer, "run", normalizer_run)
    pipeline = app_module.Pipeline(Settings(state_dir=tmp_path), "127.0.0.1:1", "http://127.0.0.1:1")
    try:
        for name, agent in pipeline.app.agents.items():
            if name.startswith(("normalize-", "retry-")):
                asyncio.run(agent.fun(name))
    finally:
        pipeline.close()
    assert len(asked) == 10  # five feeds, a raw and a retry agent each
    assert {name for name, numbered in asked.items() if not numbered} == {
        name for name in asked if name.endswith((".raw.fax", ".retry.fax"))
    }
    assert all(isinstance(v, bool) for v in asked.values())
    assert {name for name, fold in folds.items() if not fold} == {n for n in folds if n.startswith("retry-")}
