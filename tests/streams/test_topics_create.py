"""``create_topics`` waits for a broker that is not ready instead of exiting (no broker here: the
admin client is a stand-in). A gateway started with its broker under load exited at start-up
twice in CI (a metadata request that timed out, an "Unknown broker error" on create)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from practiceflow.streams import topics
from practiceflow.streams.catalog import CATALOG


class _Done:
    def result(self, timeout: float | None = None) -> None:
        return None


def _admin(failures: list[KafkaError]) -> type:
    class Admin:
        def __init__(self, _conf: dict[str, Any]) -> None:
            pass

        def list_topics(self, timeout: float) -> Any:
            if failures:
                raise KafkaException(failures.pop(0))
            return SimpleNamespace(topics={})

        def create_topics(self, new: list[Any], operation_timeout: float) -> dict[str, _Done]:
            return {t.topic: _Done() for t in new}

    return Admin


def test_a_broker_not_ready_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [KafkaError(KafkaError._TIMED_OUT), KafkaError(KafkaError.UNKNOWN)]
    monkeypatch.setattr(topics, "AdminClient", _admin(failures))
    monkeypatch.setattr(topics.time, "sleep", lambda _s: None)
    out = topics.create_topics("b:9092", "pf", 4, 1)
    assert failures == [] and len(out) == len(CATALOG) and set(out.values()) == {"created"}


def test_any_other_error_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), KafkaError(KafkaError._TIMED_OUT)]
    monkeypatch.setattr(topics, "AdminClient", _admin(failures))
    monkeypatch.setattr(topics.time, "sleep", lambda _s: None)
    with pytest.raises(KafkaException) as got:
        topics.create_topics("b:9092", "pf", 4, 1)
    assert got.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED and len(failures) == 1


def test_a_broker_still_not_ready_after_the_wait_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [KafkaError(KafkaError._TIMED_OUT)] * 100
    monkeypatch.setattr(topics, "AdminClient", _admin(failures))
    monkeypatch.setattr(topics.time, "sleep", lambda _s: None)
    with pytest.raises(KafkaException):
        topics.create_topics("b:9092", "pf", 4, 1, wait=0.0)
