"""The embedded local stack: Kafka (KRaft) + Apicurio schema registry on loopback.

``practiceflow stack up`` starts both in the background and records their pids and
ports in ``<state_dir>/stack.json``; any later process (the worker, the tests, the
main job) finds them there. ``LocalStack`` is also usable in-process (tests start
one per session and stop it at the end).

The stack is durable: Kafka's logs live in ``<state_dir>/kafka`` and the registry's
schemas in an H2 file database under ``<state_dir>/registry``, with the cluster id and
ports in ``<state_dir>/kafka/cluster.json``, so ``stack down`` + ``stack up`` comes back
with every topic (the audit trail included) and every schema id the records on them
name (an in-memory registry would hand out new ids, and the old records could no
longer be decoded). Deleting is a separate, explicit command: :func:`wipe`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from practiceflow.localstack.kafka import (
    REPO_ROOT,
    KafkaCluster,
    StackError,
    kafka_version,
    new_cluster,
    new_cluster_id,
    stop_process,
)
from practiceflow.localstack.ports import free_port, wait_for_port

REGISTRY_DIR = REPO_ROOT / "deploy" / "local" / "registry"
CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass
class StackInfo:
    bootstrap: str
    registry_url: str
    kafka_version: str
    kafka_pids: list[int]
    registry_pid: int | None
    root: str
    started_at: float
    cold_start_seconds: float


def ensure_registry(cache_dir: Path) -> Path:
    """Fetch Apicurio Registry from Maven Central once (deploy/local/registry/build.sh)."""
    proc = subprocess.run([str(REGISTRY_DIR / "build.sh"), str(cache_dir / "registry")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"could not fetch the schema registry: {proc.stderr[-2000:]}")
    return cache_dir / "registry"


def start_registry(
    cache_dir: Path, data_dir: Path, timeout: float = 90.0, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """Start Apicurio with its H2 database in a file under ``data_dir`` (schema ids survive)."""
    reg_dir = ensure_registry(cache_dir)
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "registry.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(REGISTRY_DIR / "run.sh"), str(reg_dir), str(port), str(data_dir / "db")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    base = f"http://127.0.0.1:{port}"
    if not wait_for_port("127.0.0.1", port, deadline, proc):
        stop_process(proc)
        raise StackError(f"schema registry did not open port {port}; see {data_dir / 'registry.log'}")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as resp:  # noqa: S310 - http on loopback
                if resp.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.25)
    else:
        stop_process(proc)
        raise StackError("schema registry never became ready")
    url = base + CCOMPAT_PATH
    # Contracts evolve backward-compatibly; make the registry enforce it too.
    req = urllib.request.Request(  # noqa: S310 - http to our own registry on loopback
        f"{url}/config",
        method="PUT",
        data=json.dumps({"compatibility": "BACKWARD"}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    # The first write creates the H2 file database's tables: on a loaded machine that takes
    # seconds, so retry until the start deadline instead of failing on one short timeout.
    while True:
        try:
            urllib.request.urlopen(req, timeout=20).close()  # noqa: S310 - our own registry on loopback
            break
        except OSError:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise StackError("schema registry did not accept its configuration in time") from None
            time.sleep(0.5)
    return proc, url


class LocalStack:
    """Start/stop the local Kafka cluster and schema registry."""

    def __init__(self, state_dir: Path, nodes: int = 1, registry: bool = True, cache_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.state_dir / "cache"
        self.kafka_dir = self.state_dir / "kafka"  # durable: survives stop/start (see wipe())
        self.registry_dir = self.state_dir / "registry"
        self.nodes = nodes
        self.with_registry = registry
        self.kafka: KafkaCluster | None = None
        self.registry_proc: subprocess.Popen | None = None
        self.info: StackInfo | None = None

    def _layout(self) -> dict:
        """The durable stack's cluster id, node count and ports (``kafka/cluster.json``)."""
        path = self.kafka_dir / "cluster.json"
        if path.exists():
            layout = json.loads(path.read_text())
            if layout["nodes"] != self.nodes:
                raise StackError(
                    f"the stack under {self.state_dir} has {layout['nodes']} Kafka node(s), not {self.nodes}: "
                    "start it as it was, or delete it first with `practiceflow stack wipe`"
                )
            return layout
        return {"cluster_id": new_cluster_id(), "nodes": self.nodes, "ports": None, "registry_port": None}

    def _save_layout(self, layout: dict) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        (self.kafka_dir / "cluster.json").write_text(json.dumps(layout, indent=2))

    def start(self) -> StackInfo:
        t0 = time.monotonic()
        layout = self._layout()
        saved = layout["ports"]
        ports = saved if saved and all(_port_free(p) for pair in saved for p in pair) else None
        for attempt in (1, 2):
            # A port picked free can be taken by another process before the JVM binds it;
            # one retry with fresh ports (same data: KRaft's voters are node ids) covers that race.
            self.kafka = kafka = new_cluster(self.kafka_dir, self.cache_dir, nodes=self.nodes, ports=ports)
            try:
                kafka.start(cluster_id=layout["cluster_id"])
                break
            except StackError:
                if attempt == 2:
                    raise
                ports = None
        layout["ports"] = [[n.port, n.controller_port] for n in kafka.nodes]
        self._save_layout(layout)
        registry_url = "mock://"
        if self.with_registry:
            port = layout.get("registry_port")
            try:
                self.registry_proc, registry_url = start_registry(
                    self.cache_dir, self.registry_dir, port=port if port and _port_free(port) else None
                )
            except Exception:
                kafka.stop()
                raise
            layout["registry_port"] = int(registry_url.split(":")[2].split("/")[0])
            self._save_layout(layout)
        self.info = StackInfo(
            bootstrap=kafka.bootstrap,
            registry_url=registry_url,
            kafka_version=kafka_version(kafka.jars),
            kafka_pids=[n.process.pid for n in kafka.nodes if n.process],
            registry_pid=self.registry_proc.pid if self.registry_proc else None,
            root=str(self.kafka_dir),
            started_at=time.time(),
            cold_start_seconds=round(time.monotonic() - t0, 2),
        )
        (self.state_dir / "stack.json").write_text(json.dumps(asdict(self.info), indent=2))
        return self.info

    def stop(self) -> None:
        if self.kafka:
            self.kafka.stop()
        stop_process(self.registry_proc)
        state = self.state_dir / "stack.json"
        if state.exists():
            state.unlink()


def read_state(state_dir: Path) -> StackInfo | None:
    """The running stack recorded by ``stack up``, or None if none is alive."""
    path = Path(state_dir) / "stack.json"
    if not path.exists():
        return None
    info = StackInfo(**json.loads(path.read_text()))
    if not all(_alive(pid) for pid in info.kafka_pids):
        return None
    return info


def stop_recorded(state_dir: Path) -> bool:
    """Stop a stack started by another process (``practiceflow stack down``)."""
    path = Path(state_dir) / "stack.json"
    if not path.exists():
        return False
    info = StackInfo(**json.loads(path.read_text()))
    for pid in [*info.kafka_pids, *([info.registry_pid] if info.registry_pid else [])]:
        _terminate_group(pid)
    path.unlink()
    return True


# What ``wipe`` deletes under the state dir: everything the stack and the worker remember
# (they only make sense together: RocksDB tables and ClickHouse rows name Kafka offsets that
# a fresh Kafka would hand out again), but not the downloaded jars in ``cache/``.
WIPED = (
    "kafka",
    "registry",
    "run",  # the layout before the stack was durable
    "worker",
    "clickhouse",
    "documents",
    "gateway",
    "drop",
    "day",
    "stack.json",
)


def wipe(state_dir: Path) -> list[tuple[Path, int]]:
    """Stop a running stack and delete its data (``practiceflow stack wipe``): the explicit,
    separate way to start from nothing. Returns what was deleted with its size in bytes."""
    state_dir = Path(state_dir)
    stop_recorded(state_dir)
    deleted: list[tuple[Path, int]] = []
    for name in WIPED:
        path = state_dir / name
        if not path.exists() and not path.is_symlink():
            continue
        size = _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        deleted.append((path, size))
    return deleted


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _terminate_group(pid: int, timeout: float = 20.0) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
