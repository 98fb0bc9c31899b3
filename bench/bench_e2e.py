"""End-to-end benchmark: MLLP gateways -> Kafka -> the shipped worker -> normalized events.

Issue 8's mix through the REAL pieces, each in its own process as in production: a local
Kafka 4.1 broker and the Apicurio registry (``LocalStack``, or ``--bootstrap``/``--registry``
for a running stack), the MLLP gateways (``GatewayCore`` + ``DurableProducer``, one plain
listener per practice, run by this file in a child process) and ``practiceflow worker
--no-sink`` (the ClickHouse sink is its own consumer group and not on the path measured here;
``practiceflow sink`` runs it as a separate process in production).

What it reports (``run()`` returns a dict; ``python bench/bench_e2e.py`` records it in
``bench/results.json`` and ``bench/RESULTS.md`` under ``e2e``):

* ``throughput``: 20,000 distinct HL7 messages (60 % ORU^R01, half of those with 8 OBX, half
  with 1; 40 % ADT^A04) over 8 MLLP connections as fast as the gateways take them. msg/s end to
  end = messages / (first send -> last FlowEvent seen on ``pf.analytics.flow``); the gateways'
  own AA rate; worker CPU ms per message from ``/proc/<pid>/stat`` (user + system, all threads)
  over the phase.
* ``latency``: at fixed offered rates (50, 100, 200, 500 msg/s, open loop: a message is sent at
  its scheduled time whether or not earlier ones are done), p50/p95/p99 of MLLP send -> the
  message's FlowEvent seen by a consumer in this process.
* ``normalizer``: the bare HL7 normalizer (``normalize_hl7``) over the same messages, in this
  process, in the same run: the reference the end-to-end rate is compared with.
* ``ingest_only`` and ``worker_drain``: the backlog sent through the gateways with no worker
  running, then drained by a worker alone; each reports the CPU of every process per message
  and ``kafka_records_per_input``: the records it wrote to Kafka per input, by topic (every
  topic of the run, the worker's table changelogs included), and how many of them the worker
  reads again (bench/e2e_notes.md). The drain's rate and CPU are the normalizer's (first to last
  FlowEvent); it also waits for the whole worker to be idle and reports its CPU until then
  (``worker_cpu_ms_per_msg_until_idle``, ``until_idle_msgs_per_s``) and its threads' CPU by kind.
* ``two_workers``: two worker processes in one consumer group, partitions split by Kafka,
  the same 20,000 messages' shape sent again; per worker its CPU and the messages it
  normalized (from its own ``/metrics``), showing both share the load.

The load average is recorded beside every figure: the development machine has 2 cores
shared with other work, so a loaded machine's numbers are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 4
# four tenants whose murmur2 partitions (of 4) differ, so two workers can split them
PRACTICES = ("bench-a", "bench-e", "bench-c", "bench-d")
CONNECTIONS = 8
RATES = (50, 100, 200, 500)
TARGETS = {"e2e_msgs_per_s": 3000, "p99_ms_at_500": 250, "worker_cpu_ms_per_msg": 0.3}


# ---------------------------------------------------------------------------------- messages
def _ts(i: int) -> str:
    return f"202403{(i % 28) + 1:02d}{(i // 60) % 24:02d}{i % 60:02d}00"


def oru(i: int, obx: int, practice: str) -> bytes:
    segs = [
        f"MSH|^~\\&|LAB_APP|CITY_LAB|EHR|{practice}|{_ts(i)}||ORU^R01^ORU_R01|B{i:08d}|P|2.5.1|||AL|NE",
        f"PID|1||MRN{i % 5000:06d}^^^FAMPRAC^MR||PATIENT^TEST^{i % 97}||19780214|F|||"
        "742 EVERGREEN TER^^SPRINGFIELD^IL^62704^USA^H||(217)555-0142^PRN^PH|||M",
        "PV1|1|O|CLINIC^^^FAMPRAC||||1234567890^WELBY^MARCUS^^^^MD|||||||||||V778899",
        f"ORC|RE|ORD{i:08d}|LAB{i:08d}||CM||||20240305080000|||1234567890^WELBY^MARCUS^^^^MD",
        f"OBR|1|ORD{i:08d}|LAB{i:08d}|80053^Comprehensive metabolic panel^CPT|||20240305081500|||||||||"
        "1234567890^WELBY^MARCUS^^^^MD||||||20240305142500|||F",
    ]
    codes = [("2345-7", "Glucose", "mg/dL"), ("3094-0", "Urea nitrogen", "mg/dL"), ("2160-0", "Creatinine", "mg/dL")]
    codes += [("2951-2", "Sodium", "mmol/L"), ("2823-3", "Potassium", "mmol/L"), ("2075-0", "Chloride", "mmol/L")]
    codes += [("2028-9", "Carbon dioxide", "mmol/L"), ("17861-6", "Calcium", "mg/dL")]
    for n in range(obx):
        code, name, unit = codes[n]
        flag = "H" if (i + n) % 11 == 0 else "N"
        segs.append(
            f"OBX|{n + 1}|NM|{code}^{name}^LN||{50 + (i * 7 + n) % 90}|{unit}|10-200|{flag}|||F|||20240305120000"
        )
    return ("\r".join(segs) + "\r").encode("ascii")


def adt_a04(i: int, practice: str) -> bytes:
    segs = [
        f"MSH|^~\\&|REG_APP|FAMPRAC|PF|{practice}|{_ts(i)}||ADT^A04^ADT_A01|R{i:08d}|P|2.5.1|||AL|NE",
        f"EVN|A04|{_ts(i)}",
        f"PID|1||MRN{i % 5000:06d}^^^FAMPRAC^MR||OKAFOR^CHIDI^{i % 89}||19850722|M|||"
        "15 LAKE SHORE DR^APT 4B^CHICAGO^IL^60611^USA^H||(312)555-0199^PRN^PH|||S||ACCT5566^^^FAMPRAC^AN",
        "PV1|1|O|MAIN^EXAM3^1^FAMPRAC||||4455667788^NGUYEN^LINH^^^^MD|||FM||||1|||4455667788^NGUYEN^LINH^^^^MD|"
        f"OP|VN{i:08d}|||||||||||||||||||||||||20240305092500",
    ]
    return ("\r".join(segs) + "\r").encode("ascii")


def mix(start: int, n: int, practices: tuple[str, ...] = PRACTICES) -> list[tuple[str, bytes]]:
    """``n`` distinct messages (ids ``start``..): 60 % ORU (half 8 OBX, half 1), 40 % ADT^A04,
    round-robin over the practices."""
    out = []
    for i in range(start, start + n):
        practice = practices[i % len(practices)]
        k = i % 10
        if k < 3:
            out.append((practice, oru(i, 8, practice)))
        elif k < 6:
            out.append((practice, oru(i, 1, practice)))
        else:
            out.append((practice, adt_a04(i, practice)))
    return out


def message_ids(msgs: list[tuple[str, bytes]]) -> tuple[list[str], float]:
    """The id the gateway gives each message (the worker's FlowEvent key), and the bare
    normalizer's rate over them (msg/s, this process, one core)."""
    from practiceflow.processors.hl7.normalize import normalize_hl7

    ids = []
    t0 = time.perf_counter()
    for practice, payload in msgs:
        ids.append(normalize_hl7(payload, practice, 0).message_id)
    return ids, len(msgs) / (time.perf_counter() - t0)


def normalizer_rates(msgs: list[tuple[str, bytes]], seconds: float = 2.0) -> dict[str, float]:
    """The bare normalizer over ``msgs``, at least ``seconds``: msg/s of wall time (what a core
    gave it) and of CPU time (comparable with the worker's CPU per message on a loaded machine)."""
    from practiceflow.processors.hl7.normalize import normalize_hl7

    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        for practice, payload in msgs:
            normalize_hl7(payload, practice, 0)
        n += len(msgs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "msgs_per_s": round(n / wall, 1),
        "cpu_msgs_per_s": round(n / cpu, 1),
        "cpu_ms_per_msg": round(cpu * 1000 / n, 4),
    }


# ---------------------------------------------------------------------------------- helpers
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
    """Topic suffixes of the kinds the worker's agents consume: raw and retry (the normalizers),
    normalized (the context agent and the workflows), handoff (the work-items table), workflow,
    command and decision topics, and ``audit.in`` (the audit chain). By kind, not by the worker's
    subscriptions: a few normalized topics no agent reads yet count too (none of them carries the
    HL7 mix), and a topic two agents read counts once."""
    from practiceflow.streams import catalog

    kinds = {
        catalog.Kind.RAW,
        catalog.Kind.RETRY,
        catalog.Kind.NORMALIZED,
        catalog.Kind.HANDOFF,
        catalog.Kind.WORKFLOW,
        catalog.Kind.COMMAND,
    }
    return {spec.suffix for spec in catalog.CATALOG if spec.kind in kinds} | {"audit.in"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310  # loopback URL we built
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {timeout}s")


def normalized_count(web_port: int) -> int:
    """Messages a worker normalized, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as r:  # loopback
        text = r.read().decode()
    total = 0
    for m in re.finditer(r'^practiceflow_messages_total\{feed="hl7v2",stage="normalized"\} ([0-9.e+]+)$', text, re.M):
        total += int(float(m.group(1)))
    return total


# ---------------------------------------------------------------------------------- observer
class FlowWatcher:
    """Reads ``pf.analytics.flow`` (a plain consumer, no group) and notes when each message id
    was first seen. Keys are ``<practice>/<message id>``, so no Avro decoding is needed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                # a fetch returns as soon as one byte is there (fetch.min.bytes), so the wait only
                # bounds empty fetches: at 5 ms this observer alone kept the broker at ~0.17-0.19 of a
                # core (bench/e2e_notes.md, session 25), a load no production pipeline has
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 1,
            }
        )
        # start at each partition's high watermark read NOW (with retries while a just-created
        # topic's leader settles): OFFSET_END is resolved at the first fetch, and a fetch that
        # failed on a leaderless partition resolved it again later, past flow events the worker
        # had written meanwhile (the warm-up then reported 3-60 of 400 messages "missing")
        from practiceflow.streams.positions import watermarks

        self._c.assign(
            [TopicPartition(topic, p, watermarks(self._c, TopicPartition(topic, p), 10)[1]) for p in range(PARTITIONS)]
        )
        self._thread = threading.Thread(target=self._run, name="flow-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._c.consume(num_messages=1000, timeout=0.05):
                if m.error() is None and m.key() is not None:
                    now = time.perf_counter()
                    mid = m.key().decode().split("/", 1)[1]
                    self.seen.setdefault(mid, now)

    def wait(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.seen for i in ids[-50:]) and all(i in self.seen for i in ids):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._c.close()


# ---------------------------------------------------------------------------------- sender
async def send_all(
    ports: dict[str, int],
    msgs: list[tuple[str, bytes]],
    *,
    rate: float | None = None,
    window: int = 64,
) -> dict[str, Any]:
    """Send ``msgs`` over ``CONNECTIONS`` MLLP connections (spread over the practices'
    listeners). ``rate`` None: as fast as the gateways take them (up to ``window`` unanswered
    frames per connection); else open loop at ``rate`` msg/s overall. Returns send times
    (perf_counter, by index) and ACK codes."""
    sent_at: list[float] = [0.0] * len(msgs)
    acks: dict[str, int] = {}
    conns_per_practice = max(1, CONNECTIONS // len(ports))
    lanes: list[tuple[str, list[int]]] = []
    by_practice: dict[str, list[int]] = {}
    for idx, (practice, _payload) in enumerate(msgs):
        by_practice.setdefault(practice, []).append(idx)
    for practice, idxs in by_practice.items():
        for c in range(conns_per_practice):
            lanes.append((practice, idxs[c::conns_per_practice]))
    t0 = time.perf_counter()

    async def lane(practice: str, idxs: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[practice], limit=1 << 20)
        credit = asyncio.Semaphore(window)

        async def read_acks() -> None:
            buf = b""
            got = 0
            while got < len(idxs):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("gateway closed the connection")
                buf += chunk
                while (end := buf.find(FS + CR)) >= 0:
                    frame, buf = buf[:end], buf[end + 2 :]
                    m = re.search(rb"MSA\|(\w\w)", frame)
                    code = m.group(1).decode() if m else "??"
                    acks[code] = acks.get(code, 0) + 1
                    got += 1
                    credit.release()

        acker = asyncio.ensure_future(read_acks())
        for idx in idxs:
            if rate is not None:
                delay = t0 + idx / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await credit.acquire()
            sent_at[idx] = time.perf_counter()
            writer.write(VT + msgs[idx][1] + FS + CR)
            await writer.drain()
        await acker
        writer.close()

    await asyncio.gather(*(lane(p, i) for p, i in lanes))
    return {"sent_at": sent_at, "acks": acks, "acked_at": time.perf_counter()}


# ---------------------------------------------------------------------------------- processes
def gateway_main(conf_path: str) -> None:
    """Child process: the MLLP gateways, one plain listener per practice, sharing one core."""
    conf = json.loads(Path(conf_path).read_text())

    from practiceflow.streams.gateways.base import GatewayCore
    from practiceflow.streams.gateways.mllp import MllpGateway
    from practiceflow.streams.producer import DurableProducer
    from practiceflow.streams.serde import AvroSerde, registry_client

    async def serve() -> None:
        producer = DurableProducer(conf["bootstrap"], conf["partitions"])
        core = GatewayCore(producer, AvroSerde(registry_client(conf["registry"])), conf["prefix"], name="gateways")
        gws = []
        for practice, port in conf["ports"].items():
            gw = MllpGateway(core, practice, port=port, practices=list(conf["ports"]), max_connections_per_peer=64)
            await gw.start()
            gws.append(gw)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for gw in gws:
            await gw.stop()
        producer.close()

    asyncio.run(serve())


class Procs:
    """The child processes of one run, stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
        proc = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def worker_env(bootstrap: str, registry: str, prefix: str, group: str, state: Path, web_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PRACTICEFLOW_CONFIG": str(state / "none.toml"),
        "PRACTICEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "PRACTICEFLOW_SCHEMA_REGISTRY_URL": registry,
        "PRACTICEFLOW_STATE_DIR": str(state),
        "PRACTICEFLOW_TOPIC_PREFIX": prefix,
        "PRACTICEFLOW_TOPIC_PARTITIONS": str(PARTITIONS),
        "PRACTICEFLOW_CONSUMER_GROUP": group,
        "PRACTICEFLOW_WEB_PORT": str(web_port),
        "PRACTICEFLOW_PRACTICES": json.dumps(list(PRACTICES)),
        "PRACTICEFLOW_DEFAULT_PRACTICE_ID": PRACTICES[0],
    }


def start_gateways(procs: Procs, bootstrap: str, registry: str, prefix: str) -> tuple[subprocess.Popen, dict[str, int]]:
    ports = {p: free_port() for p in PRACTICES}
    conf = procs.workdir / f"gateways-{prefix}.json"
    conf.write_text(
        json.dumps(
            {"bootstrap": bootstrap, "registry": registry, "prefix": prefix, "partitions": PARTITIONS, "ports": ports}
        )
    )
    proc = procs.spawn(
        f"gateways-{prefix}", [sys.executable, str(Path(__file__).resolve()), "--gateway", str(conf)], os.environ.copy()
    )
    log = procs.workdir / f"gateways-{prefix}.log"
    deadline = time.monotonic() + 60
    while b"ready" not in (log.read_bytes() if log.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gateways did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc, ports


def start_worker(procs: Procs, name: str, env: dict[str, str]) -> subprocess.Popen:
    proc = procs.spawn(name, [sys.executable, "-m", "practiceflow.cli", "worker", "--no-sink"], env)
    wait_http(f"http://127.0.0.1:{env['PRACTICEFLOW_WEB_PORT']}/readyz", 180, proc)
    return proc


# ---------------------------------------------------------------------------------- profile
def _profile(pid: int, out: Path) -> subprocess.Popen:
    """py-spy (if installed: ``pip install py-spy``) sampling the worker, collapsed stacks."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "-p", str(pid), "--nonblocking", "--threads", "-r", "50", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_entries(path: Path, n: int = 25) -> dict[str, Any]:
    """Share of samples per function: self (the frame on top) and inclusive (anywhere on the stack)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {"error": "no profile written"}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [re.sub(r" \((.*/)?(site-packages/)?", " (", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k

    def top(d: dict[str, int]) -> list[str]:
        return [f"{v * 100 / total:5.1f}% {f}" for f, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "self": top(own), "inclusive": top(incl)}


# ---------------------------------------------------------------------------------- phases
def run_batch(ports, msgs, ids, watcher: FlowWatcher, worker_pids: list[int], *, rate=None, timeout=600.0):
    cpu0 = {pid: cpu_seconds(pid) for pid in worker_pids}
    roles0 = cpu_by_role(worker_pids)
    load0 = loadavg()
    t0 = time.perf_counter()
    sent = asyncio.run(send_all(ports, msgs, rate=rate))
    done = watcher.wait(ids, timeout)
    seen = [watcher.seen.get(i) for i in ids]
    last = max(s for s in seen if s is not None) if any(seen) else float("nan")
    first_send = min(sent["sent_at"])
    cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in worker_pids}
    split = cpu_split(roles0, cpu_by_role(worker_pids), len(msgs))
    lat = [(s - a) * 1000 for s, a in zip(seen, sent["sent_at"], strict=True) if s is not None]
    return {
        "messages": len(msgs),
        "all_seen": done,
        "missing": sum(1 for s in seen if s is None),
        "acks": sent["acks"],
        "gateway_ack_msgs_per_s": round(len(msgs) / (sent["acked_at"] - first_send), 1),
        "e2e_seconds": round(last - first_send, 3),
        "e2e_msgs_per_s": round(len(msgs) / (last - first_send), 1),
        "worker_cpu_s": {str(pid): round(c, 2) for pid, c in cpu.items()},
        "worker_cpu_ms_per_msg": round(sum(cpu.values()) * 1000 / len(msgs), 3),
        "cpu_ms_per_msg_by_role": split,
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1), "p99": round(pct(lat, 99), 1)},
        "wall_s": round(time.perf_counter() - t0, 2),
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


def settle(pids: list[int], *, idle_share: float = 0.3, window: float = 2.0, timeout: float = 600.0) -> float:
    """Wait until the workers are idle (together under ``idle_share`` of a core over ``window``
    seconds; an idle worker still uses about 0.12 of a core polling its ~70 partitions) and
    return how long that took. A phase's FlowEvents are seen before the worker has
    finished the rest of that phase's work (audit chaining, de-dup sweeps): without this wait the
    next phase's latency measured the previous phase's backlog (p50 14.7 s at 50 msg/s on an
    idle machine, 2026-12-02)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        c0 = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(window)
        if (sum(cpu_seconds(pid) for pid in pids) - c0) / window < idle_share:
            break
    return round(time.perf_counter() - t0, 1)


def ingest_only(ports: dict[str, int], msgs: list[tuple[str, bytes]], bootstrap: str, prefix: str) -> dict[str, Any]:
    """The gateways and the broker alone (no worker running): how fast the MLLP gateways
    acknowledge, and what each process spends per message and per second doing only that.

    CPU per message is not a constant: the broker's load is mostly fixed (clients polling it),
    so its figure per message falls as the rate rises. ``cores_by_role`` (CPU seconds per
    second) shows how much of the machine each process used at the rate reached."""
    load0 = loadavg()
    ends0 = topic_ends(bootstrap, prefix)
    before = cpu_by_role([])
    t0 = time.perf_counter()
    sent = asyncio.run(send_all(ports, msgs))
    wall = time.perf_counter() - t0
    split = cpu_split(before, cpu_by_role([]), len(msgs))
    return {
        "kafka_records_per_input": records_per_input(
            ends0, topic_ends(bootstrap, prefix), len(msgs), prefix, worker_input_suffixes()
        ),
        "messages": len(msgs),
        "acks": sent["acks"],
        "gateway_ack_msgs_per_s": round(len(msgs) / (sent["acked_at"] - min(sent["sent_at"])), 1),
        "cpu_ms_per_msg_by_role": split,
        "cores_by_role": {r: None if v is None else round(v * len(msgs) / 1000 / wall, 3) for r, v in split.items()},
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


def drain(
    procs: Procs, env: dict[str, str], ids: list[str], watcher: FlowWatcher, profile: Path | None = None
) -> dict[str, Any]:
    """Start the worker on a backlog already in the raw topic; rate = backlog / (first -> last
    FlowEvent seen), CPU between those two moments (sampled every 0.1 s).

    The last FlowEvent says only that the normalizer is done: the worker's downstream agents (the
    context fold, the audit chain, the work-items table) are still working through what it wrote.
    So the drain then waits until the worker is idle and its topics stop growing, and reports the
    worker's CPU from the first FlowEvent until then as well (``worker_cpu_ms_per_msg_until_idle``),
    with the Kafka records the drain wrote per input."""
    load0 = loadavg()
    bootstrap, prefix = env["PRACTICEFLOW_KAFKA_BOOTSTRAP"], env["PRACTICEFLOW_TOPIC_PREFIX"]
    ends0 = topic_ends(bootstrap, prefix)  # the backlog is on the raw topic already
    proc = procs.spawn("worker-drain", [sys.executable, "-m", "practiceflow.cli", "worker", "--no-sink"], env)
    samples: list[tuple[float, dict[str, float | None]]] = []  # (time, CPU seconds by role)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set() and proc.poll() is None:
            roles = cpu_by_role([proc.pid])
            if roles["worker"] is None:  # the worker ended
                return
            samples.append((time.perf_counter(), roles))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    spy = _profile(proc.pid, profile) if profile else None
    done = watcher.wait(ids, 900)
    stop.set()
    sampler.join(2)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(120)
    seen = [watcher.seen[i] for i in ids if i in watcher.seen]
    first, last = min(seen), max(seen)

    def at(t: float) -> dict[str, float | None]:
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    split = cpu_split(at(first), at(last), len(seen))
    # what the drain wrote to Kafka per input, once the downstream agents are idle too: settled
    # (under 0.3 of a core for 2 s) and no topic grew over 3 s, asked up to three times
    settled_s, stable = 0.0, False
    ends1: dict[str, int] = {}
    for _ in range(3):
        settled_s += settle([proc.pid], timeout=180)
        ends1 = topic_ends(bootstrap, prefix)
        time.sleep(3)
        stable = topic_ends(bootstrap, prefix) == ends1
        if stable:
            break
    cpu_idle = cpu_seconds(proc.pid)
    threads = threads_cpu(proc.pid)  # the worker's whole life, start-up included
    per_input = records_per_input(ends0, ends1, len(ids), prefix, worker_input_suffixes())
    worker_first = at(first)["worker"]
    procs.stop(proc)
    return {
        "kafka_records_per_input": per_input,
        "records_stable": stable,
        "worker_threads_cpu_s": threads,
        "settled_after_last_flow_event_s": round(settled_s, 1),
        # inputs / (first FlowEvent -> idle again): the whole worker's rate, not only the normalizer's
        # (approximate: settle reads 2 s windows, and the stability check waits 3 s)
        "until_idle_msgs_per_s": round(len(seen) / (last - first + settled_s), 1),
        # the worker's CPU from the first FlowEvent until it was idle again: every agent's share
        "worker_cpu_ms_per_msg_until_idle": (
            None if worker_first is None else round((cpu_idle - worker_first) * 1000 / len(seen), 3)
        ),
        "messages": len(ids),
        "all_seen": done,
        "drain_seconds": round(last - first, 3),
        "drain_msgs_per_s": round(len(seen) / (last - first), 1),
        "worker_cpu_ms_per_msg": split["worker"],
        "cpu_ms_per_msg_by_role": split,
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
        **({"profile": top_entries(profile)} if profile else {}),
    }


def run(
    *,
    messages: int = 20_000,
    rate_seconds: float = 10.0,
    rates: tuple[int, ...] = RATES,
    two_workers: bool = True,
    bootstrap: str | None = None,
    registry: str | None = None,
    profile: bool = False,
    only_latency: bool = False,
    only_drain: bool = False,
) -> dict[str, Any]:
    from practiceflow.processors.hl7 import speedups_status
    from practiceflow.settings import REPO_ROOT
    from practiceflow.streams.topics import create_topics

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "hl7_modules": speedups_status(),
        "loadavg_at_start": loadavg(),
        "mix": "60% ORU^R01 (half 8 OBX, half 1 OBX), 40% ADT^A04, distinct",
        "connections": CONNECTIONS,
        "partitions": PARTITIONS,
        "practices": len(PRACTICES),
        "targets": TARGETS,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    OTHERS.clear()  # this run's processes only
    stack = None
    if bootstrap is None:
        from practiceflow.localstack.stack import LocalStack

        stack = LocalStack(workdir / "stack", cache_dir=REPO_ROOT / ".stack" / "cache")
        info = stack.start()
        bootstrap, registry = info.bootstrap, info.registry_url
        OTHERS["broker"] = list(info.kafka_pids)
        OTHERS["registry"] = [info.registry_pid] if info.registry_pid else []
    OTHERS["bench"] = [os.getpid()]
    assert registry is not None
    procs = Procs(workdir)
    counter = iter(range(0, 10**9, 1_000_000))  # message-number blocks: every message distinct
    try:
        # ---------------------------------------------------------------- one worker
        prefix = f"b{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, prefix, PARTITIONS, 1)
        gw, ports = start_gateways(procs, bootstrap, registry, prefix)
        OTHERS["gateways"] = [gw.pid]
        web = free_port()
        env = worker_env(bootstrap, registry, prefix, f"bench-{prefix}", workdir / "w1", web)
        (workdir / "w1").mkdir()
        worker = start_worker(procs, "worker1", env)
        watcher = FlowWatcher(bootstrap, f"{prefix}.analytics.flow")
        warm = mix(next(counter), 400)
        warm_ids, _ = message_ids(warm)
        out["warmup"] = run_batch(ports, warm, warm_ids, watcher, [worker.pid], timeout=180)

        msgs = mix(next(counter), messages)
        ids, _ = message_ids(msgs)
        # the bare normalizer's rate, over the same messages, at least 2 s
        out["normalizer"] = {**normalizer_rates(msgs[:5000]), "loadavg": loadavg()}
        if not (only_latency or only_drain):
            out["settled_before_throughput_s"] = settle([worker.pid])
            out["throughput"] = run_batch(ports, msgs, ids, watcher, [worker.pid])
        out["latency"] = {}
        for rate in () if only_drain else rates:
            batch = mix(next(counter), int(rate * rate_seconds))
            bids, _ = message_ids(batch)
            settled = settle([worker.pid])
            res = run_batch(ports, batch, bids, watcher, [worker.pid], rate=rate, timeout=120)
            out["latency"][str(rate)] = {"settled_before_s": settled, **res}
        if only_latency:
            watcher.close()
            return out
        # the worker alone: a backlog written while it was stopped, drained after its restart; the
        # earlier phases' downstream work done first, so the drain's counts are the drain's own
        out["settled_before_ingest_only_s"] = settle([worker.pid])
        procs.stop(worker)
        backlog = mix(next(counter), messages)
        bids, _ = message_ids(backlog)
        out["ingest_only"] = ingest_only(ports, backlog, bootstrap, prefix)
        out["worker_drain"] = drain(procs, env, bids, watcher, workdir / "worker-profile.txt" if profile else None)
        watcher.close()
        # ---------------------------------------------------------------- two workers
        if two_workers and not only_drain:
            prefix2 = f"b{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, prefix2, PARTITIONS, 1)
            gw2, ports2 = start_gateways(procs, bootstrap, registry, prefix2)
            OTHERS["gateways"] = [gw2.pid]  # the first run's gateways are idle from here on
            webs = [free_port(), free_port()]
            workers = []
            for n, port in enumerate(webs, start=1):
                (workdir / f"ww{n}").mkdir()
                workers.append(
                    start_worker(
                        procs,
                        f"two-worker{n}",
                        worker_env(bootstrap, registry, prefix2, f"bench2-{prefix2}", workdir / f"ww{n}", port),
                    )
                )
            time.sleep(15)  # let the group settle with both members before measuring
            for port in webs:
                wait_http(f"http://127.0.0.1:{port}/readyz", 120)
            watcher2 = FlowWatcher(bootstrap, f"{prefix2}.analytics.flow")
            msgs2 = mix(next(counter), messages)
            ids2, _ = message_ids(msgs2)
            res = run_batch(ports2, msgs2, ids2, watcher2, [w.pid for w in workers])
            res["normalized_per_worker"] = [normalized_count(port) for port in webs]
            out["two_workers"] = res
            watcher2.close()
    finally:
        procs.stop_all()
        if stack is not None:
            stack.stop()
    out["loadavg_at_end"] = loadavg()
    out["workdir"] = str(workdir)
    return out


def record(result: dict[str, Any]) -> None:
    """Store the result under ``e2e`` in bench/results.json and bench/RESULTS.md (as run_all does)."""
    sys.path.insert(0, str(HERE))
    import run_all  # bench/ is not a package

    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["e2e"] = result
    path.write_text(json.dumps(results, indent=2) + "\n")
    run_all.write_markdown(results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway", help=argparse.SUPPRESS)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--no-two-workers", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="warm-up and the fixed-rate phases only")
    ap.add_argument("--only-drain", action="store_true", help="warm-up and the worker's backlog drain only")
    ap.add_argument("--bootstrap")
    ap.add_argument("--registry")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker during the throughput phase")
    ap.add_argument("--no-record", action="store_true", help="print only; do not update bench/results.json")
    args = ap.parse_args()
    if args.gateway:
        gateway_main(args.gateway)
        return 0
    result = run(
        messages=args.messages,
        rate_seconds=args.rate_seconds,
        rates=tuple(int(r) for r in args.rates.split(",") if r),
        two_workers=not args.no_two_workers,
        bootstrap=args.bootstrap,
        registry=args.registry,
        profile=args.profile,
        only_latency=args.only_latency,
        only_drain=args.only_drain,
    )
    print(json.dumps(result, indent=2))
    if not (args.no_record or args.only_latency or args.only_drain):  # a partial run never replaces the whole
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
