"""The context agent and the records the normalizer folded itself (``pf-context: <group>``).

The normalizer folds its batch's context records into the context tables and marks them with its
worker group; the context agent skips what its own group marked and folds everything else. The
record types a follower follows (prior auth: orders) stay with the agent, so the follower gets
them with the context they were folded into. No broker: the agent's collaborators are stand-ins;
``test_patient_context.py`` runs the whole path on the real broker; that the retry agents do
not fold is asserted in ``test_output_origin.py`` (the agents' arguments).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from practiceflow.processors.context import keys, snapshot
from practiceflow.schemas.headers import folded_header, source_header
from practiceflow.streams.workflows.context import CONTEXT_RECORD_TYPES, PatientContexts

PRACTICE = "p-up"
RAW = "pf.raw.hl7v2"
GROUP = "practiceflow-worker"
KEY = keys.patient_key(PRACTICE, "MRN1")


class _Message:
    def __init__(self, topic: str, offset: int, headers: list[tuple[str, bytes]]) -> None:
        self.topic, self.partition, self.offset, self.headers = topic, 0, offset, headers
        self.tp = TP(topic, 0)
        self.timestamp = 1_800_000_000.0


class _Event:  # Faust's events can be weakly referenced (in_event); SimpleNamespace cannot
    def __init__(self, value: dict[str, Any], message: _Message) -> None:
        self.value, self.message = value, message


class _Committer:
    generation = 1

    async def admit(self, events: list[Any]) -> list[Any]:
        return events

    async def commit(self, events: list[Any]) -> None:
        self.committed = events


class _Writes:
    def table_write(self, table: dict[str, Any], _ev: Any, key: str, value: Any) -> None:
        WRITTEN.append(key)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    async def confirm(self) -> list[Any]:
        return []


WRITTEN: list[str] = []


def _agent() -> Any:
    agent = object.__new__(PatientContexts)
    counts: dict[str, int] = {}
    agent.p = SimpleNamespace(
        cfg=SimpleNamespace(identity_policies={}),
        sensor=SimpleNamespace(touch=lambda _tp: None),
        outbox=_Writes,
        _count=lambda name, n: counts.__setitem__(name, counts.get(name, 0) + n),
        counts=counts,
    )
    agent._record_type = {rt: rt for rt in CONTEXT_RECORD_TYPES}
    agent._crosswalks = {}
    agent._generation = None
    agent.table = {}
    agent.index = {}
    agent.committer = _Committer()
    agent.group = GROUP
    agent.followers = []
    agent.upstream_types = frozenset(CONTEXT_RECORD_TYPES)
    return agent


OBSERVATION = {
    "practice_id": PRACTICE,
    "patient_id": "MRN1",
    "observation_id": "OBS-1",
    "code": {"code": "2160-0", "system": "LN"},
    "value_numeric": 1.1,
    "source": {"feed": "hl7v2"},
}
ORDER = {
    "practice_id": PRACTICE,
    "patient_id": "MRN1",
    "order_id": "ORD-1",
    "status": "active",
    "source": {"feed": "hl7v2"},
}


def _event(rt: str, record: dict[str, Any], offset: int, mark: list[tuple[str, bytes]]) -> _Event:
    return _Event(record, _Message(rt, offset, [*source_header(RAW, 0, offset), *mark]))


def test_a_record_its_own_group_folded_is_skipped_not_folded_again() -> None:
    WRITTEN.clear()
    agent = _agent()
    ev = _event("Observation", OBSERVATION, 5, [folded_header(GROUP)])
    asyncio.run(agent.process_batch([ev]))
    assert WRITTEN == [] and agent.table == {}
    assert agent.p.counts == {"context.skipped_folded_upstream": 1}
    assert agent.committer.committed == [ev]


@pytest.mark.parametrize(
    "mark",
    [[], [folded_header("practiceflow-worker-day-1a2b3c")]],
    ids=["no mark (an earlier version, a retry agent)", "folded by another worker group"],
)
def test_a_record_this_group_did_not_fold_is_folded_by_the_agent(mark: list[tuple[str, bytes]]) -> None:
    """A new group rebuilding its tables from the log has none of another group's folds."""
    WRITTEN.clear()
    agent = _agent()
    asyncio.run(agent.process_batch([_event("Observation", OBSERVATION, 5, mark)]))
    assert WRITTEN == [KEY]
    assert snapshot.from_json(agent.table[KEY]).latest_observation("2160-0")["value_numeric"] == 1.1


def test_a_followers_record_types_stay_with_the_agent_and_reach_the_follower_folded() -> None:
    agent = _agent()
    followed: list[tuple[str, Any]] = []

    async def follow(folded: list[tuple[Any, str, dict[str, Any], Any]]) -> None:
        followed.extend((rt, ctx) for _ev, rt, _rec, ctx in folded)

    agent.follow(("Order", "MedicationOrder"), follow)
    # the normalizer folds every other context type, and leaves these to the agent
    assert agent.upstream_types == frozenset(CONTEXT_RECORD_TYPES) - {"Order", "MedicationOrder"}
    asyncio.run(agent.process_batch([_event("Order", ORDER, 9, [])]))
    ((rt, ctx),) = followed
    assert rt == "Order" and ctx.patient_id == "MRN1" and "ORD-1" in ctx.orders
