"""Watermarks are asked again while a partition's leader moves (a new topic, a restarted broker), instead
of failing the day, a crash check or the sink's lag probe."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from practiceflow.jobs import day_scope
from practiceflow.streams import positions


class FlakyProbe:
    def __init__(self, failures: int, code: int = KafkaError.NOT_LEADER_FOR_PARTITION) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def get_watermark_offsets(self, tp, timeout):
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code))
        return (0, 42)


def test_not_leader_yet_is_asked_again(monkeypatch):
    monkeypatch.setattr(positions.time, "sleep", lambda s: None)
    probe = FlakyProbe(failures=3)
    assert day_scope._high_water(probe, TopicPartition("t", 0), 1.0) == 42 and probe.calls == 4


def test_other_errors_are_raised_at_once():
    probe = FlakyProbe(failures=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        day_scope._high_water(probe, TopicPartition("t", 0), 1.0)
    assert probe.calls == 1


def test_a_restarted_brokers_transport_error_is_asked_again(monkeypatch):
    monkeypatch.setattr(positions.time, "sleep", lambda s: None)
    probe = FlakyProbe(failures=2, code=KafkaError._TRANSPORT)
    assert positions.watermarks(probe, TopicPartition("t", 0), 1.0) == (0, 42) and probe.calls == 3  # type: ignore[arg-type]
