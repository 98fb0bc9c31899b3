"""Dead letters for operators: list, show (without PHI), redrive after a fix.

The dead-letter topics (``<prefix>.dlq.<feed>``) are the source of truth: they hold the
original bytes, which the ClickHouse table deliberately does not. A practice's letters
all sit on one partition (``catalog.partition_for``), so listing one practice reads one
partition per feed.

A dead letter's id is ``<feed>:<partition>:<offset>``: unique, stable for the topic's
retention (90 days), and free of PHI.

Redrive re-sends the original bytes to the feed's raw topic as a RawMessage with the
same message id and a fresh ``received_at``, marked with the ``pf-redrive`` header, so it
takes the same path as any input (normalizer, handoff rules, de-duplication keys). The
worker honours the marker: a dead-lettered id is in its de-dup table, and without the
marker the redrive would be counted as a duplicate and dropped. Every redrive is audited.
"""

from __future__ import annotations

import getpass
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer

from practiceflow.processors.audit import audit_event
from practiceflow.processors.base import content_id
from practiceflow.processors.deadletter import headers_from_details
from practiceflow.processors.dedup import REDRIVE_HEADER
from practiceflow.streams import catalog, claimcheck
from practiceflow.streams.clock import now_ms
from practiceflow.streams.positions import position
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde
from practiceflow.streams.topic_reader import Span, read_spans, reader_consumer, spans_to_end

# detail keys whose values never carry PHI (a folder file name or a reason text might)
SAFE_DETAILS = {"gateway", "content_type", "header.message_type", "header.event_type"}


@dataclass(frozen=True)
class Letter:
    """One dead letter as read from its topic."""

    id: str
    topic: str
    partition: int
    offset: int
    value: dict[str, Any]

    @property
    def feed(self) -> str:
        return str(self.value["feed"])

    @property
    def practice_id(self) -> str:
        return str(self.value["practice_id"])

    @property
    def message_id(self) -> str:
        return str(self.value.get("message_id") or content_id(self.value["payload"]))


def letter_id(feed: str, partition: int, offset: int) -> str:
    return f"{feed}:{partition}:{offset}"


def parse_letter_id(text: str) -> tuple[str, int, int]:
    feed, partition, offset = text.split(":")
    if feed not in catalog.FEEDS:
        raise ValueError(f"unknown feed {feed!r} in dead-letter id {text!r}")
    return feed, int(partition), int(offset)


def read_letters(
    bootstrap: str,
    serde: AvroSerde,
    prefix: str,
    *,
    practice: str | None = None,
    feed: str | None = None,
    timeout: float = 30.0,
) -> list[Letter]:
    """Every dead letter currently in the topics (of one practice and/or feed), oldest first."""
    feeds = [feed] if feed else list(catalog.FEEDS)
    consumer = reader_consumer(bootstrap, "dlq")
    try:
        spans: list[Span] = []
        for f in feeds:
            spans += spans_to_end(consumer, catalog.dlq_topic(f).name(prefix), timeout, practice_id=practice)
        return [
            letter
            for letter in _read(consumer, serde, spans, timeout)
            if practice is None or letter.practice_id == practice
        ]
    finally:
        consumer.close()


def _read(consumer: Consumer, serde: AvroSerde, spans: list[Span], timeout: float) -> list[Letter]:
    out: list[Letter] = []
    try:
        for m in read_spans(consumer, spans, timeout):
            topic, partition, offset = position(m)
            feed = topic.rsplit(".", 1)[-1]
            out.append(
                Letter(
                    letter_id(feed, partition, offset),
                    topic,
                    partition,
                    offset,
                    serde.decode(m.value() or b"", "DeadLetter"),
                )
            )
    except TimeoutError as exc:
        raise TimeoutError(f"could not read the dead-letter topics to their end in {timeout}s") from exc
    return out


def get_letters(
    bootstrap: str, serde: AvroSerde, prefix: str, ids: Iterable[str], timeout: float = 30.0
) -> list[Letter]:
    """The letters with these ids (``feed:partition:offset``); a missing one raises KeyError."""
    consumer = reader_consumer(bootstrap, "dlq")
    out: list[Letter] = []
    try:
        for text in ids:
            feed, partition, offset = parse_letter_id(text)
            topic = catalog.dlq_topic(feed).name(prefix)
            got = _read(consumer, serde, [Span(topic, partition, offset, offset + 1)], timeout)
            if not got or got[0].offset != offset:
                raise KeyError(text)
            out.append(got[0])
    except TimeoutError as exc:
        raise KeyError(str(exc)) from exc
    finally:
        consumer.close()
    return out


# ---------------------------------------------------------------------------- presentation (no PHI)
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(letters: list[Letter]) -> list[tuple[str, str, str, int, str]]:
    """(practice, feed, reason_code, count, newest failed_at) groups, newest group first."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for letter in letters:
        v = letter.value
        groups[(v["practice_id"], v["feed"], v["reason_code"])].append(int(v["failed_at"]))
    rows = [(p, f, r, len(ts), max(ts)) for (p, f, r), ts in groups.items()]
    rows.sort(key=lambda row: row[4], reverse=True)
    return [(p, f, r, n, _iso(newest)) for p, f, r, n, newest in rows]


def describe(letter: Letter, *, show_payload: bool = False) -> dict[str, Any]:
    """What ``dlq show`` prints: ids, codes, sizes and a hash; the payload, reason text and
    free-form details only when asked (they can quote PHI)."""
    v = letter.value
    payload: bytes = v["payload"] or b""
    details = v.get("details") or {}
    out: dict[str, Any] = {
        "id": letter.id,
        "practice_id": v["practice_id"],
        "feed": v["feed"],
        "stage": v["stage"],
        "reason_code": v["reason_code"],
        "message_id": letter.message_id,
        "failed_at": _iso(int(v["failed_at"])),
        "source": f"{v.get('source_topic') or '-'}/{v.get('source_partition')}@{v.get('source_offset')}",
        "payload_bytes": v.get("payload_size") or len(payload),
        "payload_sha256": v.get("payload_sha256") or hashlib.sha256(payload).hexdigest(),
        "payload_uri": v.get("payload_uri"),
        "reason_bytes": len(v.get("reason") or ""),
        "details": {
            k: (val if k in SAFE_DETAILS or show_payload else "<hidden>") for k, val in sorted(details.items())
        },
        "redrive_of": (details.get(f"header.{REDRIVE_HEADER}") or None),
    }
    if show_payload:
        out["reason"] = v.get("reason")
        out["payload"] = payload.decode("utf-8", "replace")
    return out


# ---------------------------------------------------------------------------- redrive
class HeadOnly(ValueError):
    """A dead letter that keeps only the head of its original and no document-store copy."""


def head_only(letter: Letter) -> bool:
    """True when the letter's payload is not the whole original and nothing else holds it.

    WHY: the gateway keeps only the first bytes of an oversize input (``head_only``) or
    drops even those (``head_dropped``); without a ``payload_uri`` the whole original is
    nowhere, and re-sending the head would feed a truncated message in as if whole.
    """
    v = letter.value
    details = v.get("details") or {}
    partial = bool(details.get("head_only")) or bool(details.get("head_dropped"))
    return partial and not claimcheck.is_claim_checked(v)


def split_redrivable(letters: Iterable[Letter]) -> tuple[list[Letter], list[Letter]]:
    """(letters a redrive can send whole, head-only letters it must refuse)."""
    ok: list[Letter] = []
    refused: list[Letter] = []
    for letter in letters:
        (refused if head_only(letter) else ok).append(letter)
    return ok, refused


def redrive_record(letter: Letter, received_at: int) -> dict[str, Any]:
    """The RawMessage a redrive sends: the original bytes, the same message id, a fresh
    ``received_at``, the original headers, and the redrive marker.

    Raises ``HeadOnly`` for a letter that keeps only part of its original (see ``head_only``).
    """
    if head_only(letter):
        raise HeadOnly(f"dead letter {letter.id} keeps only the head of its original; it cannot be redriven")
    v = letter.value
    details = v.get("details") or {}
    headers = headers_from_details(details)
    headers[REDRIVE_HEADER] = letter.id
    from practiceflow.streams.gateways.base import CONTENT_TYPES

    return {
        "practice_id": v["practice_id"],
        "feed": v["feed"],
        "message_id": letter.message_id,
        "received_at": received_at,
        "content_type": details.get("content_type") or CONTENT_TYPES.get(v["feed"], "application/octet-stream"),
        "payload": v["payload"],
        "headers": headers,
        # a large original waits in the document store: the redrive carries its reference
        # (claim check) and the worker reads it back, as for the first delivery
        **({"payload": b"", **claimcheck.reference(v)} if claimcheck.is_claim_checked(v) else {}),
    }


def newest_per_message(letters: Iterable[Letter]) -> list[Letter]:
    """One letter per (practice, feed, message id): the newest (a message dead-lettered
    again after a failed redrive is redriven once)."""
    newest: dict[tuple[str, str, str], Letter] = {}
    for letter in letters:
        key = (letter.practice_id, letter.feed, letter.message_id)
        if key not in newest or letter.value["failed_at"] >= newest[key].value["failed_at"]:
            newest[key] = letter
    return sorted(newest.values(), key=lambda lt: (lt.feed, lt.partition, lt.offset))


def redrive(
    producer: DurableProducer, serde: AvroSerde, prefix: str, letters: Iterable[Letter], *, operator: str | None = None
) -> list[str]:
    """Re-send each letter to its feed's raw topic and audit it; returns the message ids sent.

    Each send is acknowledged by Kafka (acks=all) before its audit event is written, and the
    audit write must succeed too: a redrive nobody can trace is not allowed to happen silently.
    """
    who = operator or getpass.getuser()
    sent: list[str] = []
    for letter in letters:
        raw = redrive_record(letter, now_ms())
        raw_topic = catalog.raw_topic(letter.feed).name(prefix)
        producer.send(
            raw_topic,
            f"{raw['practice_id']}/{raw['message_id']}",
            serde.encode(f"{raw_topic}-value", "RawMessage", raw),
            raw["practice_id"],
        )
        ev = audit_event(
            raw["practice_id"],
            actor=f"operator:{who}",
            action="redriven",
            entity_type="RawMessage",
            entity_id=raw["message_id"],
            reason=str(letter.value["reason_code"]),
            at=now_ms(),
            details={"dead_letter": letter.id, "feed": letter.feed, "stage": str(letter.value["stage"])},
        )
        audit_topic = catalog.BY_SUFFIX["audit.in"].name(prefix)
        producer.send(
            audit_topic, raw["practice_id"], serde.encode(f"{audit_topic}-value", "AuditEvent", ev), raw["practice_id"]
        )
        sent.append(raw["message_id"])
    return sent
