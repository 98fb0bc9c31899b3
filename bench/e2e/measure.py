"""What a run measures besides time: CPU by process and by thread, the Kafka records per input, percentiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# the other processes of the run, by role (the broker nodes, the registry, the gateways, this
# bench process: its MLLP senders and FlowEvent reader): their CPU per message is recorded beside
# the worker's, since on one 2-core machine they share the cores the worker would need
OTHERS: dict[str, list[int]] = {}


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads by kind, from ``/proc/<pid>/task/*/stat``:
    ``librdkafka`` (threads librdkafka names ``rdk:*``), ``rocksdb``, ``interpreter`` (every thread
    Python started: the event loop, aiokafka's consumer thread, the delivery-report poller; they
    also run the C extensions they call, librdkafka's ``produce``/``poll`` and fastavro included),
    and ``exited`` (the process total less its live threads: threads that ended)."""
    out = {"librdkafka": 0.0, "rocksdb": 0.0, "interpreter": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "librdkafka" if name.startswith("rdk:") else "rocksdb" if name.startswith("rocksdb") else "interpreter"
        out[kind] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    out["exited"] = max(0.0, cpu_seconds(pid) - sum(out.values()))
    return {k: round(v, 2) for k, v in out.items()}


def cpu_by_role(worker_pids: list[int]) -> dict[str, float | None]:
    """CPU seconds so far of the worker(s) and of every process in :data:`OTHERS`, by role;
    None for a role one of whose processes cannot be read (it ended)."""
    roles = {"worker": worker_pids, **OTHERS}
    out: dict[str, float | None] = {}
    for role, pids in roles.items():
        try:
            out[role] = sum(cpu_seconds(pid) for pid in pids)
        except OSError:
            out[role] = None
    return out


def cpu_split(
    before: dict[str, float | None], after: dict[str, float | None], messages: int
) -> dict[str, float | None]:
    """CPU-ms per message by role between two :func:`cpu_by_role` readings (None where a process
    of the role could not be read at either: never a silently negative figure), and ``all``,
    the sum of the known ones."""
    split: dict[str, float | None] = {}
    for role, end in after.items():
        start = before.get(role)
        split[role] = None if start is None or end is None else round((end - start) * 1000 / messages, 3)
    split["all"] = round(sum(v for v in split.values() if v is not None), 3)
    return split


def topic_ends(bootstrap: str, marker: str) -> dict[str, int]:
    """Records so far on every topic whose name contains ``marker`` (the run's topic prefix: its
    own topics and the worker's table changelogs, ``bench-<prefix>-<table>-changelog``): the sum
    of its partitions' high watermarks (read committed)."""
    from confluent_kafka.admin import AdminClient

    from practiceflow.streams.positions import high_watermarks

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=30).topics
    tps = [(name, p) for name, meta in topics.items() if marker in name for p in meta.partitions]
    ends: dict[str, int] = {}
    for (topic, _p), high in high_watermarks(admin, tps).items():
        ends[topic] = ends.get(topic, 0) + high
    return ends


def records_per_input(
    before: dict[str, int], after: dict[str, int], inputs: int, prefix: str, worker_reads: set[str]
) -> dict[str, Any]:
    """Kafka records written per input between two :func:`topic_ends` readings, by topic (the
    prefix dropped from a topic's name: ``raw.hl7v2``, ``norm.observation``, ``bench-<prefix>-
    seen-messages-changelog`` -> ``seen-messages-changelog``), their total, and how many of them
    sit on a topic the worker's agents consume (``worker_reads``, topic suffixes): each of
    those is written once and read once more by the same worker."""
    counts: dict[str, int] = {}
    for topic, end in after.items():
        n = end - before.get(topic, 0)
        if n:
            short = topic.split(f"{prefix}.", 1)[1] if f"{prefix}." in topic else topic.split(f"{prefix}-", 1)[-1]
            counts[short] = counts.get(short, 0) + n
    return {
        "by_topic": {t: round(n / inputs, 2) for t, n in sorted(counts.items(), key=lambda kv: -kv[1])},
        "written": round(sum(counts.values()) / inputs, 2),
        "read_again_by_the_worker": round(sum(n for t, n in counts.items() if t in worker_reads) / inputs, 2),
    }


def worker_input_suffixes() -> set[str]:
    """Topic suffixes of the kinds the worker's agents consume (``catalog.is_agent_input``, by
    kind: a normalized topic no agent reads yet counts too, none of which carries the HL7 mix); a
    topic two agents read counts once."""
    from practiceflow.streams import catalog

    return {spec.suffix for spec in catalog.CATALOG if catalog.is_agent_input(spec)}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]
