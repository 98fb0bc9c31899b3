"""The chaos harness: distinct messages through the real gateways while processes die.

A 3-node KRaft cluster (replication 3, ``min.insync.replicas`` 2, producers ``acks=all``)
and the registry run in-process (:class:`~practiceflow.localstack.stack.LocalStack`);
``practiceflow gateways``, ``practiceflow worker --no-sink`` and ``practiceflow sink``
run as the shipped commands in child processes. Each *cycle* sends a stream of distinct
HL7 messages (ORU^R01 with 3 or 8 OBX, ADT^A04) over MLLP and, at a random point of it,
SIGKILLs one of: the worker, the sink, the gateways, or one broker; the victim is started
again after a random pause. The sender behaves like an interface engine: without an AA
(connection reset, timeout, AE) it reconnects and sends the same message again.

Checks (:class:`Checker`): after each cycle, every AA'd message has exactly one first
outcome (normalized or dead-lettered) and nothing beyond one outcome per copy on the raw
topics; at the end of a block of cycles (the sink stopped, so chdb can be opened), the
audit topic has no event id twice and every practice's chain verifies, and ClickHouse
holds one row per Kafka message (raw count) and one per distinct sort key (``FINAL``)
for every table the sink writes. ``bench/chaos.py`` runs it (≥ 20 cycles per kind);
``tests/test_chaos.py`` runs one cycle per kind in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from practiceflow.localstack.kafka import stop_process
from practiceflow.localstack.ports import free_port
from practiceflow.localstack.stack import LocalStack, StackInfo
from practiceflow.processors.audit import verify_chain
from practiceflow.processors.hl7.normalize import content_hash, message_id_for
from practiceflow.sampleday.senders import CR, FS, VT, ack_code
from practiceflow.schemas.headers import origin_of
from practiceflow.settings import REPO_ROOT
from practiceflow.sinks.clickhouse import TABLE_KEYS, ClickHouseSink, rows_for
from practiceflow.streams.clickhouse_sink import committed_lag, sink_topics
from practiceflow.streams.positions import watermarks
from practiceflow.streams.serde import AvroSerde, registry_client

KINDS = ("worker", "sink", "gateways", "broker")
FIRST_OUTCOMES = ("normalized", "dead_lettered")
PRACTICE = "clinic-chaos"


# ---------------------------------------------------------------------- messages
def hl7_message(seq: int, run: str, rng: random.Random) -> tuple[bytes, str]:
    """A distinct ORU^R01 (60 %, 3 or 8 OBX) or ADT^A04, and the message id the gateway gives it."""
    cid = f"{run}-{seq}"
    mrn = f"MRN{rng.randint(1, 400):04d}"
    stamp = f"20261201{seq // 3600 % 24:02d}{seq // 60 % 60:02d}{seq % 60:02d}"
    if rng.random() < 0.6:
        head = f"MSH|^~\\&|LAB|ACME LAB|EHR|CHAOS|{stamp}||ORU^R01|{cid}|P|2.5.1"
        segs = [
            head,
            f"PID|1||{mrn}^^^CHAOS^MR||Chaos^Pat^{chr(65 + seq % 26)}||19800101|F",
            f"ORC|RE|ORD{cid}|LAB{cid}",
            f"OBR|1|ORD{cid}|LAB{cid}|80048^Basic metabolic panel^CPT|||{stamp}",
        ]
        n_obx = 8 if rng.random() < 0.5 else 3
        for i in range(1, n_obx + 1):
            value = rng.randint(50, 250)
            flag = "H" if value > 200 else "N"
            segs.append(f"OBX|{i}|NM|2345-{i}^Test {i}^LN||{value}|mg/dL|70-200|{flag}|||F|||{stamp}")
    else:
        head = f"MSH|^~\\&|EHR|CHAOS|PF|CHAOS|{stamp}||ADT^A04|{cid}|P|2.5.1"
        segs = [
            head,
            f"EVN|A04|{stamp}",
            f"PID|1||{mrn}^^^CHAOS^MR||Chaos^Reg||19750101|M|||1 Main St^^Springfield^IL^62701",
            "PV1|1|O|CLINIC^^^CHAOS",
        ]
    raw = ("\r".join(segs) + "\r").encode()
    msh = head.split("|")
    return raw, message_id_for(msh[2], msh[3], cid, content_hash(raw))


@dataclass
class SendStats:
    acked: dict[str, int] = field(default_factory=dict)  # message id -> copies sent until its AA
    rejected: dict[str, str] = field(default_factory=dict)  # message id -> AR code (should stay empty)
    resends: int = 0
    reconnects: int = 0


async def send_stream(
    port: int, messages: list[tuple[bytes, str]], rate: float, stats: SendStats, give_up_s: float = 240.0
) -> None:
    """Send each message until it gets AA or AR, at ``rate`` messages per second, over one
    connection that is re-opened whenever it fails (like an interface engine)."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    interval = 1.0 / rate
    next_at = time.monotonic()
    for raw, mid in messages:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        deadline = time.monotonic() + give_up_s
        copies = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"message {mid} got no AA in {give_up_s}s")
            try:
                if reader is not None and writer is not None:
                    rd, wr = reader, writer
                else:
                    rd, wr = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                    reader, writer = rd, wr
                copies += 1
                wr.write(VT + raw + FS + CR)
                await wr.drain()
                ack = await asyncio.wait_for(rd.readuntil(FS + CR), 30)
                code = ack_code(ack[1:-2])
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                code = "lost"
            if code == "AA":
                stats.acked[mid] = stats.acked.get(mid, 0) + copies
                break
            if code == "AR":
                stats.rejected[mid] = code
                break
            stats.resends += 1
            if writer is not None and code == "lost":
                writer.close()
                writer = reader = None
                stats.reconnects += 1
            await asyncio.sleep(0.5)
    if writer is not None:
        writer.close()


# ---------------------------------------------------------------------- reading topics
def reconcile_clickhouse(
    sinks: TopicReader, types: dict[str, str], ch: ClickHouseSink
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]], list[str]]:
    """Compare ClickHouse with the sink topics read to their end: (rows per table, what the topics
    imply, problems). Raw rows must equal the distinct *outputs* (origin + sort key: a worker's
    replay re-sends outputs under their origin, and the sink writes each once) wherever those equal
    the distinct keys, and lie between the keys and the outputs elsewhere (rows of one key from
    different inputs, which a merge may have collapsed already); ``FINAL`` must equal the distinct
    keys; no two rows may share an origin and key. Shared by the chaos harness and the day-crash test."""
    rows: Counter = Counter()
    outputs: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    keys: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for (topic, value), origin in zip(sinks.items, sinks.origins, strict=True):
        for table, row in rows_for(types[topic], value, 0):
            rows[table] += 1
            key = tuple(row[c] for c in order_by(table))
            outputs[table].add((origin, key))
            keys[table].add(key)
    problems: list[str] = []
    got: dict[str, dict[str, int]] = {}
    for t in TABLE_KEYS:
        once = "origin_topic, origin_partition, origin_offset, origin_seq, origin_key"
        raw, distinct = ch.query(f"SELECT count(), uniqExact({once}) FROM {{db}}.{t}")[0]  # noqa: S608
        final = ch.query(f"SELECT count() FROM {{db}}.{t} FINAL")[0][0]  # noqa: S608 - our table names
        got[t] = {"raw": raw, "final": final, "rows_twice_for_one_output": raw - distinct}
        if raw != distinct:
            problems.append(f"clickhouse {t}: {raw - distinct} rows written twice for one output")
    expected = {t: {"messages": rows[t], "outputs": len(outputs[t]), "final": len(keys[t])} for t in TABLE_KEYS}
    for t in TABLE_KEYS:
        want, have = expected[t], got[t]
        if have["final"] != want["final"]:
            problems.append(f"clickhouse {t} FINAL {have['final']} != {want['final']} distinct keys")
        if want["outputs"] == want["final"] and have["raw"] != want["outputs"]:
            problems.append(f"clickhouse {t} raw {have['raw']} != {want['outputs']} outputs")
        if want["outputs"] != want["final"] and not want["final"] <= have["raw"] <= want["outputs"]:
            problems.append(f"clickhouse {t} raw {have['raw']} outside [{want['final']}, {want['outputs']}]")
    return got, expected, problems


class TopicReader:
    """Reads whole topics from offset 0 by assigned partitions (no group, so nothing is
    delivered twice by a rebalance), incrementally; keeps (topic, decoded value) and, beside
    it, the record's origin (``pf-source``/``pf-seq``: what the ClickHouse sink writes once)."""

    def __init__(self, bootstrap: str, topics: list[str], serde: AvroSerde) -> None:
        self.serde = serde
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"chaos-check-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 0,  # a killed broker is the point here, not news
            }
        )
        self.partitions = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in self.consumer.list_topics(t, timeout=20).topics[t].partitions
        ]
        self.consumer.assign(self.partitions)
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.origins: list[tuple[str, int, int, int]] = []  # per item: its origin, or its own position

    def poll(self, seconds: float = 0.5) -> int:
        n = 0
        for msg in self.consumer.consume(num_messages=5000, timeout=seconds):
            value, topic = msg.value(), msg.topic()
            if msg.error() is None and value is not None and topic is not None:
                self.items.append((topic, self.serde.decode(value)))
                self.origins.append(origin_of(msg.headers()) or (topic, msg.partition() or 0, msg.offset() or 0, 0))
                n += 1
        return n

    def read_to_end(self, timeout: float = 300.0) -> None:
        """Until every partition's position reaches its high-water mark, and the marks asked
        again then have not moved (a writer still finishing is followed to its end).

        The marks are asked once per round, not per poll: tens of partitions on a loaded
        machine make per-poll watermark requests the slow part."""
        deadline = time.monotonic() + timeout
        ends = self._ends()
        while True:
            at: dict[tuple[str, int], int] = {}
            while time.monotonic() < deadline:
                self.poll(1.0)
                at = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(self.partitions)}
                if all(end <= 0 or at[k] >= end for k, end in ends.items()):
                    break
            else:
                behind = {k: (at.get(k), end) for k, end in ends.items() if end > 0 and at.get(k, -1) < end}
                raise AssertionError(f"topics not read to their end in {timeout}s: {list(behind.items())[:5]}")
            again = self._ends()
            if again == ends:
                return
            ends = again

    def _ends(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): watermarks(self.consumer, tp, timeout=30)[1] for tp in self.partitions}

    def values(self) -> list[dict[str, Any]]:
        return [v for _, v in self.items]

    def close(self) -> None:
        self.consumer.close()


def outcomes_by_id(flow: list[dict[str, Any]]) -> dict[str, Counter]:
    by_id: dict[str, Counter] = defaultdict(Counter)
    for ev in flow:
        if ev["stage"] in (*FIRST_OUTCOMES, "duplicate"):
            by_id[ev["message_id"]][ev["stage"]] += 1
    return by_id


def _notable(log_text: str, n: int = 30) -> list[str]:
    """The last ``n`` lines of a process log that say something went wrong (for a failed check)."""
    marks = ("ERROR", "WARNING", "Traceback", "Error", "%3|", "%4|", "exited")
    return [ln[:300] for ln in log_text.splitlines() if any(m in ln for m in marks)][-n:]


def order_by(table: str) -> list[str]:
    return list(TABLE_KEYS[table])


# ---------------------------------------------------------------------- the system under test
@dataclass
class CycleResult:
    kind: str
    cycle: int
    sent: int
    acked: int
    resends: int
    kill_at_s: float
    down_s: float
    drained_s: float
    resumed_s: float | None  # restart -> first outcome written after it (worker kills)
    lost: int
    conflicting: int  # messages with both a normalized and a dead-lettered outcome
    rewritten: int  # messages whose (one) outcome was written again by a replay, same keys
    ok: bool
    problems: list[str]


class Chaos:
    """The stack, the three shipped processes, the sender and the checks."""

    def __init__(self, state: Path, *, seed: int = 8, log: Callable[[str], None] = print) -> None:
        self.state = Path(state)
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible kill schedule, not a secret
        self.log = log
        self.run = uuid.uuid4().hex[:6]
        self.seq = 0
        self.stack = LocalStack(self.state / "stack", nodes=3, cache_dir=REPO_ROOT / ".stack" / "cache")
        self.info: StackInfo | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {"web": free_port(), "mllp": free_port(), "http": free_port()}
        self.prefix = f"chaos{self.run}"
        self.group = f"chaos-{self.run}"
        self.acked: dict[str, int] = {}  # every AA'd message id over the run -> copies sent
        self.flow: TopicReader | None = None
        self.raw: TopicReader | None = None
        self.serde: AvroSerde | None = None
        self.self_exits: dict[str, int] = {}

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.info = self.stack.start()
        self.serde = AvroSerde(registry_client(self.info.registry_url))
        self.env = {
            **os.environ,
            "PRACTICEFLOW_CONFIG": str(self.state / "none.toml"),
            "PRACTICEFLOW_KAFKA_BOOTSTRAP": self.info.bootstrap,
            "PRACTICEFLOW_SCHEMA_REGISTRY_URL": self.info.registry_url,
            "PRACTICEFLOW_STATE_DIR": str(self.state / "app"),
            "PRACTICEFLOW_TOPIC_PREFIX": self.prefix,
            "PRACTICEFLOW_TOPIC_REPLICATION": "3",
            "PRACTICEFLOW_CONSUMER_GROUP": self.group,
            "PRACTICEFLOW_WEB_PORT": str(self.ports["web"]),
            "PRACTICEFLOW_MLLP_PORT": str(self.ports["mllp"]),
            "PRACTICEFLOW_HTTP_PORT": str(self.ports["http"]),
            "PRACTICEFLOW_PRACTICES": json.dumps([PRACTICE]),
            "PRACTICEFLOW_DEFAULT_PRACTICE_ID": PRACTICE,
            "PRACTICEFLOW_MLLP_PRACTICE_ID": PRACTICE,
            "PRACTICEFLOW_GATEWAY_TOKENS": json.dumps({PRACTICE: secrets.token_urlsafe(16)}),
        }
        self.spawn("gateways")  # creates the topics
        self.wait_http(f"http://127.0.0.1:{self.ports['http']}/healthz", "gateways")
        self.spawn("worker")
        self.wait_http(f"http://127.0.0.1:{self.ports['web']}/readyz", "worker")
        self.spawn("sink")
        raw_topics = [f"{self.prefix}.raw.hl7v2"]
        self.raw = TopicReader(self.info.bootstrap, raw_topics, self.serde)
        self.flow = TopicReader(self.info.bootstrap, [f"{self.prefix}.analytics.flow"], self.serde)

    def stop(self) -> None:
        for name in list(self.procs):
            stop_process(self.procs.pop(name), timeout=20)
        for reader in (self.flow, self.raw):
            if reader is not None:
                reader.close()
        self.stack.stop()

    def spawn(self, name: str) -> None:
        args = {"worker": ["worker", "--no-sink"], "sink": ["sink"], "gateways": ["gateways"]}[name]
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.state / "logs" / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "practiceflow.cli", *args],
                env=self.env,
                cwd=self.state,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_http(self, url: str, name: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready at {url}: {self.tail(name)}")

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.state / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def revive(self) -> None:
        """Start again a process that stopped by itself (a worker stops loudly when the broker
        did not confirm a batch's outputs; an orchestrator would restart it). Counted."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.self_exits[name] = self.self_exits.get(name, 0) + 1
                self.log(json.dumps({"self_exit": name, "rc": proc.returncode, "found_at": round(time.time(), 1)}))
                self.spawn(name)

    def kill(self, kind: str) -> Callable[[], None]:
        """SIGKILL the victim now; returns how to start it again."""
        if kind == "broker" and self.stack.kafka is not None:
            node = self.rng.choice(self.stack.kafka.nodes).node_id
            self.stack.kafka.kill_node(node)
            # a JVM on a loaded 2-core machine can take minutes to open its port
            return lambda: self.stack.kafka.restart_node(node, timeout=300)  # type: ignore[union-attr]
        proc = self.procs[kind]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        return lambda: self.spawn(kind)

    # -------------------------------------------------------------- one cycle
    def cycle(self, kind: str, number: int, *, messages: int = 100, rate: float = 25.0) -> CycleResult:
        if self.flow is None:
            raise RuntimeError("start() first")
        batch = []
        for _ in range(messages):
            self.seq += 1
            batch.append(hl7_message(self.seq, self.run, self.rng))
        stats = SendStats()
        span = messages / rate
        kill_at = self.rng.uniform(0.15, 0.85) * span
        down = self.rng.uniform(0.5, 3.0)
        started = time.monotonic()
        restart_at: list[float] = []

        async def chaos_monkey() -> None:
            await asyncio.sleep(kill_at)
            again = self.kill(kind)
            await asyncio.sleep(down)
            await asyncio.get_running_loop().run_in_executor(None, again)
            restart_at.append(time.time())

        async def both() -> None:
            await asyncio.gather(send_stream(self.ports["mllp"], batch, rate, stats), chaos_monkey())

        asyncio.run(both())
        self.acked.update(stats.acked)
        ids = set(stats.acked)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            self.flow.poll(0.5)
            got = outcomes_by_id(self.flow.values())
            if all(any(got.get(m, Counter())[s] for s in FIRST_OUTCOMES) for m in ids):
                break
            self.revive()
        drained = time.monotonic() - started
        # a process that stopped by itself during the cycle (counted): the drain loop above only
        # looks while outcomes are missing, and a sink that died on a broker kill left none missing
        self.revive()
        time.sleep(2)  # anything written twice shortly after shows up too
        self.flow.poll(1)
        got = outcomes_by_id(self.flow.values())
        resumed = None
        if restart_at and kind == "worker":
            after = [ev["at"] / 1000 for ev in self.flow.values() if ev["at"] / 1000 > restart_at[0]]
            resumed = round(min(after) - restart_at[0], 2) if after else None
        problems = []
        lost = [m for m in ids if not any(got.get(m, Counter())[s] for s in FIRST_OUTCOMES)]
        if lost:
            problems.append(f"{len(lost)} AA'd messages without an outcome")
        mixed = [m for m in ids if sum(1 for s in FIRST_OUTCOMES if got.get(m, Counter())[s]) > 1]
        if mixed:
            problems.append(f"{len(mixed)} messages both normalized and dead-lettered")
        rewritten = [m for m in ids if sum(got.get(m, Counter())[s] for s in FIRST_OUTCOMES) > 1]
        if stats.rejected:
            problems.append(f"{len(stats.rejected)} messages refused (AR)")
        result = CycleResult(
            kind=kind,
            cycle=number,
            sent=len(batch),
            acked=len(ids),
            resends=stats.resends,
            kill_at_s=round(kill_at, 2),
            down_s=round(down, 2),
            drained_s=round(drained, 1),
            resumed_s=resumed,
            lost=len(lost),
            conflicting=len(mixed),
            rewritten=len(rewritten),
            ok=not problems,
            problems=problems,
        )
        self.log(json.dumps(asdict(result)))
        return result

    # -------------------------------------------------------------- whole-run checks
    def check_all(self) -> dict[str, Any]:
        """Outcomes of every AA'd message of the run, the audit chain, ClickHouse (raw and FINAL).

        Stops the sink (chdb is one process at a time) once it has caught up, and starts it
        again afterwards."""
        if self.info is None or self.serde is None or self.flow is None or self.raw is None:
            raise RuntimeError("start() first")
        problems: list[str] = []
        lag_topics = list(sink_topics(self.prefix))
        deadline = time.monotonic() + 180
        lag = committed_lag(self.info.bootstrap, f"{self.group}-clickhouse-sink", lag_topics)
        lags = [lag]
        while lag and time.monotonic() < deadline:
            time.sleep(1)
            self.revive()  # a process that stopped by itself after the last cycle (counted, as an orchestrator would)
            lag = committed_lag(self.info.bootstrap, f"{self.group}-clickhouse-sink", lag_topics)
            lags.append(lag)
        if lag:
            problems.append(f"sink {lag} behind (lag {lags[0]} -> {lags[len(lags) // 2]} -> {lag})")
            self.log(json.dumps({"sink_behind_log_tail": _notable(self.tail("sink", 200_000))}))
        stop_process(self.procs.pop("sink"), timeout=30)
        try:
            # 1. one outcome per raw copy, one first outcome per AA'd message
            self.raw.read_to_end()
            self.flow.read_to_end()
            copies = Counter(v["message_id"] for v in self.raw.values())
            got = outcomes_by_id(self.flow.values())
            lost = [m for m in self.acked if not any(got.get(m, Counter())[s] for s in FIRST_OUTCOMES)]
            conflicting = [m for m, c in got.items() if sum(1 for s in FIRST_OUTCOMES if c[s]) > 1]
            rewritten = [m for m, c in got.items() if sum(c[s] for s in FIRST_OUTCOMES) > 1]
            stray = [m for m in got if m not in copies]
            if lost:
                problems.append(f"{len(lost)} AA'd messages without an outcome")
            if conflicting:
                problems.append(f"{len(conflicting)} messages both normalized and dead-lettered")
            if stray:
                problems.append(f"{len(stray)} outcomes of messages never on a raw topic")
            # 2. the audit chain
            audit_reader = TopicReader(self.info.bootstrap, [f"{self.prefix}.audit"], self.serde)
            audit_reader.read_to_end()
            audit_reader.close()
            audit = audit_reader.values()
            twice = [k for k, n in Counter(ev["event_id"] for ev in audit).items() if n > 1]
            if twice:
                problems.append(f"{len(twice)} audit event ids twice")
            by_practice: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for ev in audit:
                by_practice[ev["practice_id"]].append(ev)
            for practice, events in by_practice.items():
                verdict = verify_chain(events)
                if verdict != (True, -1):
                    problems.append(f"audit chain of {practice} breaks: {verdict}")
            # 3. ClickHouse: raw rows = distinct outputs, FINAL rows = distinct sort keys
            types = sink_topics(self.prefix)
            sinks = TopicReader(self.info.bootstrap, list(types), self.serde)
            sinks.read_to_end()
            sinks.close()
            ch = ClickHouseSink(f"chdb://{(self.state / 'app' / 'clickhouse').resolve()}", "practiceflow")
            try:
                ch_rows, expected, found = reconcile_clickhouse(sinks, types, ch)
            finally:
                ch.close()
            problems += found
        finally:
            self.spawn("sink")
        summary = {
            "acked": len(self.acked),
            "raw_copies": sum(copies.values()),
            "resent_copies_seen_as_duplicates": sum(c["duplicate"] for c in got.values()),
            "outcomes_rewritten_by_replay": len(rewritten),
            "audit_events": len(audit),
            "clickhouse": ch_rows,
            "topics": expected,
            "self_exits": dict(self.self_exits),
            "ok": not problems,
            "problems": problems,
        }
        self.log(json.dumps({"check": summary}))
        return summary
