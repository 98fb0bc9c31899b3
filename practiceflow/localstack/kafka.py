"""A real Apache Kafka broker (KRaft mode) on loopback, without Docker.

The broker's jars come from Maven Central through ``deploy/local/pom.xml`` and are
cached under the stack directory, so only the first start on a machine downloads
anything. Each node runs as ``java -cp jars/* kafka.Kafka server.properties`` in
combined broker+controller mode; ``nodes=3`` gives a three-voter quorum that the
fault tests use.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from practiceflow.localstack.ports import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "deploy" / "local" / "pom.xml"

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


class StackError(RuntimeError):
    """The local stack could not be fetched or started; the message says why."""


def ensure_jars(cache_dir: Path, pom: Path = KAFKA_POM) -> Path:
    """Fetch the broker jars with Maven once; later calls reuse the cache."""
    jars = (Path(cache_dir) / "kafka-jars").resolve()  # mvn resolves relative paths against the pom
    marker = jars / ".complete"
    stamp = pom.read_text()
    if marker.exists() and marker.read_text() == stamp:
        return jars
    jars.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={jars}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"maven could not fetch the Kafka jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    marker.write_text(stamp)
    return jars


def kafka_version(jars: Path) -> str:
    for jar in jars.glob("kafka_2.13-*.jar"):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return "unknown"


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's ``Uuid.randomUuid`` makes them: URL-safe base64 of 16 random
    bytes, never starting with "-" (the storage tool's argument parser would read it as an option;
    1 id in 64 did, and the stack failed to start)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"


@dataclass
class KafkaCluster:
    """One or more KRaft nodes; ``bootstrap`` is what clients connect to."""

    root: Path
    jars: Path
    nodes: list[KafkaNode] = field(default_factory=list)
    heap: str = "512m"
    log_level: str = "WARN"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _properties(self, node: KafkaNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        rf = min(3, len(self.nodes))
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={node.data_dir / 'log'}",
                "num.partitions=3",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={1 if rf == 1 else 2}",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=10",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={1 if rf == 1 else 2}",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={1 if rf == 1 else 2}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.segment.bytes=16777216",
                "log.retention.check.interval.ms=60000",
                "",
            ]
        )

    def _java(self, main: str, *args: str, node: KafkaNode) -> list[str]:
        return [
            "java",
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.jars}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0, cluster_id: str | None = None) -> KafkaCluster:
        """Format (only a node's first time: ``--ignore-formatted``) and start every node.

        ``cluster_id`` is the id a durable stack formatted its data with; a node already
        formatted keeps its data (the local stack survives ``stack down``/``stack up``).
        """
        cluster_id = cluster_id or new_cluster_id()
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            (node.data_dir / "log4j2.properties").write_text(_LOG4J2.format(level=self.log_level))
            props = node.data_dir / "server.properties"
            props.write_text(self._properties(node))
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    f"--cluster-id={cluster_id}",  # one argument: an id may not be taken for an option
                    "-c",
                    str(props),
                    node=node,
                ),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise StackError(f"kafka storage format failed for node {node.node_id}: {fmt.stderr[-2000:]}")
        for node in self.nodes:
            self._spawn(node)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not wait_for_port("127.0.0.1", node.port, deadline, node.process):
                tail = node.log_file.read_text(errors="replace")[-3000:]
                self.stop()
                raise StackError(f"kafka node {node.node_id} did not open port {node.port}:\n{tail}")
        self._wait_ready(deadline)
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Ports open before the quorum has a leader; wait until metadata answers."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                md = admin.list_topics(timeout=5)
                if len(md.brokers) >= len(self.nodes):
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.3)
        raise StackError(f"kafka metadata not ready in time: {last}")

    def stop(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            stop_process(node.process, timeout)
            node.process = None

    def _spawn(self, node: KafkaNode) -> None:
        with open(node.log_file, "ab") as log:  # the child keeps its own copy of the descriptor
            node.process = subprocess.Popen(
                self._java("kafka.Kafka", str(node.data_dir / "server.properties"), node=node),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_node(self, node_id: int) -> None:
        """Hard-kill one node (fault tests, the chaos harness)."""
        for node in self.nodes:
            if node.node_id == node_id and node.process:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
                node.process = None

    def restart_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start a killed node again on its own ports and data: it rejoins the quorum and
        catches its replicas up from the leaders (the chaos harness's broker kill)."""
        node = next(n for n in self.nodes if n.node_id == node_id)
        if node.process is not None and node.process.poll() is None:
            return
        self._spawn(node)
        if not wait_for_port("127.0.0.1", node.port, time.monotonic() + timeout, node.process):
            raise StackError(f"kafka node {node_id} did not come back on port {node.port}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not leave in time."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def new_cluster(
    root: Path,
    cache_dir: Path,
    nodes: int = 1,
    heap: str | None = None,
    ports: list[tuple[int, int]] | None = None,
) -> KafkaCluster:
    """A cluster of ``nodes`` under ``root``; ``ports`` (broker, controller) per node keeps
    the addresses a durable stack used before, else free ports are picked."""
    jars = ensure_jars(cache_dir)
    cluster = KafkaCluster(root=root, jars=jars, heap=heap or ("512m" if nodes == 1 else "384m"))
    for i in range(1, nodes + 1):
        port, controller = ports[i - 1] if ports else (free_port(), free_port())
        cluster.nodes.append(KafkaNode(node_id=i, port=port, controller_port=controller, data_dir=root / f"node-{i}"))
    return cluster
