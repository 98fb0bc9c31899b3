"""The sample work-item consumer over the real broker: latest revision wins, tenants stay apart."""

from __future__ import annotations

import pytest

from practiceflow.processors.workflows.workitem import apply_decision, by_rule, new_item, option
from practiceflow.streams import catalog
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from practiceflow.streams.workitem_reader import open_by_queue, read_work_items

pytestmark = pytest.mark.broker


def _item(practice: str, subject: str, queue: str, priority: str = "routine", now: int = 1_000):
    return new_item(
        practice_id=practice,
        workflow="refill",
        subject=[subject],
        kind="refill.needs_review",
        queue=queue,
        priority=priority,
        title="Refill request",
        what_happened="A refill was requested.",
        produced_by=by_rule("refill.test", "1", "test"),
        source={"feed": "portal", "message_id": subject},
        now=now,
        options=[option("approve", "Renew"), option("reject", "Do not renew")],
    )


def test_reader_folds_revisions_and_keeps_practices_apart(stack, cfg):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    topic = catalog.BY_SUFFIX["handoff"].name(cfg.topic_prefix)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    a1 = _item("clinic-a", "r1", "clinician", now=1_000)
    a2 = _item("clinic-a", "r2", "clinician", priority="urgent", now=2_000)
    a3 = _item("clinic-a", "r3", "front_desk", now=3_000)
    done = apply_decision(
        a1,
        {
            "practice_id": "clinic-a",
            "decision_id": "d1",
            "item_id": a1["item_id"],
            "option": "approve",
            "actor": "dr.a",
            "decided_at": 5_000,
        },
    )
    other = _item("clinic-b", "r1", "clinician")  # same subject, another practice
    try:
        for it in (a1, a2, a3, done, other):
            key = f"{it['practice_id']}/{it['item_id']}"
            producer.send(topic, key, serde.encode(f"{topic}-value", "HandoffItem", it), it["practice_id"])
    finally:
        producer.close()
    items = read_work_items(stack.bootstrap, serde, cfg.topic_prefix, "clinic-a")
    assert set(items) == {a1["item_id"], a2["item_id"], a3["item_id"]}
    assert items[a1["item_id"]]["state"] == "done" and items[a1["item_id"]]["revision"] == 2
    queues = open_by_queue(items)
    assert [i["item_id"] for i in queues["clinician"]] == [a2["item_id"]]
    assert [i["item_id"] for i in queues["front_desk"]] == [a3["item_id"]]
    theirs = read_work_items(stack.bootstrap, serde, cfg.topic_prefix, "clinic-b")
    assert [i["practice_id"] for i in theirs.values()] == ["clinic-b"]
