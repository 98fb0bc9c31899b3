"""The record headers that name an output's input: the contract between the worker and the sink.

Every output of the worker's normalizer (and of the agents that use ``Outbox.made_from``,
``streams/offsets.py``) carries the Kafka position of the input it was made from and its number
among that input's outputs. Two readers depend on them: the patient-context barrier
(``streams/workflows/context.py``) and the ClickHouse sink (``sinks/clickhouse.py``), which writes
a replay's copy of an output once. Here, in ``schemas/``, because both sides of that contract
import it and ``sinks/`` must not import ``streams/``.
"""

from __future__ import annotations

# The input record an output was made from (``topic:partition:offset``), as a Kafka header on
# every output of the normalizer (records, handoff items, dead letters, flow and audit events,
# retries, commands: ``Outbox.made_from``). Two readers: the patient-context barrier, on normalized
# records (a workflow event needs its own feed's raw partition processed only up to the raw record
# it came from, not up to that partition's high watermark, which keeps moving while requests
# arrive: streams/workflows/context.py), and the ClickHouse sink, with :data:`SEQ_HEADER`.
SOURCE_HEADER = "pf-source"


def source_header(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The :data:`SOURCE_HEADER` for a record made from ``topic``/``partition``/``offset``."""
    return [(SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode())]


def source_of(headers: object) -> tuple[str, int, int] | None:
    """The (topic, partition, offset) in a record's :data:`SOURCE_HEADER`, from Faust's
    ``Message.headers`` (a list of pairs or a mapping); None when absent or malformed (a
    record written before the header existed, or by another producer)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:  # type: ignore[attr-defined]
        if name != SOURCE_HEADER or not isinstance(value, bytes | bytearray):
            continue
        topic, _, rest = bytes(value).decode("utf-8", "replace").rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if topic and partition.isdigit() and rest.isdigit():
            return topic, int(partition), int(rest)
        return None
    return None


# Which of its input's outputs a record is (0, 1, 2, ... in the order the handler sent them),
# next to :data:`SOURCE_HEADER`. Together they name one output of one input, whichever Kafka
# offset it landed at: a batch handled again after a crash (its outputs confirmed, its de-dup
# marks not) sends the same outputs again at new offsets, and the ClickHouse sink recognises
# them by this name (sinks/clickhouse.py) instead of writing their rows twice.
SEQ_HEADER = "pf-seq"

Origin = tuple[str, int, int, int]  # (input topic, partition, offset, output seq)


_SEQ = [(SEQ_HEADER, str(n).encode()) for n in range(256)]  # the common ones, built once


def seq_header(seq: int) -> tuple[str, bytes]:
    """The :data:`SEQ_HEADER` of output ``seq`` of an input."""
    return _SEQ[seq] if seq < len(_SEQ) else (SEQ_HEADER, str(seq).encode())


def origin_headers(topic: str, partition: int, offset: int, seq: int) -> list[tuple[str, bytes]]:
    """:data:`SOURCE_HEADER` and :data:`SEQ_HEADER` for output ``seq`` of that input."""
    return [*source_header(topic, partition, offset), seq_header(seq)]


def origin_of(headers: object) -> Origin | None:
    """(topic, partition, offset, seq) from a record's headers (confluent-kafka's list of pairs
    or Faust's); None unless both headers are there and well formed (records from before the
    headers, or from producers that do not write them, are named by their own position)."""
    source = source_of(headers)
    if source is None:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:  # type: ignore[attr-defined]
        if name == SEQ_HEADER and isinstance(value, bytes | bytearray) and bytes(value).isdigit():
            return (*source, int(bytes(value)))
    return None


# On a normalized record whose patient context the normalizer folded itself, in the batch that
# wrote the record (``streams/workflows/context.py``, ``PatientContexts.fold_upstream``): the
# value is the worker group (Faust app id) whose tables hold that fold. The record and its context
# write are confirmed together, before the input is marked and committed, so that group's context
# agent must not fold it a second time. Any other reader folds it as before: a record without the
# header (an earlier version, another producer), or one folded by another group (a new group
# rebuilding its tables from the log has none of that group's folds).
CONTEXT_HEADER = "pf-context"


def folded_header(group: str) -> tuple[str, bytes]:
    """The :data:`CONTEXT_HEADER` of a record whose context ``group``'s tables hold."""
    return (CONTEXT_HEADER, group.encode())


def folded_by(headers: object) -> str | None:
    """The worker group whose tables folded this record's context (:data:`CONTEXT_HEADER`), from
    Faust's list of pairs or mapping, or confluent-kafka's list; None when absent."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:  # type: ignore[attr-defined]
        if name == CONTEXT_HEADER and isinstance(value, bytes | bytearray):
            return bytes(value).decode("utf-8", "replace")
    return None
