"""Input records no reader understands become dead letters, not a stalled partition.

A raw or retry record whose bytes are not a Confluent-framed Avro record we can read
(wrong magic byte, truncated, a body that does not match its schema, a schema id the
registry does not know) used to raise inside Faust's decoder. Faust throws that into
the agent's stream; since the input topics are committed by their agents
(``streams/offsets.py``), the record stayed uncommitted, was delivered again after the
restart, and the partition never moved past it: every later message of every practice
on that partition waited behind one bad record.

:class:`TolerantAvroCodec` (the input topics' value codec) returns a marker instead;
the normalize agent turns it into a dead letter (stage ``normalize``, reason
``undecodable_record``) that keeps the undecodable bytes, the source position and the
decoder's reason, so the bytes are never lost and the partition keeps flowing.
A registry that cannot be *reached* is not a property of the record: that error still
propagates (the worker stops loudly and a restart tries again), nothing is dead-lettered.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry.error import SchemaRegistryError

from practiceflow.streams.serde import AvroCodec, SerdeError

UNDECODABLE = "__pf_undecodable__"
REASON_CODE = "undecodable_record"
UNKNOWN_PRACTICE = "_unknown"


class TolerantAvroCodec(AvroCodec):
    """The input topics' codec: undecodable bytes come out as a marker dict (see module doc)."""

    def _loads(self, s: bytes) -> Any:
        try:
            return self.serde.decode(s, self.record_type)
        except SerdeError as exc:
            return {UNDECODABLE: str(exc)[:500], "bytes": bytes(s)}
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:  # the registry answered: no such schema id
                return {UNDECODABLE: f"schema id not in the registry: {exc.error_message}"[:500], "bytes": bytes(s)}
            raise


def is_undecodable(value: Any) -> bool:
    return isinstance(value, dict) and UNDECODABLE in value


def as_raw_message(value: dict[str, Any], message: Any, practices: list[str], head_bytes: int) -> dict[str, Any]:
    """A RawMessage-shaped dict for the undecodable record, for the dead-letter path.

    The practice comes from the Kafka key (``<practice>/...``) when it names a configured
    practice, else ``_unknown`` (never a tenant guessed from content); the feed from the
    topic name (``<prefix>.raw.<feed>`` / ``<prefix>.retry.<feed>``); the id from the
    record's position, which is stable across replays."""
    key = message.key if isinstance(message.key, bytes | bytearray) else b""
    practice = bytes(key).split(b"/", 1)[0].decode("utf-8", "replace")
    if practice not in practices:
        practice = UNKNOWN_PRACTICE
    feed = message.topic.rsplit(".", 1)[-1]
    return {
        "practice_id": practice,
        "feed": feed,
        "message_id": f"undecodable-{message.topic}-{message.partition}-{message.offset}",
        "received_at": int((message.timestamp or 0) * 1000),
        "payload": value["bytes"][:head_bytes],
        "content_type": "application/octet-stream",
        "headers": {},
    }
