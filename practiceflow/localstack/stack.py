"""The embedded local stack: Kafka (KRaft) + Apicurio schema registry on loopback.

``practiceflow stack up`` starts both in the background and records their pids and
ports in ``<state_dir>/stack.json``; any later process (the worker, the tests, the
main job) finds them there. ``LocalStack`` is also usable in-process (tests start
one per session and stop it at the end).
"""

from __future__ import annotations

import json
import os
import shutil
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


def start_registry(cache_dir: Path, data_dir: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    reg_dir = ensure_registry(cache_dir)
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "registry.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(REGISTRY_DIR / "run.sh"), str(reg_dir), str(port)],
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
    urllib.request.urlopen(req, timeout=30).close()  # noqa: S310 - our own registry on loopback (a loaded machine is slow)
    return proc, url


class LocalStack:
    """Start/stop the local Kafka cluster and schema registry."""

    def __init__(self, state_dir: Path, nodes: int = 1, registry: bool = True, cache_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.state_dir / "cache"
        self.run_dir = self.state_dir / "run"
        self.nodes = nodes
        self.with_registry = registry
        self.kafka: KafkaCluster | None = None
        self.registry_proc: subprocess.Popen | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        t0 = time.monotonic()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        for attempt in (1, 2):
            # A port picked free can be taken by another process before the JVM binds it;
            # one retry with fresh ports and a clean data dir covers that race.
            self.kafka = kafka = new_cluster(self.run_dir / f"kafka-{attempt}", self.cache_dir, nodes=self.nodes)
            try:
                kafka.start()
                break
            except StackError:
                if attempt == 2:
                    raise
        registry_url = "mock://"
        if self.with_registry:
            try:
                self.registry_proc, registry_url = start_registry(self.cache_dir, self.run_dir / "registry")
            except Exception:
                kafka.stop()
                raise
        self.info = StackInfo(
            bootstrap=kafka.bootstrap,
            registry_url=registry_url,
            kafka_version=kafka_version(kafka.jars),
            kafka_pids=[n.process.pid for n in kafka.nodes if n.process],
            registry_pid=self.registry_proc.pid if self.registry_proc else None,
            root=str(self.run_dir),
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
